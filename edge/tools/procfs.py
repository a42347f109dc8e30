"""What the Linux kernel says about processes and cgroups, read from /proc and cgroup2.

Plain synchronous helpers for ``edge.tools.contain``: a snapshot of every
process (/proc/<pid>/stat), whether a process's environment carries a marker
(/proc/<pid>/environ), who descends from whom, which processes this one holds
a pidfd for; where the cgroup2 hierarchy is mounted, which cgroup this process
is in and whether it may create cgroups there (``probe_cgroup``), and the few
cgroup files edge writes (``cgroup.procs``, ``cgroup.kill``) and reads
(``cgroup.events``). ``Prctl`` wraps the ``prctl`` options edge uses, through
ctypes on libc. Nothing here keeps state; every answer is read afresh.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

#: ``prctl`` option: signal sent to this process when its parent thread exits.
PR_SET_PDEATHSIG: Final = 1
#: ``prctl`` option: orphaned descendants are re-parented to this process.
PR_SET_CHILD_SUBREAPER: Final = 36
#: ``prctl`` option: read the child-subreaper flag.
PR_GET_CHILD_SUBREAPER: Final = 37


@dataclass(frozen=True, slots=True)
class Proc:
    """One line of /proc/<pid>/stat, the fields edge uses."""

    pid: int
    #: ``R``, ``S``, ``D``, ``Z`` (zombie: exited, not yet reaped), ...
    state: str
    ppid: int
    pgid: int
    sid: int
    #: Clock ticks after boot when the process started (field 22): with the pid,
    #: it names one process, never a later one that reuses the pid.
    start: int


def parse_stat(pid: int, text: str) -> Proc:
    # comm (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text[text.rfind(")") + 2 :].split()
    return Proc(pid, fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))


def read_proc(pid: int) -> Proc | None:
    """The process ``pid`` now, or ``None`` if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_stat(pid, f.read())
    except (OSError, ValueError, IndexError):
        return None


def snapshot() -> dict[int, Proc]:
    """Every process in /proc, by pid."""
    procs: dict[int, Proc] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return procs
    for entry in entries:
        if entry.isdigit() and (proc := read_proc(int(entry))) is not None:
            procs[proc.pid] = proc
    return procs


def children_map(procs: Mapping[int, Proc]) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for proc in procs.values():
        kids.setdefault(proc.ppid, []).append(proc.pid)
    return kids


def descendants(kids: Mapping[int, list[int]], roots: Iterable[int]) -> set[int]:
    """Every process below ``roots`` (the roots themselves not included)."""
    found: set[int] = set()
    stack = [kid for root in roots for kid in kids.get(root, ())]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(kids.get(pid, ()))
    return found


def _children_of(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (/proc/<pid>/task/<tid>/children)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(kid) for kid in f.read().split())
        except (OSError, ValueError):
            continue  # the thread or the process is gone
    return kids


def tree_below(root: int) -> tuple[dict[int, Proc], dict[int, list[int]]]:
    """Every process below ``root`` by pid, and who is whose child.

    Walks down from ``root`` through the children files, reading only that
    subtree; where the kernel has none (``CONFIG_PROC_CHILDREN``), reads all of /proc.
    """
    if not os.path.exists(f"/proc/{root}/task/{root}/children"):
        everything = snapshot()
        family = children_map(everything)
        return {p: everything[p] for p in descendants(family, [root])}, family
    procs: dict[int, Proc] = {}
    kids: dict[int, list[int]] = {}
    stack = [root]
    while stack:
        pid = stack.pop()
        kids[pid] = _children_of(pid)
        for kid in kids[pid]:
            if kid not in procs and (proc := read_proc(kid)) is not None:
                procs[kid] = proc
                stack.append(kid)
    return procs, kids


def environ_has(pid: int, entry: bytes) -> bool:
    """Whether the environment ``pid`` was started with holds ``entry`` (``b"K=V"``).

    A zombie's, or another user's, environment cannot be read: ``False``.
    """
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return entry in data.split(b"\0")


def pidfd_works() -> bool:
    """Whether ``os.pidfd_open`` works here (Linux 5.3 and later)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def pidfd_pids() -> set[int]:
    """The processes this process holds a pidfd for (trio and edge hold one per child)."""
    pids: set[int] = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return pids
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[pidfd]":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("Pid:"):
                        pids.add(int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            continue
    return pids


# -- cgroup2 ------------------------------------------------------------------------


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def cgroup2_mount(mountinfo: str) -> tuple[Path, str] | None:
    """(mount point, root inside the hierarchy) of the first cgroup2 mount, if any."""
    for line in mountinfo.splitlines():
        before, sep, after = line.partition(" - ")
        if not sep or not after.startswith("cgroup2 "):
            continue
        fields = before.split()
        return Path(_unescape(fields[4])), _unescape(fields[3])
    return None


def own_cgroup(proc_cgroup: str) -> str | None:
    """The cgroup2 path in a /proc/<pid>/cgroup text (its ``0::`` line)."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or None
    return None


