"""The two service managers edge installs itself into, driven by their own programs.

- ``SystemdUser``: the unit in ``~/.config/systemd/user``, ``systemctl --user`` and
  ``journalctl --user``; the log is the file the unit's ``--log-file`` names, read
  with ``tail`` (the journal when there is no such file: a unit written by an older
  edge, or a service that has not logged yet). A user manager that answers gets the unit enabled and
  (re)started. When none does (no session bus, as under ``su``), the unit is
  enabled anyway (enabling is a symlink, which systemctl makes without a manager)
  and the exact commands to start it are given. Starting at boot, without a login,
  needs lingering (``loginctl enable-linger USER``), which is said when it is off.
- ``LaunchdAgent``: the agent in ``~/Library/LaunchAgents``, ``launchctl
  bootstrap|bootout|print`` in the ``gui/<uid>`` domain; its log file is read directly.
  ``bootout`` returns before launchd has let the job go, and a ``bootstrap`` then
  fails (``5: Input/output error``) for a while: after a bootout, ``print`` is asked
  until the job is gone (``BOOTOUT_WAIT``), and a bootstrap failing with 5 or 37
  (``Operation already in progress``) is tried again for ``BOOTSTRAP_RETRY`` seconds.

``backend_for(host)`` picks the one of the host's platform. Programs run from
argument lists, never through a shell, found on the host's ``PATH``, with
``EDGE_TOKEN`` taken out of their environment, each call bounded by
``COMMAND_TIMEOUT``; their failures become ``ServiceError`` with their own words.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..errors import ServiceError
from ..fs import make_private_dir
from . import launchd, systemd

__all__ = [
    "BOOTOUT_WAIT",
    "BOOTSTRAP_RETRY",
    "COMMAND_TIMEOUT",
    "LINGER_DIR",
    "RUNTIME_ROOT",
    "Host",
    "LaunchdAgent",
    "ServiceStatus",
    "SystemdUser",
    "backend_for",
    "remove_file",
]

#: Seconds a systemctl, launchctl or journalctl call may take: a bound on a hung manager.
COMMAND_TIMEOUT: Final = 30.0
#: Where systemd-logind marks the users whose manager starts at boot (lingering).
LINGER_DIR: Final = Path("/var/lib/systemd/linger")
#: Where the user managers' runtime directories are (``/run/user/<uid>``).
RUNTIME_ROOT: Final = Path("/run/user")
#: Log lines ``edge service status`` shows.
STATUS_LOG_LINES: Final = 10
#: Seconds a ``launchctl bootout`` is given for the job to be gone (``print`` fails).
BOOTOUT_WAIT: Final = 10.0
#: Seconds a ``launchctl bootstrap`` that fails with ``BOOTSTRAP_BUSY`` is tried again.
BOOTSTRAP_RETRY: Final = 15.0
#: launchctl's exit codes for a job still on its way out: 5 (EIO), 37 (EALREADY).
BOOTSTRAP_BUSY: Final = frozenset({5, 37})
#: Seconds between two ``print``s, or two bootstraps, while launchd lets the job go.
LAUNCHD_POLL: Final = 0.2
#: What ``unreachable`` says when there is no systemctl at all.
_NO_SYSTEMCTL: Final = "systemctl is not installed"


@dataclass(frozen=True)
class Host:
    """The user the service is for, as this process sees it (``current()``), or a test's."""

    home: Path
    environ: Mapping[str, str]
    platform: str
    user: str
    uid: int
    #: ``sys.argv[0]`` and ``sys.executable``: how this edge was started.
    argv0: str
    executable: str
    linger_dir: Path = LINGER_DIR
    runtime_root: Path = RUNTIME_ROOT

    @classmethod
    def current(cls) -> Host:
        import pwd

        uid = os.getuid()
        return cls(
            home=Path.home(),
            environ=dict(os.environ),
            platform=sys.platform,
            user=pwd.getpwuid(uid).pw_name,
            uid=uid,
            argv0=sys.argv[0],
            executable=sys.executable,
        )


