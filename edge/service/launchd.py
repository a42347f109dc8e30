"""The launchd agent that runs ``edge run`` as a service on macOS: its property list, as plain
code (no I/O).

``agent(command, environment, home)`` is the agent's dictionary and ``agent_bytes`` its
XML (``plistlib``), written to ``~/Library/LaunchAgents/local.edge.plist``. launchd
starts it when the user logs in (``RunAtLoad``) and again whenever it exits with a
status other than 0 (a failure, or ``exitcodes.UPDATED``: an update was installed)
or crashes (``KeepAlive``); a clean stop (SIGTERM, exit 0) leaves it stopped; launchd
waits ``EXIT_TIMEOUT`` seconds for it (an update's installer is let finish). edge
runs with ``--log-file ~/Library/Logs/edge/edge.log`` (``log_file``): every log line
goes there; its stdout and stderr (warnings, errors, and whatever it prints as it
crashes) go to ``edge.stderr.log`` beside it (``stderr_file``), which launchd appends
to and never rotates.
"""

from __future__ import annotations

import plistlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ..errors import ServiceError
from ..update.install import INSTALL_TIMEOUT

__all__ = [
    "EXIT_MARGIN",
    "EXIT_TIMEOUT",
    "LABEL",
    "agent",
    "agent_bytes",
    "agent_path",
    "log_file",
    "stderr_file",
]

#: The agent's label: its name for launchctl (``gui/<uid>/local.edge``) and its file name.
LABEL: Final = "local.edge"
#: Seconds beyond an installer's time limit that a stopping edge may take (it needs about 1).
EXIT_MARGIN: Final = 60
#: Seconds edge has to stop after SIGTERM before launchd kills it: an update's installer,
#: which a stopping edge lets finish, may run ``INSTALL_TIMEOUT`` seconds.
EXIT_TIMEOUT: Final = int(INSTALL_TIMEOUT) + EXIT_MARGIN

#: What a property list cannot hold (XML 1.0 has no control characters but tab and newlines,
#: and no setting of edge's needs those).
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def agent_path(home: Path) -> Path:
    """``~/Library/LaunchAgents/local.edge.plist``."""
    return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def log_file(home: Path) -> Path:
    """``~/Library/Logs/edge/edge.log``: edge's log (``--log-file``)."""
    return home / "Library" / "Logs" / "edge" / "edge.log"


def stderr_file(home: Path) -> Path:
    """``~/Library/Logs/edge/edge.stderr.log``: where the agent's stdout and stderr go."""
    return home / "Library" / "Logs" / "edge" / "edge.stderr.log"


def agent(command: Sequence[str], environment: Mapping[str, str], home: Path) -> dict[str, Any]:
    """The agent for ``command`` (``[edge, "run", ...]``) as a property-list dictionary.

    Args:
        command: the program (absolute) and its arguments.
        environment: the variables the agent gets (``EDGE_SERVICE`` among them); never a token.
        home: the user's home: the working directory, and where the logs go.

    Raises:
        ServiceError: the program is not absolute, or a string holds a control character.
    """
    if not command or not command[0].startswith("/"):
        raise ServiceError(f"the agent's program must be an absolute path, not {command[:1]!r}")
    for text in (*command, *environment, *environment.values()):
        if _CONTROL.search(text):
            raise ServiceError(f"cannot write {text!r} into a property list: a control character")
    output = str(stderr_file(home))
    return {
        "Label": LABEL,
        "ProgramArguments": list(command),
        "EnvironmentVariables": dict(environment),
        "WorkingDirectory": str(home),
        "RunAtLoad": True,
        # Start again after any exit but a clean one (0), and after a crash.
        "KeepAlive": {"SuccessfulExit": False, "Crashed": True},
        "ExitTimeOut": EXIT_TIMEOUT,
        "StandardOutPath": output,
        "StandardErrorPath": output,
    }


def agent_bytes(plist: Mapping[str, Any]) -> bytes:
    """The agent's XML property list, as launchd reads it."""
    return plistlib.dumps(dict(plist), fmt=plistlib.FMT_XML, sort_keys=False)
