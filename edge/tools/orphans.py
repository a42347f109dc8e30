"""Under a child-subreaper daemon: which processes in its tree belong to one call.

When the daemon is a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), a
process whose parent exits is re-parented to the daemon, never to init, so
everything a call ever started is somewhere below the daemon. ``CallTree``
finds the call's share of that tree each time it is asked: the leader and its
descendants, every process whose environment carries the call's ``EDGE_CALL``
token, every process in the leader's process group or session, every process
seen before as the call's (pid and start time), and everything below those.

The daemon must also reap the zombies it adopted, since nobody else will; it
reaps them by pid only, never with ``waitpid(-1)``, which would take the exit
status of trio's and the MCP SDK's own children from them.
"""

from __future__ import annotations

import os

from . import procfs


class CallTree:
    """One call's processes in the daemon's tree (the daemon being ``daemon``)."""

    def __init__(self, daemon: int, marker: bytes, *, waited_by_pidfd: bool) -> None:
        self.daemon = daemon
        #: ``b"EDGE_CALL=<token>"``, as it appears in /proc/<pid>/environ.
        self.marker = marker
        #: Whether every child the daemon waits for has a pidfd open (trio's and edge's do).
        self.waited_by_pidfd = waited_by_pidfd
        self.leader = 0
        self._seen: set[tuple[int, int]] = set()

    def started(self, leader: int, start: int | None) -> None:
        self.leader = leader
        if start is not None:
            self._seen.add((leader, start))

    def members(self) -> set[int]:
        """The call's live processes now; adopted zombies of the call are reaped on the way."""
        procs, kids = procfs.tree_below(self.daemon)
        found: set[int] = set()
        for pid, proc in procs.items():
            if pid in found or proc.state == "Z":
                continue
            if self._known(proc) or procfs.environ_has(pid, self.marker):
                found.add(pid)
                found |= procfs.descendants(kids, [pid]) & procs.keys()
        self._seen.update((pid, procs[pid].start) for pid in found)
        self._reap_adopted([procs[pid] for pid in kids.get(self.daemon, ()) if pid in procs])
        return {pid for pid in found if procs[pid].state != "Z"}

    def _known(self, proc: procfs.Proc) -> bool:
        if (proc.pid, proc.start) in self._seen:
            return True
        # The leader's pid stays reserved while its group or session has a member.
        return bool(self.leader) and self.leader in (proc.pid, proc.pgid, proc.sid)

    def _reap_adopted(self, children: list[procfs.Proc]) -> None:
        """Reap the daemon's zombie children that are orphans it adopted.

        An orphan that exited before it was ever seen (the middle process of a
        double fork) is recognised another way: trio and edge hold a pidfd for
        every child they wait for, so a zombie child without one was adopted.
        """
        zombies = [p for p in children if p.state == "Z" and p.pid != self.leader]
        if not zombies:
            return
        ours = [p for p in zombies if self._known(p)]
        others = [p for p in zombies if p not in ours]
        if others and self.waited_by_pidfd:
            waited_for = procfs.pidfd_pids()
            ours += [p for p in others if p.pid not in waited_for]
        for proc in ours:
            try:
                os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:
                pass
