"""Containment: every process a ``terminal`` or ``code`` call starts ends with the call.

A process group alone does not hold a command: ``setsid``, ``set -m`` and a
double fork leave it. The daemon owns one ``Containment``, made at start-up,
which picks the strongest mechanism this machine offers:

``cgroup``
    (Linux, a cgroup2 hierarchy where the daemon may create a child cgroup.)
    Each call gets its own cgroup, ``<daemon's cgroup>/edge-<pid>/<token>``.
    The child moves itself in (writes ``0`` to its ``cgroup.procs``) after
    ``fork`` and before the command is exec'd (``CallProcesses.launch``), so
    nothing the command starts can be outside it: race-free. The call ends with ``cgroup.kill``
    (SIGKILL of every process in it, by the kernel, in one step; a SIGKILL loop
    over ``cgroup.procs`` before Linux 5.14), then ``rmdir``. No controller is
    enabled, so cgroup2's "no internal processes" rule never applies.
``subreaper``
    (Linux without such a cgroup.) The daemon is a child subreaper, so orphans
    are re-parented to it, never to init: every process a call starts stays in
    the daemon's process tree. The call's processes are those below its leader,
    those whose environment carries the call's ``EDGE_CALL`` token, those in the
    leader's process group or session, and everything below them; they are
    killed until none is left, and the ones re-parented to the daemon are
    reaped by pid (never ``waitpid(-1)``: the exit status of trio's and the MCP
    SDK's own children belongs to them).
``group``
    (Elsewhere, e.g. macOS.) The process group only, as before.

In every mode the first step is polite: SIGTERM to the group and to every
process found, ``TERM_GRACE`` seconds, then SIGKILL. On Linux the command's
leader also gets ``PR_SET_PDEATHSIG(SIGKILL)``, so it dies with the daemon even
when the daemon is killed with SIGKILL; whatever the leader had started is
found again at the next start from the records kept in ``<state_dir>/calls/``
(one small file per running call: its cgroup, token and leader), see
``edge.tools.leftovers``.
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final, Protocol

import trio

from ..errors import ConfigError, ToolError
from . import procfs
from .leftovers import TOKEN_ENV, CallRecord, drop_record, sweep, write_record
from .orphans import CallTree
from .procfs import CgroupSite, probe_cgroup

log = logging.getLogger(__name__)

#: How long a call's processes get between SIGTERM and SIGKILL (seconds).
TERM_GRACE: Final = 0.5
#: How often a stop looks whether the call's processes are gone (seconds).
SWEEP_POLL: Final = 0.02
#: How long a stop keeps killing after SIGKILL before it gives up (seconds).
KILL_WAIT: Final = 2.0
#: Where a call's record lives inside the state directory.
CALLS_DIR: Final = "calls"
#: Run by ``/bin/sh -c`` after ``setpriv --pdeathsig KILL``, with the daemon's pid
#: as ``$0``, the call's ``cgroup.procs`` (or "") as ``$1`` and the command after it.
_WRAPPER: Final = (
    '[ "$PPID" = "$0" ] || kill -KILL $$\n'
    'if [ -n "$1" ]; then echo 0 > "$1" || exit 126; fi\n'
    "shift\n"
    'exec "$@"\n'
)


class Mechanism(enum.StrEnum):
    CGROUP = "cgroup"
    SUBREAPER = "subreaper"
    GROUP = "group"


class Child(Protocol):
    """A started command's leader: ``trio.Process`` or edge's own loop-thread child."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


