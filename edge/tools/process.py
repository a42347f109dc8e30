"""Child processes whose lifetime is their call: started contained, ended whole.

``run_captured`` runs a command with stdout and stderr merged (``terminal``,
``code``); ``run_piped`` writes a request to its stdin and keeps stdout and
stderr apart (declared tools, ``edge.tools.runtimes``). Both contain it alike.

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

__all__ = [
    "MAX_CAPTURE_BYTES", "MAX_STDERR_BYTES", "TERM_GRACE", "Completed", "Piped", "run_captured",
    "run_piped", "spawn_contained",
]  # fmt: skip

#: How long output may keep flowing after the command exited (seconds).
DRAIN_GRACE: Final = 0.2
#: Output kept from a command; the rest is counted, not stored (bytes).
MAX_CAPTURE_BYTES: Final = 4 * 1024 * 1024
#: Stderr kept from a piped command: its last bytes, where the reason of a failure is.
MAX_STDERR_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Completed:
    exit_code: int
    output: str
    #: Bytes the command wrote beyond ``MAX_CAPTURE_BYTES`` (dropped).
    dropped_bytes: int


@dataclass(frozen=True, slots=True)
class Piped:
    """What a command run by ``run_piped`` left: its exit code, stdout and stderr apart."""

    exit_code: int
    #: The first ``max_bytes`` of stdout.
    stdout: bytes
    #: The last ``MAX_STDERR_BYTES`` of stderr.
    stderr: bytes
    #: Bytes of stdout beyond ``max_bytes`` (dropped).
    stdout_dropped: int = 0
    #: Bytes of stderr before its last ``MAX_STDERR_BYTES`` (dropped).
    stderr_dropped: int = 0


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
    """Start ``argv`` inside ``call`` (its own session, stdin from /dev/null); its leader
    and its stdout and stderr as one stream. End it with ``call.stop``, shielded."""
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


#: For long-lived children held like calls (plugin runners): ``_spawn`` by its public name.
spawn_contained = _spawn


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


# -- piped: stdin in, stdout and stderr apart ------------------------------------------
#
# ``run_piped`` is ``run_captured`` for programs that speak a protocol on their
# standard streams (declared tools, ``edge.tools.runtimes``): the request goes
# in on stdin, the answer comes out on stdout, diagnostics on stderr. The
# containment is the same, step for step: record, spawn on the loop's thread,
# started, collect until exit, then stop the whole call, shielded.


def _popen_piped_on_loop(
    argv: list[str], cwd: str, env: dict[str, str], preexec: Callable[[], None] | None
) -> tuple[LoopChild, list[trio.lowlevel.FdStream]]:
    """Start ``argv`` on the loop's thread with three pipes: [stdin, stdout, stderr] ends."""
    ours: list[int] = []
    theirs: list[int] = []
    try:
        for i in range(3):
            read_end, write_end = os.pipe()
            # stdin: the child reads, edge writes; stdout and stderr the other way round.
            ours.append(write_end if i == 0 else read_end)
            theirs.append(read_end if i == 0 else write_end)
        try:
            popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=theirs[0], stdout=theirs[1], stderr=theirs[2],
                start_new_session=True, preexec_fn=preexec,
            )
        finally:
            for fd in theirs:
                os.close(fd)
            theirs.clear()
        try:
            child = LoopChild(popen)
        except OSError:
            popen.kill()
            popen.wait()
            raise
    except BaseException:
        for fd in ours + theirs:
            os.close(fd)
        raise
    return child, [trio.lowlevel.FdStream(fd) for fd in ours]