def cgroup_dir(mount: Path, root: str, path: str) -> Path | None:
    """The directory of cgroup ``path`` under a mount showing hierarchy ``root``."""
    if root != "/":
        if path != root and not path.startswith(root.rstrip("/") + "/"):
            return None
        path = path[len(root.rstrip("/")) :]
    return mount / path.lstrip("/")


def cgroup_pids(cg: Path) -> list[int]:
    """The processes in cgroup ``cg`` (none if it is gone)."""
    try:
        return [int(line) for line in (cg / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def cgroup_populated(cg: Path) -> bool:
    """Whether a process is left in ``cg`` or below (``populated 1`` in cgroup.events)."""
    try:
        events = (cg / "cgroup.events").read_text()
    except OSError:
        return False
    return "populated 1" in events.splitlines()


def cgroup_kill(cg: Path) -> bool:
    """SIGKILL every process in ``cg`` and below with ``cgroup.kill``; ``False`` if unsupported.

    The kernel (5.14 and later) does it in one step, so a process forking in a
    loop cannot outrun it.
    """
    try:
        fd = os.open(cg / "cgroup.kill", os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, b"1")
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


@dataclass(frozen=True, slots=True)
class CgroupSite:
    """Where calls' cgroups go: ``base`` (``edge-<pid>``) inside the daemon's cgroup."""

    base: Path
    #: Whether ``cgroup.kill`` exists (Linux 5.14 and later).
    kill: bool


def probe_cgroup() -> CgroupSite | str:
    """Where this process may put calls' cgroups, or why it may not.

    Finds the cgroup2 mount (/proc/self/mountinfo) and this process's cgroup
    (``0::`` in /proc/self/cgroup), then creates and removes ``edge-<pid>`` in it.
    """
    if not sys.platform.startswith("linux"):
        return "cgroups are Linux only"
    try:
        with open("/proc/self/mountinfo") as f:
            mount = cgroup2_mount(f.read())
        with open("/proc/self/cgroup") as f:
            path = own_cgroup(f.read())
    except OSError as exc:
        return f"cannot read /proc: {exc.strerror}"
    if mount is None:
        return "no cgroup2 hierarchy is mounted"
    if path is None:
        return "this process is in no cgroup2 cgroup"
    own = cgroup_dir(mount[0], mount[1], path)
    if own is None or os.getpid() not in cgroup_pids(own):
        return f"cgroup {path} is not visible under {mount[0]}"
    base = own / f"edge-{os.getpid()}"
    try:
        base.mkdir(exist_ok=True)
    except OSError as exc:
        return f"cannot create a cgroup in {own}: {exc.strerror}"
    try:
        movable = os.access(own / "cgroup.procs", os.W_OK) and os.access(
            base / "cgroup.procs", os.W_OK
        )
        kill = (base / "cgroup.kill").exists()
    finally:
        remove_dir(base)  # unless a call of another handle in this process is using it
    if not movable:
        return f"cannot move processes between cgroups in {own}"
    return CgroupSite(base, kill)



def make_cgroup(path: Path) -> None:
    """Create the cgroup ``path`` and, if missing, its parent.

    Raises:
        OSError: it cannot be created.
    """
    for _ in range(3):
        try:
            path.parent.mkdir(exist_ok=True)
            path.mkdir()
            return
        except FileNotFoundError:
            continue  # another call's end removed the empty parent in between
    path.mkdir()


def remove_dir(path: Path) -> None:
    """``rmdir`` that says nothing when the directory is in use or gone."""
    try:
        path.rmdir()
    except OSError:
        pass


# -- prctl --------------------------------------------------------------------------


class Prctl:
    """``prctl`` through ctypes on libc (Linux only: ``Prctl.load()`` is ``None`` elsewhere)."""

    def __init__(self, libc: Any) -> None:
        self._prctl = libc.prctl

    @classmethod
    def load(cls) -> Prctl | None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            return cls(ctypes.CDLL(None, use_errno=True))
        except (OSError, AttributeError):
            return None

    def _call(self, option: int, arg: Any) -> None:
        if self._prctl(option, arg, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    def child_subreaper(self) -> bool:
        flag = ctypes.c_int(0)
        self._call(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag))
        return bool(flag.value)

    def set_child_subreaper(self, on: bool) -> None:
        self._call(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(int(on)))

    def set_parent_death_signal(self, signum: int) -> None:
        """In a child: receive ``signum`` when the thread that forked it exits."""
        self._call(PR_SET_PDEATHSIG, ctypes.c_ulong(signum))