class Containment:
    """The daemon's handle on its calls' processes; make it with ``create``, end with ``close``."""

    def __init__(
        self,
        mechanism: Mechanism,
        *,
        site: CgroupSite | None = None,
        prctl: procfs.Prctl | None = None,
        state_dir: Path | None = None,
        note: str = "",
        restore_subreaper: bool = False,
    ) -> None:
        self.mechanism = mechanism
        self.site = site
        self.prctl = prctl
        self.calls_dir = None if state_dir is None else state_dir / CALLS_DIR
        self.pid = os.getpid()
        self.pidfd = procfs.pidfd_works()
        #: ``setpriv`` with ``--pdeathsig``, if installed (see ``CallProcesses.launch``).
        self.setpriv = None if prctl is None else _find_setpriv()
        self._note = note
        self._restore_subreaper = restore_subreaper
        self._closed = False

    @classmethod
    def create(cls, state_dir: Path | None = None, *, mechanism: str | None = None) -> Containment:
        """The strongest mechanism available, or the one named (``ConfigError`` if unavailable)."""
        wanted = None if mechanism is None else Mechanism(mechanism)
        prctl = procfs.Prctl.load()
        why = ""
        if wanted in (None, Mechanism.CGROUP):
            site = probe_cgroup()
            if isinstance(site, CgroupSite):
                return cls(Mechanism.CGROUP, site=site, prctl=prctl, state_dir=state_dir)
            if wanted is Mechanism.CGROUP:
                raise ConfigError(f"no cgroup for tool calls: {site}")
            why = f"no cgroup: {site}"
        if wanted in (None, Mechanism.SUBREAPER) and prctl is not None:
            try:
                was = prctl.child_subreaper()
                prctl.set_child_subreaper(True)
            except OSError as exc:
                if wanted is Mechanism.SUBREAPER:
                    raise ConfigError(f"cannot become a child subreaper: {exc.strerror}") from None
                why = f"{why}; no subreaper: {exc.strerror}"
            else:
                return cls(
                    Mechanism.SUBREAPER, prctl=prctl, state_dir=state_dir,
                    note=why, restore_subreaper=not was,
                )
        if wanted is Mechanism.SUBREAPER:
            raise ConfigError("a child subreaper needs Linux")
        return cls(Mechanism.GROUP, prctl=prctl, state_dir=state_dir, note=why)

    def describe(self) -> str:
        """Which mechanism holds the calls' processes, for logs and health."""
        if self.mechanism is Mechanism.CGROUP:
            assert self.site is not None
            return f"cgroup v2 at {self.site.base}"
        name = "subreaper" if self.mechanism is Mechanism.SUBREAPER else "process group only"
        return f"{name} ({self._note})" if self._note else name

    def close(self) -> None:
        """Give back what the handle took: the subreaper flag, the empty base cgroup."""
        if self._closed:
            return
        self._closed = True
        if self._restore_subreaper and self.prctl is not None:
            try:
                self.prctl.set_child_subreaper(False)
            except OSError:
                pass
        if self.site is not None:
            procfs.remove_dir(self.site.base)

    async def sweep_leftovers(self) -> int:
        """End what the calls of an earlier, killed run left; returns how many processes."""
        if self.calls_dir is None:
            return 0
        return await sweep(self.calls_dir)

    def open_call(self) -> CallProcesses:
        """The processes of one call, none started yet (its cgroup made, if any)."""
        token = secrets.token_hex(8)
        cgroup = None
        if self.site is not None:
            cgroup = self.site.base / token
            try:
                procfs.make_cgroup(cgroup)
            except OSError as exc:
                raise ToolError(f"cannot create the call's cgroup {cgroup}: {exc}") from None
        return CallProcesses(self, token, cgroup)


