"""The exit codes of the ``edge`` command, in one place (the README's table lists them).

The service units restart edge on ``UPDATED`` (and on any failure); an
interactive ``edge run`` that installed an update exits with it too, so a
wrapper script can tell "start me again" from "I stopped".
"""

from __future__ import annotations

from typing import Final

__all__ = ["CONFIG", "FAILURE", "INTERRUPTED", "OK", "UPDATED"]

#: Done, or stopped cleanly by SIGTERM / SIGINT.
OK: Final = 0
#: The command ran and failed (a tool call's error, a model turn that failed, no daemon).
FAILURE: Final = 1
#: A usage or configuration error: nothing was done.
CONFIG: Final = 2
#: ``edge run`` installed an update and stopped: start it again to run the new version.
UPDATED: Final = 11
#: Interrupted by Ctrl-C.
INTERRUPTED: Final = 130
