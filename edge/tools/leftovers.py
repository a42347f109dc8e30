"""Records of running calls' processes, and the start-up sweep of a killed run's leftovers.

While a ``terminal`` or ``code`` call runs, ``<state_dir>/calls/<token>.json``
(mode 0600, written with ``edge.fs.write_private``) says how to find its
processes again: its cgroup, the ``EDGE_CALL`` token in their environment, its
leader's pid and start time (so a recycled pid is never mistaken for it), and
the daemon's own pid and start time. The file goes when the call ends. A
daemon killed with SIGKILL cannot remove it, so the next start (``sweep``),
before any call runs, ends whatever a record names whose daemon is gone:
``cgroup.kill`` and ``rmdir`` of its cgroup, then SIGKILL of every process
carrying its token and of its leader, and removes the record.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import trio

from ..fs import write_private
from . import procfs

log = logging.getLogger(__name__)

#: The environment variable that marks every process of one call.
TOKEN_ENV: Final = "EDGE_CALL"
#: How long the sweep waits for one leftover call's processes to go (seconds).
SWEEP_WAIT: Final = 2.0
#: How often the sweep looks whether they are gone (seconds).
SWEEP_POLL: Final = 0.02


@dataclass(frozen=True, slots=True)
class CallRecord:
    """How to find one running call's processes again."""

    token: str
    cgroup: str | None
    leader: int | None
    leader_start: int | None
    daemon: int
    daemon_start: int | None

    def to_json(self) -> str:
        return json.dumps(asdict(self)) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CallRecord:
        data: dict[str, Any] = json.loads(text)
        return cls(
            token=str(data["token"]),
            cgroup=None if data.get("cgroup") is None else str(data["cgroup"]),
            leader=_int_or_none(data.get("leader")),
            leader_start=_int_or_none(data.get("leader_start")),
            daemon=int(data["daemon"]),
            daemon_start=_int_or_none(data.get("daemon_start")),
        )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def write_record(path: Path, record: CallRecord) -> None:
    # Not synced to disk: a record only has to outlive edge (kill -9), and a
    # machine that loses power loses the processes it names as well.
    write_private(path, record.to_json(), durable=False)


def drop_record(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc.strerror)


def _alive(pid: int | None, start: int | None) -> bool:
    """Whether the process ``pid`` that started at ``start`` still runs (not a zombie)."""
    if pid is None:
        return False
    proc = procfs.read_proc(pid)
    return proc is not None and proc.state != "Z" and (start is None or proc.start == start)


async def sweep(calls_dir: Path) -> int:
    """End what the records in ``calls_dir`` name, for daemons that are gone.

    Returns how many processes were ended; logs it when there were any. A record
    of a daemon that still runs (this one, or another ``edge`` with the same
    state directory) is left alone.
    """
    ended = calls = 0
    for path, record in _read_records(calls_dir):
        if _alive(record.daemon, record.daemon_start):
            continue
        calls += 1
        ended += await _end(record)
        drop_record(path)
    if calls:
        log.info(
            "ended %d processes left by calls of an earlier run (%d call records in %s)",
            ended, calls, calls_dir,
        )
    return ended


def _read_records(calls_dir: Path) -> list[tuple[Path, CallRecord]]:
    """The records in ``calls_dir``; unreadable ones are removed."""
    try:
        paths = sorted(calls_dir.glob("*.json"))
    except OSError:
        return []
    records = []
    for path in paths:
        try:
            records.append((path, CallRecord.from_json(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the unreadable call record %s: %s", path, exc)
            drop_record(path)
    return records


async def _end(record: CallRecord) -> int:
    """SIGKILL what ``record`` names and wait (bounded) until it is gone; how many."""
    ended = 0
    cg = None if record.cgroup is None else Path(record.cgroup)
    if cg is not None and _is_dir(cg):
        ended += len(procfs.cgroup_pids(cg))
        with trio.move_on_after(SWEEP_WAIT):
            while procfs.cgroup_populated(cg):
                if not procfs.cgroup_kill(cg):
                    for pid in procfs.cgroup_pids(cg):
                        _kill(pid)
                await trio.sleep(SWEEP_POLL)
        _remove_cgroup(cg)
    found = _marked(record)
    for proc in found:
        _kill(proc.pid)
    with trio.move_on_after(SWEEP_WAIT):
        while any(_alive(proc.pid, proc.start) for proc in found):  # noqa: ASYNC110
            await trio.sleep(SWEEP_POLL)
    return ended + len(found)


def _is_dir(path: Path) -> bool:
    return path.is_dir()


def _remove_cgroup(cg: Path) -> None:
    """Remove a leftover call's cgroup, and its ``edge-<pid>`` parent once that is empty."""
    for directory in (cg, cg.parent):
        if directory is cg or directory.name.startswith("edge-"):
            try:
                directory.rmdir()
            except OSError:
                pass  # still busy, or another run's calls are in it


def _marked(record: CallRecord) -> list[procfs.Proc]:
    """Live processes carrying the record's token, and its leader if it still runs."""
    marker = f"{TOKEN_ENV}={record.token}".encode()
    me = os.getpid()
    return [
        proc
        for proc in procfs.snapshot().values()
        if proc.pid != me
        and proc.state != "Z"
        and (
            (proc.pid == record.leader and proc.start == record.leader_start)
            or procfs.environ_has(proc.pid, marker)
        )
    ]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