@dataclass(frozen=True)
class ServiceStatus:
    """``edge service status``: ``None`` where the manager cannot be asked."""

    kind: str
    path: Path
    installed: bool
    enabled: bool | None = None
    running: bool | None = None
    pid: int | None = None
    state: str = ""
    command: str | None = None
    log_source: str = ""
    log_lines: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "installed": self.installed,
            "enabled": self.enabled,
            "running": self.running,
            "pid": self.pid,
            "state": self.state,
            "command": self.command,
            "logSource": self.log_source,
            "logLines": list(self.log_lines),
            "notes": list(self.notes),
        }


# --- programs and files ----------------------------------------------------------------


def _tool_environ(host: Host) -> dict[str, str]:
    """The environment systemctl and friends run in: the host's, without the token."""
    return {k: v for k, v in host.environ.items() if k != "EDGE_TOKEN"}


def _which(environ: Mapping[str, str], name: str) -> str | None:
    return shutil.which(name, path=environ.get("PATH", os.defpath))


def _run(
    environ: Mapping[str, str], name: str, *args: str
) -> subprocess.CompletedProcess[str] | None:
    """Run ``name`` (found on ``environ``'s PATH) with ``args``; ``None`` if it is not there.

    Raises:
        ServiceError: it ran past ``COMMAND_TIMEOUT`` or could not be started.
    """
    program = _which(environ, name)
    if program is None:
        return None
    try:
        return subprocess.run(
            [program, *args],
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ServiceError(
            f"{shlex.join([name, *args])} did not answer within {COMMAND_TIMEOUT:g} s"
        ) from None
    except OSError as exc:
        raise ServiceError(f"cannot run {program}: {exc.strerror or exc}") from None


def _why(result: subprocess.CompletedProcess[str]) -> str:
    """The first line a failed program printed, else its exit status."""
    for line in (result.stderr + "\n" + result.stdout).splitlines():
        if line.strip():
            return line.strip()
    return f"exit status {result.returncode}"


def _tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of the file ``path``, read from its end ([] if there is none).

    Raises:
        ServiceError: it is there and cannot be read.
    """
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            block, data = 8192, b""
            while size > 0 and data.count(b"\n") <= lines:
                step = min(block, size)
                size -= step
                f.seek(size)
                data = f.read(step) + data
                block *= 2
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ServiceError(f"cannot read {path}: {exc.strerror or exc}") from None
    return data.decode("utf-8", "replace").splitlines()[-lines:] if lines > 0 else []


def remove_file(path: Path) -> bool:
    """Remove ``path`` (a file or a symlink); whether there was one.

    Raises:
        ServiceError: it is there and cannot be removed.
    """
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ServiceError(f"cannot remove {path}: {exc.strerror or exc}") from None
    return True


# --- systemd ---------------------------------------------------------------------------


class SystemdUser:
    """edge as a systemd user unit, through ``systemctl --user`` and ``journalctl --user``."""

    kind: Final = "systemd user unit"
    manager: Final = "systemd"

    def __init__(self, host: Host) -> None:
        self.host = host
        self.path = systemd.unit_dir(host.home) / systemd.UNIT_NAME
        #: The symlink ``systemctl enable`` makes (removed by ``disable``, or here).
        self.wants = self.path.parent / "default.target.wants" / systemd.UNIT_NAME
        #: Where a unit written now has edge log (``--log-file``), unless the config says.
        self.log = systemd.log_file(host.home, host.environ)
        env = _tool_environ(host)
        # systemctl without a manager looks for units under $XDG_CONFIG_HOME: make it look
        # where the unit is. A shell without XDG_RUNTIME_DIR (su, sudo -u) cannot reach a
        # user manager that runs: point it at the manager's runtime directory.
        env.pop("XDG_CONFIG_HOME", None)
        runtime = host.runtime_root / str(host.uid)
        if "XDG_RUNTIME_DIR" not in env and (runtime / "systemd" / "private").exists():
            env["XDG_RUNTIME_DIR"] = str(runtime)
        self.env = env

    def render(self, command: list[str], environment: Mapping[str, str], version: str) -> bytes:
        return systemd.unit_text(command, environment, version=version).encode()

    def _systemctl(self, *args: str) -> subprocess.CompletedProcess[str] | None:
        return _run(self.env, "systemctl", "--user", *args)

    def _must(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self._systemctl(*args)
        if result is None:
            raise ServiceError(_NO_SYSTEMCTL)
        if result.returncode != 0:
            raise ServiceError(f"systemctl --user {shlex.join(args)}: {_why(result)}")
        return result

    def unreachable(self) -> str | None:
        """``None`` when a user manager answers, else why not (systemctl's own words)."""
        result = self._systemctl("show", "--property=Version", "--value")
        if result is None:
            return _NO_SYSTEMCTL
        if result.returncode == 0 and result.stdout.strip():
            return None
        return _why(result)

    def linger_lines(self) -> list[str]:
        user = self.host.user
        if (self.host.linger_dir / user).exists():
            return [f"lingering is on for {user}: edge starts at boot"]
        return [
            "edge runs while you are logged in; to start it at boot and keep it running "
            f"after you log out, turn lingering on: loginctl enable-linger {user}"
        ]

    def activate(self, updated: bool) -> list[str]:
        """Start the unit just written (restart it when ``updated``), or say how to."""
        why = self.unreachable()
        unit = systemd.UNIT_NAME
        if why is None:
            self._must("daemon-reload")
            self._must("enable", unit)
            self._must("restart", unit)
            done = "restarted" if updated else "started"
            return [f"enabled and {done} {unit}", *self.linger_lines()]
        enabled = False
        if why != _NO_SYSTEMCTL:
            result = self._systemctl("enable", unit)
            enabled = result is not None and result.returncode == 0
        done = "written and enabled (it starts with your next session)" if enabled else "written"
        return [
            f"no user systemd answers here ({why}): {unit} is {done}, not started.",
            f"Start it, in a login session of {self.host.user}, with:",
            "  systemctl --user daemon-reload",
            f"  systemctl --user enable --now {unit}",
            *self.linger_lines(),
        ]

    def deactivate(self) -> list[str]:
        """Stop and disable the unit where a manager answers; remove its file and symlink."""
        why = self.unreachable()
        unit = systemd.UNIT_NAME
        lines = []
        if why is None:
            self._must("disable", "--now", unit)
            lines.append(f"stopped and disabled {unit}")
        elif why != _NO_SYSTEMCTL:
            result = self._systemctl("disable", unit)  # the symlink: no manager needed
            if result is not None and result.returncode == 0:
                lines.append(f"disabled {unit}")
        if remove_file(self.wants):
            lines.append(f"removed {self.wants}")
        if remove_file(self.path):
            lines.append(f"removed {self.path}")
        if why is None:
            self._must("daemon-reload")
            self._systemctl("reset-failed", unit)  # forget a failed state (fails if none)
        else:
            lines.append(f"no user systemd answers here ({why}): there was nothing to stop")
        return lines

    def query(self) -> ServiceStatus:
        installed = self.path.exists()
        why = self.unreachable()
        enabled: bool | None
        running: bool | None = None
        pid = None
        if why is None:
            shown = self._must(
                "show", systemd.UNIT_NAME,
                "--property=UnitFileState,ActiveState,SubState,MainPID,Result",
            )  # fmt: skip
            props = dict(line.partition("=")[::2] for line in shown.stdout.splitlines())
            enabled = props.get("UnitFileState", "").startswith("enabled")
            running = props.get("ActiveState") == "active"
            pid = int(props.get("MainPID") or 0) or None
            state = f"{props.get('ActiveState', '?')} ({props.get('SubState', '?')})"
            if props.get("Result", "success") not in ("success", ""):
                state += f", last result: {props['Result']}"
        else:
            result = None
            if why != _NO_SYSTEMCTL:
                result = self._systemctl("is-enabled", systemd.UNIT_NAME)
            if result is not None and result.stdout.strip():
                enabled = result.stdout.strip() == "enabled"
            else:
                enabled = self.wants.exists()
            state = f"unknown: no user systemd answers here ({why})"
        command = None
        if installed:
            try:
                command = systemd.exec_start(self.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise ServiceError(f"cannot read {self.path}: {exc}") from None
        log_file = self.unit_log()
        if log_file is not None and log_file.exists():
            source = str(log_file)
            logs = _tail(log_file, STATUS_LOG_LINES) or ["(no log lines)"]
        else:
            source = shlex.join(self._journal(STATUS_LOG_LINES, follow=False, quiet=False))
            journal = _run(self.env, *self._journal(STATUS_LOG_LINES, follow=False, quiet=True))
            if journal is None:
                logs = ["(journalctl is not installed)"]
            else:
                logs = journal.stdout.splitlines() or ["(no log lines)"]
            if log_file is not None:
                logs.append(f"(edge logs to {log_file}, which does not exist yet)")
        return ServiceStatus(
            kind=self.kind,
            path=self.path,
            installed=installed,
            enabled=enabled,
            running=running,
            pid=pid,
            state=state,
            command=command,
            log_source=source,
            log_lines=tuple(logs),
            notes=tuple(self.linger_lines()) if installed else (),
        )

    def unit_log(self) -> Path | None:
        """The log file the installed unit's ``--log-file`` names (``None``: no unit, or
        one without it)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        words = systemd.exec_words(text) or []
        for flag, value in itertools.pairwise(words):
            if flag == "--log-file":
                return self.host.home / value  # edge runs in the home directory
        return None

    @staticmethod
    def _journal(lines: int, *, follow: bool, quiet: bool) -> list[str]:
        args = ["journalctl", "--user", "-u", systemd.UNIT_NAME, "-n", str(lines)]
        if follow:
            args.append("-f")
        if quiet:
            args += ["--no-pager", "--quiet"]
        return args

    def logs_command(self, lines: int, follow: bool) -> list[str]:
        """``tail`` of the unit's log file when there is one (when following: when the unit
        names one), else ``journalctl`` of the unit."""
        log_file = self.unit_log()
        tail = _which(self.env, "tail")
        if log_file is not None and tail is not None and (follow or log_file.exists()):
            return [tail, "-n", str(lines), *(["-F"] if follow else []), str(log_file)]
        args = self._journal(lines, follow=follow, quiet=False)
        program = _which(self.env, args[0])
        if program is None:
            where = f"; edge logs to {log_file}" if log_file is not None else ""
            raise ServiceError(f"journalctl is not installed{where}")
        return [program, *args[1:]]


# --- launchd ---------------------------------------------------------------------------


class LaunchdAgent:
    """edge as a launchd agent in the ``gui/<uid>`` domain, through ``launchctl``."""

    kind: Final = "launchd agent"
    manager: Final = "launchd"

    def __init__(self, host: Host) -> None:
        self.host = host
        self.path = launchd.agent_path(host.home)
        self.log = launchd.log_file(host.home)
        self.domain = f"gui/{host.uid}"
        self.target = f"{self.domain}/{launchd.LABEL}"
        self.env = _tool_environ(host)

    def render(self, command: list[str], environment: Mapping[str, str], version: str) -> bytes:
        return launchd.agent_bytes(launchd.agent(command, environment, self.host.home))

    def _launchctl(self, *args: str) -> subprocess.CompletedProcess[str] | None:
        return _run(self.env, "launchctl", *args)

    def _must(self, *args: str) -> None:
        result = self._launchctl(*args)
        if result is None:
            raise ServiceError("launchctl is not installed")
        if result.returncode != 0:
            raise ServiceError(f"launchctl {shlex.join(args)}: {_why(result)}")

    def _loaded(self) -> bool | None:
        """Whether launchd has the agent loaded (``None``: no launchctl here)."""
        result = self._launchctl("print", self.target)
        return None if result is None else result.returncode == 0

    def _bootout(self) -> None:
        """``launchctl bootout``, then wait until launchd no longer has the job.

        Raises:
            ServiceError: it is still loaded ``BOOTOUT_WAIT`` seconds later.
        """
        result = self._launchctl("bootout", self.target)
        if result is None:
            raise ServiceError("launchctl is not installed")
        deadline = time.monotonic() + BOOTOUT_WAIT
        while self._loaded():
            if time.monotonic() >= deadline:
                why = _why(result) if result.returncode != 0 else (
                    f"still loaded {BOOTOUT_WAIT:g} s later"
                )  # fmt: skip
                raise ServiceError(f"launchctl bootout {self.target}: {why}")
            time.sleep(LAUNCHD_POLL)

    def _bootstrap(self) -> None:
        """``launchctl bootstrap``, tried again while it fails as for a job on its way out.

        Raises:
            ServiceError: it failed otherwise, or still so ``BOOTSTRAP_RETRY`` s later.
        """
        deadline = time.monotonic() + BOOTSTRAP_RETRY
        args = ("bootstrap", self.domain, str(self.path))
        while True:
            result = self._launchctl(*args)
            if result is None:
                raise ServiceError("launchctl is not installed")
            if result.returncode == 0:
                return
            if result.returncode not in BOOTSTRAP_BUSY or time.monotonic() >= deadline:
                raise ServiceError(f"launchctl {shlex.join(args)}: {_why(result)}")
            time.sleep(LAUNCHD_POLL)

    def activate(self, updated: bool) -> list[str]:
        """Load the agent just written (reload it when ``updated``): RunAtLoad starts it."""
        try:
            make_private_dir(self.log.parent)
        except OSError as exc:
            raise ServiceError(f"cannot create {self.log.parent}: {exc.strerror}") from None
        loaded = self._loaded()
        start = f"launchctl bootstrap {self.domain} {shlex.quote(str(self.path))}"
        if loaded is None:
            return [f"launchctl is not here: the agent is written, not loaded. Load it: {start}"]
        if loaded:
            self._bootout()
        self._must("enable", self.target)  # undo a `launchctl disable`, which bootstrap obeys
        self._bootstrap()
        return [
            f"loaded and {'restarted' if updated else 'started'} {launchd.LABEL} ({start})",
            f"launchd starts it at each login; its log: {self.log}",
        ]

    def deactivate(self) -> list[str]:
        """Unload (stop) the agent if it is loaded, remove its file; the logs stay."""
        lines = []
        if self._loaded():
            self._bootout()
            lines.append(f"stopped and unloaded {launchd.LABEL}")
        if remove_file(self.path):
            lines.append(f"removed {self.path}")
        lines.append(f"the logs stay in {self.log.parent}")
        return lines

    def query(self) -> ServiceStatus:
        installed = self.path.exists()
        printed = self._launchctl("print", self.target)
        enabled: bool | None = None
        running: bool | None = None
        pid = None
        if printed is None:
            state = "unknown: launchctl is not here"
        elif printed.returncode != 0:
            running, state = False, "not loaded"
        else:
            found = re.search(r"^\s*state = (\S+)", printed.stdout, re.MULTILINE)
            state = found.group(1) if found else "loaded"
            running = state == "running"
            number = re.search(r"^\s*pid = (\d+)", printed.stdout, re.MULTILINE)
            pid = int(number.group(1)) if number else None
            code = re.search(r"^\s*last exit code = (.+)$", printed.stdout, re.MULTILINE)
            if code and not running:
                state += f", last exit code {code.group(1).strip()}"
        disabled = self._launchctl("print-disabled", self.domain)
        if disabled is not None and disabled.returncode == 0:
            label = re.escape(launchd.LABEL)
            enabled = not re.search(rf'"{label}" => (disabled|true)\b', disabled.stdout)
        command = None
        if installed:
            import plistlib

            try:
                with self.path.open("rb") as f:
                    command = shlex.join(plistlib.load(f).get("ProgramArguments", []))
            except (OSError, ValueError, TypeError) as exc:
                raise ServiceError(f"cannot read {self.path}: {exc}") from None
        return ServiceStatus(
            kind=self.kind,
            path=self.path,
            installed=installed,
            enabled=enabled,
            running=running,
            pid=pid,
            state=state,
            command=command,
            log_source=str(self.log),
            log_lines=tuple(_tail(self.log, STATUS_LOG_LINES) or ["(no log lines)"]),
            notes=("a launch agent runs while you are logged in: launchd starts it at login",)
            if installed
            else (),
        )

    def logs_command(self, lines: int, follow: bool) -> list[str]:
        if not follow and not self.log.exists():
            raise ServiceError(f"no log yet: {self.log} (launchd writes it once the agent runs)")
        program = _which(self.env, "tail")
        if program is None:
            raise ServiceError(f"tail is not installed: the log is {self.log}")
        return [program, "-n", str(lines), *(["-F"] if follow else []), str(self.log)]


def backend_for(host: Host) -> SystemdUser | LaunchdAgent:
    """The service manager of the host's platform.

    Raises:
        ServiceError: the platform has neither.
    """
    if host.platform.startswith("linux"):
        return SystemdUser(host)
    if host.platform == "darwin":
        return LaunchdAgent(host)
    raise ServiceError(
        f"edge service knows systemd (Linux) and launchd (macOS), not {host.platform}"
    )
