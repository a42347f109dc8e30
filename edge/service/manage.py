"""Install, remove and query edge as a user service, and find its logs.

``install``, ``uninstall``, ``status`` and ``logs_command`` act for a ``Host`` (this
user: ``Host.current()``) through the service manager of its platform
(``backends``): a systemd user unit on Linux, a launchd agent on macOS.

``install`` builds the command the service runs, this installation's ``edge run``
(``edge_command``), with ``--config`` and ``--token-file`` made absolute when given
and ``--log-file`` (the config's ``[log] file``, else the service's default:
``~/.local/state/edge/log/edge.log``, ``~/Library/Logs/edge/edge.log`` on macOS),
checks what it will read (the config loads; a token file named exists, and is
private), writes the file atomically (a temporary file beside the target, then
renamed), mode 0644, in directories created 0700 as needed, and starts it. No token
is ever written into a unit or an agent: ``--token-file`` passes a file's path, and
a token file named in the config is left to ``edge run``, which reads the config.
"""

from __future__ import annotations

import os
import shlex
import stat
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .. import __version__
from ..errors import ConfigError, ServiceError
from ..fs import make_private_dir
from .backends import Host, ServiceStatus, SystemdUser, backend_for, remove_file

__all__ = [
    "Host",
    "InstallOptions",
    "Outcome",
    "ServiceStatus",
    "edge_command",
    "install",
    "logs_command",
    "service_environment",
    "status",
    "uninstall",
]

