"""How edge was installed, the installer command that fits it, and running that command.

Looked at in this order (``detect_installation``):

- **editable**: edge's distribution says so (PEP 610 ``direct_url.json`` with
  ``dir_info.editable``): refused, the checkout is updated with git and pip.
- **source**: no installed distribution of edge (run from a checkout): refused.
- **system**: not in a virtual environment (``sys.prefix == sys.base_prefix``), or
  edge's distribution lies outside the environment: refused, it belongs to
  whatever installed it there (the system's package manager).
- **pipx**: ``pipx_metadata.json`` in ``sys.prefix``: ``pipx install --force WHEEL``,
  so that pipx's own record (version, source, apps) follows and ``pipx
  reinstall`` installs this wheel again (it is kept for that).
- **uv**: ``uv-receipt.toml`` in ``sys.prefix``: ``uv tool install --force WHEEL``.
- **venv**: any other virtual environment: ``python -I -m pip install --quiet
  --require-hashes -r FILE``, FILE holding the one line ``edge @ file:///…/WHEEL --hash=sha256:…``
  (``-I``: nothing from the working directory, the user site or ``PYTHON*`` variables).
  Hash-checking mode applies to everything pip would fetch, and edge knows the
  hash of its own wheel only: dependencies must already be satisfied, and an
  update that needs new ones is refused by pip before anything changes (the
  error says what to run instead).

Installers are run as argument lists, never through a shell, from the downloads
directory (never the caller's working directory), in a session of their own (a
terminal's Ctrl-C does not reach them; a timeout kills the whole session), with
their output handed line by line to the caller; a failure is an ``UpdateError``
with the last lines. An installer that exits 0 has done its work only when the
environment's own Python then reports the target version of edge
(``verify_installed``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from packaging.version import InvalidVersion, Version

from ..errors import UpdateError
from .manifest import PACKAGE

__all__ = [
    "INSTALL_TIMEOUT",
    "Command",
    "Installation",
    "Method",
    "detect_installation",
    "find_installer",
    "installer_argv",
    "installer_command",
    "requirements_file",
    "run_installer",
    "verify_installed",
]

#: Seconds an installer may run before it is killed.
INSTALL_TIMEOUT: Final = 900.0
#: Seconds the environment's Python may take to report the installed version.
VERSION_TIMEOUT: Final = 60.0
#: What that Python runs (isolated, ``-I``): the version of edge's distribution, on stdout.
VERSION_CODE: Final = f"import importlib.metadata as m; print(m.version({PACKAGE!r}))"
#: Seconds between two looks at an installer that closed its output but has not exited.
REAP_POLL: Final = 0.02
#: Lines of an installer's output an error quotes.
TAIL_LINES: Final = 15
#: Where pipx records a venv it made, and uv a tool environment.
PIPX_METADATA: Final = "pipx_metadata.json"
UV_RECEIPT: Final = "uv-receipt.toml"
#: Environment variables an installer never gets.
WITHHELD: Final = ("EDGE_TOKEN",)


class Method(StrEnum):
    """How edge was installed."""

    PIPX = "pipx"
    UV = "uv"
    VENV = "venv"
    EDITABLE = "editable"
    SOURCE = "source"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Installation:
    """An installation of edge: how it was made, where, and whether edge can update it."""

    method: Method
    #: The environment (``sys.prefix``).
    prefix: Path
    #: Its interpreter.
    python: Path
    #: The version its distribution of edge has (``None``: no distribution).
    version: Version | None
    #: Why edge cannot update it, and what to run instead (``None``: it can).
    problem: str | None = None
    #: pipx: the ``--suffix`` it was installed with.
    suffix: str = ""
    #: uv: the directory its entry points were installed to (from the receipt).
    bin_dir: Path | None = None

    def require(self) -> None:
        """Raise the ``UpdateError`` saying why edge cannot update it, if it cannot."""
        if self.problem is not None:
            raise UpdateError(self.problem)

    def describe(self) -> str:
        """One line: how, and where."""
        how = {
            Method.PIPX: "pipx install --force",
            Method.UV: "uv tool install --force",
            Method.VENV: "pip install --require-hashes",
        }.get(self.method)
        return f"{self.method} {self.prefix}" + (f", updated with {how}" if how else "")


def detect_installation(
    *,
    prefix: str | Path | None = None,
    base_prefix: str | Path | None = None,
    python: str | Path | None = None,
    path: Iterable[str] | None = None,
) -> Installation:
    """How the edge at ``prefix`` was installed (default: this interpreter's).

    Edge's distribution is looked for in the environment's own site-packages
    first, then along ``path``: one found only there (a user site, the system's
    site-packages) is not the environment's to update.

    Args:
        prefix: the environment (default ``sys.prefix``).
        base_prefix: the Python it was made from (default ``sys.base_prefix``).
        python: its interpreter (default ``sys.executable``).
        path: where else to look for edge's distribution (default ``sys.path``).
    """
    where = Path(sys.prefix if prefix is None else prefix)
    base = Path(sys.base_prefix if base_prefix is None else base_prefix)
    exe = Path(sys.executable if python is None else python)
    in_venv = where.resolve() != base.resolve()
    own = _site_dirs(where)
    dist = _find(own)
    inside = dist is not None
    if dist is None:
        dist = _find(entry for entry in (sys.path if path is None else path) if entry)
    version = _version(dist)
    editable = None if dist is None else _editable_source(dist)
    if editable is not None:
        problem = (
            f"edge {version} is an editable install of the checkout {editable}: update the "
            f"checkout instead: git -C {editable} pull && {exe} -m pip install -e {editable}"
        )
        return Installation(Method.EDITABLE, where, exe, version, problem)
    if dist is None:
        source = Path(__file__).resolve().parents[2]
        problem = (
            f"edge runs from source ({source}), not from an installed package: update the "
            f"checkout (git -C {source} pull), or install edge with pipx to let it update itself"
        )
        return Installation(Method.SOURCE, where, exe, None, problem)
    if not in_venv or not inside:
        located = Path(str(dist.locate_file(""))).resolve()
        problem = (
            f"edge {version} is installed in {located}, not in a virtual environment of its "
            "own: update it with what installed it there (the system's package manager: apt, "
            "dnf, pacman, brew, ...), or install edge with pipx (pipx install edge) to let it "
            "update itself"
        )
        return Installation(Method.SYSTEM, where, exe, version, problem)
    if (where / PIPX_METADATA).is_file():
        return Installation(Method.PIPX, where, exe, version, suffix=_pipx_suffix(where))
    if (where / UV_RECEIPT).is_file():
        return Installation(Method.UV, where, exe, version, bin_dir=_uv_bin_dir(where))
    return Installation(Method.VENV, where, exe, version)


def _site_dirs(prefix: Path) -> list[str]:
    """The site-packages directories of the virtual environment at ``prefix``."""
    scheme = "venv" if "venv" in sysconfig.get_scheme_names() else "posix_prefix"
    paths = sysconfig.get_paths(scheme=scheme, vars={"base": prefix, "platbase": prefix})
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def _find(path: Iterable[str]) -> importlib.metadata.Distribution | None:
    found = importlib.metadata.distributions(name=PACKAGE, path=list(path))
    return next(iter(found), None)


def _version(dist: importlib.metadata.Distribution | None) -> Version | None:
    if dist is None:
        return None
    try:
        return Version(dist.version)
    except InvalidVersion:
        return None


def _editable_source(dist: importlib.metadata.Distribution) -> Path | None:
    """The checkout an editable install points at (PEP 610), ``None`` if it is not one."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("dir_info"), dict):
        return None
    if info["dir_info"].get("editable") is not True:
        return None
    url = str(info.get("url", ""))
    parts = urlsplit(url)
    return Path(unquote(parts.path)) if parts.scheme == "file" else Path(url)


def _pipx_suffix(prefix: Path) -> str:
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        data = json.loads((prefix / PIPX_METADATA).read_text(encoding="utf-8"))
        suffix = data["main_package"].get("suffix") or ""
        return suffix if isinstance(suffix, str) else ""
    return ""


def _uv_bin_dir(prefix: Path) -> Path | None:
    with contextlib.suppress(OSError, tomllib.TOMLDecodeError, TypeError, KeyError, IndexError):
        receipt = tomllib.loads((prefix / UV_RECEIPT).read_text(encoding="utf-8"))
        entry = receipt["tool"]["entrypoints"][0]
        return Path(entry["install-path"]).parent
    return None


# --- the command --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """An installer's argument list and environment."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    #: Files made for it (the requirements file), removed after it ran.
    files: tuple[Path, ...] = ()
    #: What a person would run instead (from the index, not hash-checked), for messages.
    manual: str = ""
    #: Where it runs (the downloads directory; ``None``: the caller's working directory).
    cwd: Path | None = None
    #: What prints the version of edge the target environment holds (``verify_installed``).
    version_argv: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The installer's name for messages: pip (``python -m pip``), pipx, uv."""
        argv = self.argv
        if "-m" in argv[:-1]:
            return argv[argv.index("-m") + 1]
        return Path(argv[0]).name

    def describe(self) -> str:
        return shlex.join(self.argv)


def find_installer(
    installation: Installation, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The argv prefix that runs the installer ``installation`` needs.

    Raises:
        UpdateError: edge cannot update it, or its installer (pipx, uv) is not found.
    """
    installation.require()
    env = os.environ if environ is None else environ
    if installation.method is Method.VENV:
        return (str(installation.python), "-I", "-m", "pip")
    name = str(installation.method)
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    bin_dirs = [Path(env.get("PIPX_BIN_DIR") or home / ".local" / "bin"), home / ".cargo" / "bin"]
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    for candidate in [Path(found)] if found else [d / name for d in bin_dirs]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return (str(candidate),)
    raise UpdateError(
        f"edge was installed with {name}, which is not on PATH (nor in "
        f"{', '.join(str(d) for d in bin_dirs)}): make it reachable, then update again"
    )


def installer_argv(
    installation: Installation, program: tuple[str, ...], wheel: Path
) -> tuple[str, ...]:
    """The installer's arguments for ``wheel`` (``program`` from ``find_installer``); for a
    venv they name the requirements file ``requirements_file(wheel)``."""
    if installation.method is Method.PIPX:
        suffix = ("--suffix", installation.suffix) if installation.suffix else ()
        return (*program, "install", "--force", *suffix, str(wheel))
    if installation.method is Method.UV:
        return (*program, "tool", "install", "--force", str(wheel))
    requirements = str(requirements_file(wheel))
    return (*program, "install", "--quiet", "--require-hashes", "--no-input", "-r", requirements)


def requirements_file(wheel: Path) -> Path:
    """The pip requirements file for a venv install of ``wheel``: beside it."""
    return wheel.with_name(wheel.name + ".requirements.txt")


def installer_command(
    installation: Installation,
    wheel: Path,
    sha256: str,
    *,
    spec: str,
    environ: Mapping[str, str] | None = None,
) -> Command:
    """The command that installs the verified ``wheel`` (sha256 ``sha256``, the release
    ``spec``) into ``installation``; for a venv it writes the requirements file beside
    the wheel.

    The command runs in the wheel's directory; its ``version_argv`` asks the
    environment's Python (the venv's; for pipx and uv, the one of the environment
    they make again at ``installation.prefix``) which edge it holds.

    Raises:
        UpdateError: edge cannot update ``installation``, its installer is missing,
            or the requirements file cannot be written.
    """
    program = find_installer(installation, environ)
    argv = installer_argv(installation, program, wheel)
    env = {
        k: v for k, v in (os.environ if environ is None else environ).items() if k not in WITHHELD
    }
    env.update(NO_COLOR="1", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    quoted = shlex.quote(spec)
    where = wheel.parent
    if installation.method is Method.VENV:
        python = installation.python
    else:
        python = installation.prefix / "bin" / "python"
    version = (str(python), "-I", "-c", VERSION_CODE)
    if installation.method is Method.PIPX:
        venvs = installation.prefix.parent
        if venvs.name == "venvs":  # $PIPX_HOME/venvs/NAME: the home it belongs to
            env["PIPX_HOME"] = str(venvs.parent)
        return Command(
            argv, env, manual=f"pipx install --force {quoted}", cwd=where, version_argv=version
        )
    if installation.method is Method.UV:
        env["UV_TOOL_DIR"] = str(installation.prefix.parent)
        if installation.bin_dir is not None:
            env["UV_TOOL_BIN_DIR"] = str(installation.bin_dir)
        return Command(
            argv, env, manual=f"uv tool install --force {quoted}", cwd=where, version_argv=version
        )
    requirements = requirements_file(wheel)
    try:
        requirements.write_text(
            f"{PACKAGE} @ {wheel.resolve().as_uri()} --hash=sha256:{sha256}\n", encoding="utf-8"
        )
    except OSError as exc:
        raise UpdateError(f"cannot write {where}: {exc.strerror or exc}") from exc
    manual = f"{installation.python} -m pip install {quoted}"
    return Command(argv, env, (requirements,), manual, cwd=where, version_argv=version)


# --- running it ---------------------------------------------------------------------------


def run_installer(
    command: Command, on_line: Callable[[str], None], *, timeout: float = INSTALL_TIMEOUT
) -> None:
    """Run ``command`` to its end (blocking), each line of its output to ``on_line``.

    It runs in ``command.cwd``, in a session of its own; past ``timeout`` the whole
    session's process group is killed (pip's own children with it).

    Raises:
        UpdateError: it could not start, failed, or ran over ``timeout`` (then it is
            killed); the message ends with its last lines.
    """
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    timed_out = threading.Event()
    name = command.name
    try:
        process = subprocess.Popen(
            command.argv,
            env=dict(command.env),
            cwd=command.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise UpdateError(f"cannot run {command.argv[0]}: {exc.strerror or exc}") from None
    # The group is killed only while its leader is not reaped: its id is not reused till then.
    reaping = threading.Lock()
    reaped = threading.Event()

    def kill() -> None:
        with reaping:
            if reaped.is_set():
                return
            timed_out.set()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        with process:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                tail.append(line)
                on_line(line)
            code = _reap(process, reaping, reaped)
    finally:
        timer.cancel()
        for path in command.files:
            with contextlib.suppress(OSError):
                path.unlink()
    last = "\n".join(tail)
    if timed_out.is_set():
        raise UpdateError(f"{name} did not finish within {timeout:g} s and was stopped:\n{last}")
    if code != 0:
        raise UpdateError(f"{name} failed (exit {code}){_hint(tail, command.manual)}:\n{last}")


def _reap(
    process: subprocess.Popen[bytes], reaping: threading.Lock, reaped: threading.Event
) -> int:
    """Wait for ``process`` to exit; reap it holding ``reaping`` and set ``reaped`` there
    (a kill of its group then never meets a reused id); its exit code."""
    while True:
        with reaping:
            code = process.poll()
            if code is not None:
                reaped.set()
                return code
        time.sleep(REAP_POLL)


def verify_installed(command: Command, expected: Version) -> None:
    """Check, after ``command`` exited 0, that its environment holds edge ``expected``
    (its Python, isolated, asked in ``command.cwd``); nothing to check without a
    ``version_argv``.

    Raises:
        UpdateError: that Python cannot tell, or names another version: the installer
            said it succeeded, and did not install the target.
    """
    if not command.version_argv:
        return
    python = command.version_argv[0]
    try:
        done = subprocess.run(
            command.version_argv,
            env=dict(command.env),
            cwd=command.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=VERSION_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpdateError(
            f"{command.name} exited 0, but {python} could not be asked which edge it holds: {exc}"
        ) from None
    said = done.stdout.strip()
    if done.returncode != 0 or not said:
        fallback = f"exit {done.returncode}" if done.returncode else "it printed nothing"
        why = (done.stderr.strip().splitlines() or [fallback])[-1]
        raise UpdateError(
            f"{command.name} exited 0, but {python} finds no edge installed ({why}): "
            "the update did not take effect"
        )
    try:
        got = Version(said)
    except InvalidVersion:
        got = None
    if got != expected:
        raise UpdateError(
            f"{command.name} exited 0, but {python} reports edge {said}, not {expected}: "
            "the update did not take effect"
        )


def _hint(tail: Iterable[str], manual: str) -> str:
    """What to add to an installer's failure, when its output tells what happened."""
    if any("--require-hashes mode" in line or "Hashes are required" in line for line in tail):
        instead = f" ({manual})" if manual else ""
        return (
            ": this version needs dependencies that are not installed here, and edge lets pip "
            "fetch nothing it cannot check by hash, so nothing was changed; install it "
            f"yourself{instead}"
        )
    return ""
