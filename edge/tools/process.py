"""Child processes in their own process group, torn down as a group.

A command's lifetime is its call: when the call ends, times out, is cancelled or
the daemon shuts down, every process left in the group is asked to stop
(SIGTERM), given ``TERM_GRACE`` seconds, then killed (SIGKILL). The child is
started in a new session (``start_new_session``), so its process group id is its
pid and nothing it starts escapes the sweep unless it makes a session of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import trio

#: How long a process group gets between SIGTERM and SIGKILL (seconds).
TERM_GRACE: Final = 0.5
#: How often the sweep looks whether a group is gone (seconds).
SWEEP_POLL: Final = 0.02
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


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def stop_group(proc: trio.Process) -> None:
    """Terminate, then kill, the process group led by ``proc``; reap ``proc``.

    Every wait is bounded; call it shielded from cancellation.
    """
    pgid = proc.pid
    if not _group_alive(pgid):
        await proc.wait()
        return
    _signal_group(pgid, signal.SIGTERM)
    with trio.move_on_after(TERM_GRACE):
        await proc.wait()
        while _group_alive(pgid):  # noqa: ASYNC110 (no event tells when a group empties)
            await trio.sleep(SWEEP_POLL)
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
    await proc.wait()
    # The leader is reaped; children it left in the group are re-parented and
    # were sent SIGKILL above: wait (bounded) until the kernel has removed them.
    with trio.move_on_after(TERM_GRACE):
        while _group_alive(pgid):  # noqa: ASYNC110 (no event tells when a group empties)
            await trio.sleep(SWEEP_POLL)


async def run_captured(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    max_bytes: int = MAX_CAPTURE_BYTES,
) -> Completed:
    """Run ``argv`` in a new process group with stdout and stderr merged.

    Returns once the command has exited. Whatever it left running in its group
    (``sleep 100 &``) is swept away then, so a background child holding the
    output pipe open cannot stretch the call. Cancelling the caller stops the
    whole group the same way.
    """
    proc = await trio.lowlevel.open_process(
        list(argv),
        cwd=os.fspath(cwd),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    chunks: list[bytes] = []
    kept = 0
    dropped = 0
    drained = trio.Event()

    async def read_output() -> None:
        nonlocal kept, dropped
        assert proc.stdout is not None
        try:
            while data := await proc.stdout.receive_some(65536):
                room = max(max_bytes - kept, 0)
                chunks.append(bytes(data[:room]))
                kept += min(room, len(data))
                dropped += len(data) - min(room, len(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        drained.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_output)
            await proc.wait()
            with trio.move_on_after(DRAIN_GRACE):
                await drained.wait()
            with trio.CancelScope(shield=True):
                await stop_group(proc)
            with trio.move_on_after(DRAIN_GRACE):
                await drained.wait()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await stop_group(proc)
            assert proc.stdout is not None
            await proc.stdout.aclose()
    code = proc.returncode
    assert code is not None
    output = b"".join(chunks).decode("utf-8", errors="replace")
    return Completed(exit_code=code, output=output, dropped_bytes=dropped)