#: Permission bits of the unit and the agent: readable by all, like the managers' own files.
SERVICE_FILE_MODE: Final = 0o644
#: The variables the service gets from the installing shell, so that it finds the same
#: programs and the same config, state and data as ``edge`` does there.
PASSED_VARIABLES: Final = ("PATH", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")
#: The environment variable that tells ``edge run`` it runs as a service (and under what).
SERVICE_VARIABLE: Final = "EDGE_SERVICE"


@dataclass(frozen=True)
class InstallOptions:
    """What ``edge service install`` passes to ``edge run``: paths only, never a token."""

    config_file: Path | None = None
    token_file: Path | None = None


@dataclass
class Outcome:
    """What install or uninstall did: the file, its text, and lines for the user."""

    path: Path
    text: str = ""
    lines: list[str] = field(default_factory=list)


# --- the command the service runs ------------------------------------------------------
#
# The service must run *this* edge, by an absolute path that stays valid. In order:
# the ``edge`` script this process was started as (``sys.argv[0]``: the kernel hands the
# interpreter the script's path as the shell found it); else an ``edge`` console script
# of this interpreter (beside it, as in a virtual environment, or in its scripts
# directories) whose ``#!`` names this interpreter; else ``python -m edge`` with this
# interpreter, which always works. Paths are made absolute but symlinks are kept:
# ``~/.local/bin/edge`` (pipx) or ``/opt/homebrew/bin/edge`` stay valid across upgrades,
# what they point to (a versioned directory) may not. ``shutil.which("edge")`` is not
# asked: the first ``edge`` on PATH may belong to another installation.


def edge_command(argv0: str, executable: str) -> list[str]:
    """This installation's ``edge`` as an absolute command (see the comment above).

    Raises:
        ServiceError: there is no script and no interpreter path to run.
    """
    if os.path.basename(argv0) == "edge" and _is_program(argv0):
        return [os.path.abspath(argv0)]
    if executable:
        for scripts in _script_dirs(executable):
            script = scripts / "edge"
            if _is_program(str(script)) and _runs_with(script, executable):
                return [os.path.abspath(script)]
        return [os.path.abspath(executable), "-m", "edge"]
    raise ServiceError("cannot tell how this edge was started (no sys.executable)")


def _is_program(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _script_dirs(executable: str) -> list[Path]:
    dirs = [Path(executable).parent]
    for scheme in (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user")):
        try:
            path = sysconfig.get_path("scripts", scheme)
        except KeyError:
            continue
        if path and Path(path) not in dirs:
            dirs.append(Path(path))
    return dirs


def _runs_with(script: Path, executable: str) -> bool:
    """``script`` is edge's console script and its ``#!`` names ``executable`` (the same file)."""
    try:
        with script.open("rb") as f:
            head = f.read(1024)
        first = head.split(b"\n", 1)[0]
        if not first.startswith(b"#!") or b"edge.cli" not in head:
            return False
        interpreter = os.fsdecode(first[2:].strip().split()[0])
        return os.path.samefile(interpreter, executable)
    except (OSError, IndexError):
        return False


def service_environment(host: Host, manager: str) -> dict[str, str]:
    """The service's variables: ``EDGE_SERVICE=manager`` and those of ``PASSED_VARIABLES`` the
    host has: ``PATH``'s absolute directories, an ``XDG_`` one when absolute (as the XDG spec
    wants). Never ``EDGE_TOKEN``."""
    env = {SERVICE_VARIABLE: manager}
    for name in PASSED_VARIABLES:
        value = host.environ.get(name, "")
        if name == "PATH":
            # Only absolute directories: a relative one would be looked up from the
            # service's working directory, which is not the shell's.
            dirs = (d for d in value.split(os.pathsep) if os.path.isabs(d))
            value = os.pathsep.join(dict.fromkeys(dirs))
        if value and os.path.isabs(value):
            env[name] = value
    return env


def _absolute(path: Path, flag: str) -> Path:
    try:
        return Path(os.path.abspath(path.expanduser()))
    except RuntimeError:
        raise ConfigError(f"{flag} {str(path)!r}: cannot expand its `~`: no such user") from None


def _run_command(host: Host, options: InstallOptions, log_file: Path) -> list[str]:
    command = [*edge_command(host.argv0, host.executable), "run"]
    if options.config_file is not None:
        command += ["--config", str(_absolute(options.config_file, "--config"))]
    if options.token_file is not None:
        command += ["--token-file", str(_absolute(options.token_file, "--token-file"))]
    return [*command, "--log-file", str(log_file)]


def _log_file(host: Host, options: InstallOptions, default: Path) -> Path:
    """Where the service logs: the config's ``[log] file`` (as ``edge run`` reads it, from
    the home directory), else ``default``.

    Raises:
        ConfigError: the config does not load, or its ``[log] file`` names an unknown user.
    """
    from ..config import default_paths, load_file

    path = _absolute(options.config_file, "--config") if options.config_file else None
    if path is None:
        path = default_paths()[0]
        if not path.exists():
            return default
    named = load_file(path).get("log", {}).get("file")
    if not named:
        return default
    try:
        return host.home / Path(named).expanduser()
    except RuntimeError:
        raise ConfigError(f"log.file {named!r}: no such user") from None


def _config_lines(host: Host, options: InstallOptions) -> list[str]:
    """What the service will read its config and token from, checked now (but never the
    token itself); warnings for what will not work.

    Raises:
        ConfigError: the config does not load, or a token file named does not exist.
    """
    from ..config import default_paths, load_file

    lines: list[str] = []
    config = _absolute(options.config_file, "--config") if options.config_file else None
    default = default_paths()[0]
    token_key = None
    if config is not None or default.exists():
        path = config or default
        token_key = load_file(path).get("tunnel", {}).get("token_file")
        lines.append(f"config: {path}")
    else:
        lines.append(f"config: none (edge run reads {default} once it exists)")
    token: Path | None = None
    if options.token_file is not None:
        token = _absolute(options.token_file, "--token-file")
        lines.append(f"token: read from {token} (--token-file)")
    elif token_key:
        # edge run reads it relative to its working directory, which is the home directory.
        try:
            token = host.home / Path(token_key).expanduser()
        except RuntimeError:
            raise ConfigError(f"tunnel.token_file {token_key!r}: no such user") from None
        lines.append(f"token: read from {token} (tunnel.token_file in the config)")
    else:
        lines.append(
            "token: none configured: the daemon waits for the cloud's web page to hand it one"
        )
        if host.environ.get("EDGE_TOKEN"):
            lines.append(
                "note: EDGE_TOKEN of this shell is not given to the service (a unit is no place "
                "for a token): put it in a file of mode 0600 and pass --token-file FILE, or name "
                "the file in [tunnel] token_file"
            )
    if token is not None:
        try:
            mode = token.stat().st_mode
        except FileNotFoundError:
            raise ConfigError(f"the token file {token} does not exist: create it first") from None
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {token}: {exc.strerror}") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            lines.append(f"warning: other users can read the token file: chmod 600 {token}")
    return lines


# --- files and operations ---------------------------------------------------------------


def _write_service_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, mode 0644 (missing parents made 0700).

    Raises:
        ServiceError: it cannot be written.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        make_private_dir(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, SERVICE_FILE_MODE)
        try:
            os.fchmod(fd, SERVICE_FILE_MODE)  # the umask, or a stale temporary file's mode
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ServiceError(f"cannot write {exc.filename or path}: {exc.strerror or exc}") from None



def install(host: Host, options: InstallOptions, *, dry_run: bool = False) -> Outcome:
    """Write the unit (or agent) for ``edge run`` and start it where a manager answers.

    Installing over an existing one rewrites it and restarts the service.

    Args:
        host: the user.
        options: ``--config`` and ``--token-file`` for ``edge run`` (paths only).
        dry_run: only build the text; write and run nothing.

    Raises:
        ConfigError: the config does not load, or a token file named is missing.
        ServiceError: the file cannot be written, or the manager refuses it.
    """
    backend = backend_for(host)
    log_file = _log_file(host, options, backend.log)
    command = _run_command(host, options, log_file)
    data = backend.render(command, service_environment(host, backend.manager), __version__)
    outcome = Outcome(path=backend.path, text=data.decode())
    outcome.lines.append(f"runs: {shlex.join(command)}")
    outcome.lines += _config_lines(host, options)
    outcome.lines.append(f"log: {log_file} (edge service logs)")
    if dry_run:
        return outcome
    updated = backend.path.exists()
    _write_service_file(backend.path, data)
    wrote = f"{'updated' if updated else 'wrote'} {backend.path}"
    outcome.lines.insert(0, wrote)
    try:
        outcome.lines += backend.activate(updated)
    except ServiceError as exc:
        raise ServiceError(f"{wrote}, but it did not start: {exc}") from exc
    return outcome


def uninstall(host: Host) -> Outcome:
    """Stop the service and remove its file; says so when there is none.

    Raises:
        ServiceError: the manager refuses to stop it, or the file cannot be removed.
    """
    backend = backend_for(host)
    if not backend.path.exists():
        lines = [f"edge service is not installed (no {backend.path}): nothing to remove"]
        if isinstance(backend, SystemdUser) and remove_file(backend.wants):
            lines.append(f"removed a leftover {backend.wants}")
        return Outcome(path=backend.path, lines=lines)
    return Outcome(path=backend.path, lines=backend.deactivate())


def status(host: Host) -> ServiceStatus:
    """Whether the service is installed, enabled and running, and its last log lines.

    Raises:
        ServiceError: the manager answers but not as expected, or the file is unreadable.
    """
    return backend_for(host).query()


def logs_command(host: Host, *, lines: int, follow: bool) -> list[str]:
    """The command that shows the service's last ``lines`` log lines (and follows them).

    Raises:
        ServiceError: the program it needs is not installed.
    """
    return backend_for(host).logs_command(lines, follow)
