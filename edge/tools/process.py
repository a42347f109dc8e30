"""Child processes whose lifetime is their call: started contained, ended whole.

A command's lifetime is its call: when the call ends, times out, is cancelled or
the daemon shuts down, every process it started is asked to stop (SIGTERM),
given ``TERM_GRACE`` seconds, then killed (SIGKILL). The command starts in a
new session (its process group id is its pid); with a ``Containment``
(``edge.tools.contain``) it also starts inside the call's cgroup, or under the
daemon as child subreaper, so ``setsid``, ``set -m`` and double forks are
ended too. Without one, the process group alone is swept.

The command is spawned from the event loop's own thread (``subprocess.Popen``
called directly, its output pipe wrapped in ``trio.lowlevel.FdStream``, its
exit awaited through a pidfd), not from a trio worker thread: the kernel's
parent-death signal (``PR_SET_PDEATHSIG``) fires when the *thread* that forked
exits, and a worker thread exits after 10 s idle, the loop's thread only with
the daemon. With ``setpriv`` installed the child runs no Python before
``exec`` (``CallProcesses.launch``), so ``subprocess`` uses ``vfork`` and the
loop waits well under a millisecond; without it a ``preexec_fn`` forces a full
``fork``, whose cost grows with the daemon's memory. Where pidfds are missing
(macOS, Linux before 5.3) it falls back to ``trio.lowlevel.open_process``,
without the parent-death signal.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import trio

from ..errors import ToolError
from .contain import TERM_GRACE, CallProcesses, Child

if TYPE_CHECKING:
    from .contain import Containment

__all__ = ["MAX_CAPTURE_BYTES", "TERM_GRACE", "Completed", "run_captured"]

#: How long output may keep flowing after the command exited (seconds).
DRAIN_GRACE: Final = 0.2
#: Output kept from a command; the rest is counted, not stored (bytes).
MAX_CAPTURE_BYTES: Final = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Completed:
    exit_code: int
    output: str
    #: Bytes the command wrote beyond ``MAX_CAPTURE_BYTES`` (dropped).
    dropped_bytes: int


class LoopChild:
    """A ``Popen`` started on the event loop's thread, its exit awaited through a pidfd."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self._pidfd: int | None = os.pidfd_open(popen.pid)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        if self._popen.returncode is None:
            if self._pidfd is not None:
                await trio.lowlevel.wait_readable(self._pidfd)
                self._close_pidfd()
            self._popen.wait()  # the child has exited: this only reaps it
        code = self._popen.returncode
        assert code is not None
        return code

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


def _popen_on_loop(
    argv: list[str], cwd: str, env: dict[str, str], preexec: Callable[[], None] | None
) -> tuple[LoopChild, trio.lowlevel.FdStream]:
    """Start ``argv`` right here, on the loop's thread; stdout and stderr into one pipe."""
    read_end, write_end = os.pipe()
    try:
        try:
            popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=write_end,
                stderr=write_end, start_new_session=True, preexec_fn=preexec,
            )
        finally:
            os.close(write_end)
        try:
            child = LoopChild(popen)
        except OSError:
            popen.kill()
            popen.wait()
            raise
    except BaseException:
        os.close(read_end)
        raise
    return child, trio.lowlevel.FdStream(read_end)


async def _spawn(
    argv: Sequence[str], cwd: str, env: dict[str, str], call: CallProcesses
) -> tuple[Child, trio.abc.ReceiveStream]:
    try:
        if call.pidfd:
            command, preexec = call.launch(argv, pdeathsig=True)
            return _popen_on_loop(command, cwd, env, preexec)
        command, preexec = call.launch(argv, pdeathsig=False)
        proc = await trio.lowlevel.open_process(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec,
        )
    except subprocess.SubprocessError as exc:
        # Only preexec_fn raises this: joining the call's cgroup failed.
        raise ToolError(f"cannot start {argv[0]} inside the call's cgroup: {exc}") from None
    assert proc.stdout is not None
    return proc, proc.stdout


async def run_captured(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    max_bytes: int = MAX_CAPTURE_BYTES,
    processes: Containment | None = None,
) -> Completed:
    """Run ``argv`` contained by ``processes``, stdout and stderr merged.

    Returns once the command has exited. Whatever it left running (``sleep
    100 &``, and with a ``Containment`` also ``setsid sleep 100 &``) is ended
    then, so a background child holding the output pipe open cannot stretch
    the call. Cancelling the caller ends them the same way. Without
    ``processes``, only the command's process group is swept.
    """
    call = CallProcesses.group_only() if processes is None else processes.open_call()
    child: Child | None = None
    output: trio.abc.ReceiveStream | None = None
    try:
        await call.recorded()
        child, output = await _spawn(argv, os.fspath(cwd), call.env(env), call)
        await call.started(child.pid)
        chunks, dropped = await _collect(child, output, call, max_bytes)
    finally:
        with trio.CancelScope(shield=True):
            await call.stop(child)
            if output is not None:
                await output.aclose()
    assert child is not None
    code = child.returncode
    assert code is not None
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return Completed(exit_code=code, output=text, dropped_bytes=dropped)


async def _collect(
    child: Child, output: trio.abc.ReceiveStream, call: CallProcesses, max_bytes: int
) -> tuple[list[bytes], int]:
    """Read the output until the command exits (and what it left is ended); cap it."""
    chunks: list[bytes] = []
    kept = 0
    dropped = 0
    drained = trio.Event()

    async def read_output() -> None:
        nonlocal kept, dropped
        try:
            while data := await output.receive_some(65536):
                room = max(max_bytes - kept, 0)
                chunks.append(bytes(data[:room]))
                kept += min(room, len(data))
                dropped += len(data) - min(room, len(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        drained.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_output)
        await child.wait()
        with trio.move_on_after(DRAIN_GRACE):
            await drained.wait()
        with trio.CancelScope(shield=True):
            await call.stop(child)
        with trio.move_on_after(DRAIN_GRACE):
            await drained.wait()
        nursery.cancel_scope.cancel()
    return chunks, dropped
