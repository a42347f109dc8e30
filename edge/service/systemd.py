"""The systemd user unit that runs ``edge run`` as a service: its text, as plain code (no I/O).

``unit_text(command, environment)`` is the whole ``edge.service``; ``exec_start(text)``
reads its ``ExecStart=`` back (for ``edge service status``), ``exec_words(text)`` as the
words systemd runs. The unit restarts edge on
a failure and on ``exitcodes.UPDATED`` (an update installed: start the new version, a
success rather than a failure), sends its stdout and stderr to the journal (edge runs
with ``--log-file``: every line goes to its log file, ``log_file``, and only warnings,
errors and what crashes print reach the journal), and stops edge with SIGTERM to
edge alone, so edge stops its own children (``KillMode=mixed``). edge stops within
about a second, unless an update's installer is running: that is let finish (it
has ``INSTALL_TIMEOUT``), so systemd waits that long before it kills anything.

Quoting follows systemd.service(5) and systemd.unit(5): an ``ExecStart=`` word is
double-quoted when it holds anything but plain path characters, with ``\\`` and ``"``
backslash-escaped; ``%`` (a specifier) is written ``%%`` everywhere and ``$`` (a
variable) ``$$`` in arguments. Control characters (a newline would end the setting)
are refused.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from ..errors import ServiceError
from ..exitcodes import UPDATED
from ..update.install import INSTALL_TIMEOUT

__all__ = [
    "RESTART_SEC",
    "STOP_MARGIN",
    "STOP_TIMEOUT",
    "UNIT_NAME",
    "exec_start",
    "exec_words",
    "log_file",
    "quote_arg",
    "quote_environment",
    "unit_dir",
    "unit_text",
]

#: The unit's name (``systemctl --user status edge.service``).
UNIT_NAME: Final = "edge.service"
#: Seconds systemd waits before it starts edge again after a failure or an update.
RESTART_SEC: Final = 5
#: Seconds beyond an installer's time limit that a stopping edge may take (it needs about 1).
STOP_MARGIN: Final = 60
#: Seconds edge has to stop after SIGTERM before what is left is killed: an update's
#: installer, which a stopping edge lets finish (a half-done install could break the
#: environment), may run ``INSTALL_TIMEOUT`` seconds.
STOP_TIMEOUT: Final = int(INSTALL_TIMEOUT) + STOP_MARGIN

#: A word that needs no quotes: plain path and option characters (no space, quote, escape).
_PLAIN: Final = re.compile(r"[A-Za-z0-9_@+=:,./-]+")
#: What systemd refuses in the path of a program ("Executable name contains special characters").
_UNSAFE_PROGRAM: Final = re.compile(r"[\"'\\]")
#: What no unit setting can hold: a control character (a newline would end the line).
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def unit_dir(home: Path) -> Path:
    """Where the unit goes: ``~/.config/systemd/user``, the user manager's own directory.

    ``$XDG_CONFIG_HOME`` of the installing shell is not followed: the user manager
    does not see a shell's variables, and with its usual environment it reads this one.
    """
    return home / ".config" / "systemd" / "user"


def log_file(home: Path, environ: Mapping[str, str]) -> Path:
    """Where the service logs: ``edge.log`` in edge's log directory under the user's state
    directory, ``$XDG_STATE_HOME/edge/log`` (``~/.local/state/edge/log`` when it is not an
    absolute path), as ``edge.logs.default_log_file`` finds it."""
    state = environ.get("XDG_STATE_HOME", "")
    base = Path(state) if os.path.isabs(state) else home / ".local" / "state"
    return base / "edge" / "log" / "edge.log"


def _check(text: str, what: str) -> None:
    if _CONTROL.search(text):
        raise ServiceError(f"cannot write {what} {text!r} into a unit: a control character")


def quote_arg(arg: str, *, first: bool = False) -> str:
    """One ``ExecStart=`` word for ``arg``, quoted and escaped as systemd reads it back.

    Args:
        arg: the word.
        first: it is the program: absolute, and without ``"``, ``'`` or ``\\``, which
            systemd refuses in a program's name; ``$`` is not expanded there, so it stays.

    Raises:
        ServiceError: ``arg`` holds a control character, or is the program and is not
            absolute or holds a character systemd refuses there.
    """
    _check(arg, "the argument")
    if first and not arg.startswith("/"):
        raise ServiceError(f"the program of a unit must be an absolute path, not {arg!r}")
    if first and _UNSAFE_PROGRAM.search(arg):
        raise ServiceError(f"systemd refuses a program whose path holds \\, ' or \": {arg!r}")
    word = arg.replace("%", "%%")
    if not first:
        word = word.replace("$", "$$")
    if _PLAIN.fullmatch(arg) and arg != ";":
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_environment(name: str, value: str) -> str:
    """``Environment=`` line's value for ``name=value`` (quoted; no ``$`` expansion there).

    Raises:
        ServiceError: ``name`` is not a variable name, or either holds a control character.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ServiceError(f"{name!r} is not an environment variable name")
    _check(value, f"the value of {name}")
    body = f"{name}={value}".replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{body}"'


def unit_text(command: Sequence[str], environment: Mapping[str, str], *, version: str) -> str:
    """The whole ``edge.service`` for ``command`` (``[edge, "run", ...]``).

    Args:
        command: the program (absolute) and its arguments.
        environment: the variables the service gets (``EDGE_SERVICE`` among them); never
            a token.
        version: the edge version that writes it (for the header comment).

    Raises:
        ServiceError: a word or a variable cannot be written into a unit.
    """
    if not command:
        raise ServiceError("a unit needs a command")
    exec_line = " ".join(
        quote_arg(arg, first=i == 0) for i, arg in enumerate(command)
    )
    env_lines = "\n".join(
        f"Environment={quote_environment(name, value)}" for name, value in environment.items()
    )
    return f"""\
# edge as a systemd user service: written by `edge service install` (edge {version}),
# which rewrites it; `edge service uninstall` stops and removes it.
# No token is ever written here: edge reads it from its token file or the config.
[Unit]
Description=edge, the cloud brain's pair of hands on this machine

[Service]
Type=simple
ExecStart={exec_line}
WorkingDirectory=~
{env_lines}
Restart=on-failure
RestartSec={RESTART_SEC}
# {UPDATED}: `edge run` installed an update and stopped: start the new version.
SuccessExitStatus={UPDATED}
RestartForceExitStatus={UPDATED}
# SIGTERM to edge alone: it stops its tools, plugins and MCP servers itself, within
# a second or so; an update's installer is let finish (at most {int(INSTALL_TIMEOUT)} s).
# Whatever is still running {STOP_TIMEOUT} s later is killed.
KillMode=mixed
TimeoutStopSec={STOP_TIMEOUT}
# edge logs every line to the file its --log-file names; warnings, errors and
# whatever it prints as it crashes come here too (journalctl --user -u edge.service).
StandardOutput=journal
StandardError=journal
SyslogIdentifier=edge

[Install]
WantedBy=default.target
"""


def exec_start(text: str) -> str | None:
    """The ``ExecStart=`` value of a unit's text as written, or ``None`` if it has none."""
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            return line.removeprefix("ExecStart=")
    return None


def exec_words(text: str) -> list[str] | None:
    """The ``ExecStart=`` of a unit's text as written (by ``unit_text``) back as its words
    (quotes, ``%%`` and ``$$`` undone), or ``None`` if it has none or they do not parse."""
    line = exec_start(text)
    if line is None:
        return None
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    return [w.replace("%%", "%").replace("$$", "$") for w in words]