class CallProcesses:
    """One call's processes: how to start them (``env``, ``preexec``) and how to end them."""

    def __init__(self, owner: Containment | None, token: str, cgroup: Path | None) -> None:
        self._owner = owner
        self.token = token
        self.cgroup = cgroup
        self._record: Path | None = None
        self._tree: CallTree | None = None
        if owner is not None and owner.mechanism is Mechanism.SUBREAPER:
            marker = f"{TOKEN_ENV}={token}".encode()
            self._tree = CallTree(owner.pid, marker, waited_by_pidfd=owner.pidfd)
        self._kept = False
        self._stopped = False

    @classmethod
    def group_only(cls) -> CallProcesses:
        """Process-group containment, for a caller that has no ``Containment``."""
        return cls(None, secrets.token_hex(8), None)

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.GROUP if self._owner is None else self._owner.mechanism

    @property
    def pidfd(self) -> bool:
        return procfs.pidfd_works() if self._owner is None else self._owner.pidfd

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        return {**base, TOKEN_ENV: self.token}

    def launch(
        self, argv: Sequence[str], *, pdeathsig: bool
    ) -> tuple[list[str], Callable[[], None] | None]:
        """What to exec for ``argv``, and what the child runs between ``fork`` and ``exec``.

        The child joins the call's cgroup before ``argv`` runs (race-free: nothing
        of the command exists outside it), and with ``pdeathsig`` gets SIGKILL when
        the forking thread dies (meant for the event loop's thread, which lives as
        long as the daemon); if the daemon is gone already, it dies at once.

        With ``setpriv`` (util-linux) this needs no Python in the child, so
        ``subprocess`` can use ``vfork``: ``setpriv --pdeathsig KILL`` sets the
        signal, then ``/bin/sh`` checks its parent (``$PPID``, read after the
        signal was set), joins the cgroup and execs ``argv``. Otherwise a
        ``preexec_fn`` does the same, at the price of a full ``fork``, which
        copies the daemon's page tables while the event loop waits.
        """
        owner = self._owner
        procs = None if self.cgroup is None else os.fspath(self.cgroup / "cgroup.procs")
        prctl = None if owner is None or not pdeathsig else owner.prctl
        if procs is None and prctl is None:
            return list(argv), None
        if owner is not None and owner.setpriv is not None and prctl is not None:
            wrapper = [owner.setpriv, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", _WRAPPER]
            return [*wrapper, str(owner.pid), procs or "", *argv], None
        parent = os.getpid()

        def in_child() -> None:
            if procs is not None:
                fd = os.open(procs, os.O_WRONLY)
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)
            if prctl is not None:
                prctl.set_parent_death_signal(signal.SIGKILL)
                if os.getppid() != parent:
                    os.kill(os.getpid(), signal.SIGKILL)

        return list(argv), in_child

    async def recorded(self) -> None:
        """Note the call in the state directory before its command starts."""
        owner = self._owner
        if owner is None or owner.calls_dir is None:
            return
        self._record = owner.calls_dir / f"{self.token}.json"
        await trio.to_thread.run_sync(write_record, self._record, self._as_record())

    async def started(self, leader: int) -> None:
        """The command runs as ``leader``: add its pid and start time to the record."""
        proc = procfs.read_proc(leader)
        if self._tree is not None:
            self._tree.started(leader, None if proc is None else proc.start)
        if self._record is not None:
            await trio.to_thread.run_sync(write_record, self._record, self._as_record(proc))

    def _as_record(self, leader: procfs.Proc | None = None) -> CallRecord:
        owner = self._owner
        assert owner is not None
        me = procfs.read_proc(owner.pid)
        return CallRecord(
            token=self.token,
            cgroup=None if self.cgroup is None else str(self.cgroup),
            leader=None if leader is None else leader.pid,
            leader_start=None if leader is None else leader.start,
            daemon=owner.pid,
            daemon_start=None if me is None else me.start,
        )

    # -- ending ------------------------------------------------------------------------

    async def stop(self, child: Child | None) -> None:
        """SIGTERM, ``TERM_GRACE``, SIGKILL: the group and every process of the call.

        Reaps ``child`` (the leader). Every wait is bounded; call it shielded.
        Once it has returned, later calls return at once.
        """
        if self._stopped:
            return
        pgid = child.pid if child is not None else 0
        # Nothing left (the usual end: the command exited, alone) costs one look.
        if self._left(child, pgid):
            self._signal(pgid, signal.SIGTERM)
            with trio.move_on_after(TERM_GRACE):
                if child is not None:
                    await child.wait()
                while self._left(child, pgid):  # noqa: ASYNC110 (no event tells when they are gone)
                    await trio.sleep(SWEEP_POLL)
            if self._left(child, pgid):
                self._kill(pgid)
            if child is not None:
                await child.wait()
            with trio.move_on_after(KILL_WAIT):
                while self._left(child, pgid):
                    self._kill(pgid)
                    await trio.sleep(SWEEP_POLL)
        self._stopped = True
        self._finish()

    def _left(self, child: Child | None, pgid: int) -> bool:
        """Whether the leader or any process of the call is still alive."""
        if child is not None and child.returncode is None:
            return True
        if self.mechanism is Mechanism.CGROUP:
            assert self.cgroup is not None
            return procfs.cgroup_populated(self.cgroup)
        if self._tree is not None:
            return bool(self._tree.members())
        return pgid > 0 and _group_alive(pgid)

    def _signal(self, pgid: int, sig: int) -> None:
        if pgid > 0:
            _signal_group(pgid, sig)
        if self.mechanism is Mechanism.CGROUP:
            assert self.cgroup is not None
            pids: set[int] | list[int] = procfs.cgroup_pids(self.cgroup)
        elif self._tree is not None:
            pids = self._tree.members()
        else:
            return
        for pid in pids:
            _signal_pid(pid, sig)

    def _kill(self, pgid: int) -> None:
        if self.mechanism is Mechanism.CGROUP:
            assert self.cgroup is not None
            site = None if self._owner is None else self._owner.site
            if site is not None and site.kill and procfs.cgroup_kill(self.cgroup):
                return
        self._signal(pgid, signal.SIGKILL)

    def _finish(self) -> None:
        """Remove the call's cgroup and record, unless processes are left (then keep both)."""
        if self.cgroup is not None:
            try:
                self.cgroup.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._kept = True
                log.warning("cgroup %s is left with processes in it: %s", self.cgroup, exc.strerror)
            if self._owner is not None and self._owner.site is not None:
                procfs.remove_dir(self._owner.site.base)
        if self._record is not None and not self._kept:
            drop_record(self._record)


def _find_setpriv() -> str | None:
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        found = subprocess.run(
            [path, "--help"], capture_output=True, timeout=5, env={"LC_ALL": "C"}, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return path if b"--pdeathsig" in found.stdout else None


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


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