async def _spawn_piped(
    argv: Sequence[str], cwd: str, env: dict[str, str], call: CallProcesses
) -> tuple[Child, trio.abc.SendStream, trio.abc.ReceiveStream, trio.abc.ReceiveStream]:
    try:
        if call.pidfd:
            command, preexec = call.launch(argv, pdeathsig=True)
            child, (stdin, stdout, stderr) = _popen_piped_on_loop(command, cwd, env, preexec)
            return child, stdin, stdout, stderr
        command, preexec = call.launch(argv, pdeathsig=False)
        proc = await trio.lowlevel.open_process(
            command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=preexec,
        )
    except subprocess.SubprocessError as exc:
        # Only preexec_fn raises this: joining the call's cgroup failed.
        raise ToolError(f"cannot start {argv[0]} inside the call's cgroup: {exc}") from None
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    return proc, proc.stdin, proc.stdout, proc.stderr


async def run_piped(
    argv: Sequence[str],
    *,
    stdin: bytes,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    max_bytes: int = MAX_CAPTURE_BYTES,
    processes: Containment | None = None,
) -> Piped:
    """Run ``argv`` contained by ``processes``, ``stdin`` written to it, stdout and stderr apart.

    ``stdin`` is written by a task of its own and the pipe closed after it; a
    command that never reads it (or exits first) does not hold the call up.
    Returns once the command has exited; whatever it left running is ended
    then, and cancelling the caller ends all of it, exactly as ``run_captured``
    does. stdout is kept up to ``max_bytes``, stderr's last ``MAX_STDERR_BYTES``.
    """
    call = CallProcesses.group_only() if processes is None else processes.open_call()
    child: Child | None = None
    streams: list[trio.abc.AsyncResource] = []
    try:
        await call.recorded()
        child, to_child, out, err = await _spawn_piped(argv, os.fspath(cwd), call.env(env), call)
        streams = [to_child, out, err]
        await call.started(child.pid)
        piped = await _collect_piped(child, call, (to_child, stdin), out, err, max_bytes)
    finally:
        with trio.CancelScope(shield=True):
            await call.stop(child)
            for stream in streams:
                await stream.aclose()
    return piped


async def _collect_piped(
    child: Child,
    call: CallProcesses,
    feed: tuple[trio.abc.SendStream, bytes],
    out: trio.abc.ReceiveStream,
    err: trio.abc.ReceiveStream,
    max_bytes: int,
) -> Piped:
    """Feed stdin, read stdout and stderr until the command exits (and what it left is ended)."""
    stdout = bytearray()
    stderr = bytearray()
    dropped = [0, 0]
    drained = [trio.Event(), trio.Event()]

    async def write_input() -> None:
        to_child, data = feed
        try:
            if data:
                await to_child.send_all(data)
            await to_child.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the command exited or closed its stdin without reading it all

    async def read(stream: trio.abc.ReceiveStream, which: int) -> None:
        try:
            while data := await stream.receive_some(65536):
                if which == 0:
                    room = max(max_bytes - len(stdout), 0)
                    stdout.extend(data[:room])
                    dropped[0] += len(data) - min(room, len(data))
                else:
                    stderr.extend(data)
                    if len(stderr) > 2 * MAX_STDERR_BYTES:
                        cut = len(stderr) - MAX_STDERR_BYTES
                        del stderr[:cut]
                        dropped[1] += cut
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        drained[which].set()

    async def both_drained() -> None:
        await drained[0].wait()
        await drained[1].wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write_input)
        nursery.start_soon(read, out, 0)
        nursery.start_soon(read, err, 1)
        await child.wait()
        with trio.move_on_after(DRAIN_GRACE):
            await both_drained()
        with trio.CancelScope(shield=True):
            await call.stop(child)
        with trio.move_on_after(DRAIN_GRACE):
            await both_drained()
        nursery.cancel_scope.cancel()
    if len(stderr) > MAX_STDERR_BYTES:
        cut = len(stderr) - MAX_STDERR_BYTES
        del stderr[:cut]
        dropped[1] += cut
    code = child.returncode
    assert code is not None
    return Piped(code, bytes(stdout), bytes(stderr), dropped[0], dropped[1])
