"""A child's stderr into edge's log, by line and rate-limited; the last lines kept.

MCP stdio servers (and any other child edge runs) may write a lot to stderr.
``StderrDrain.drain`` logs each line at INFO, at most
``STDERR_LINES_PER_SECOND`` a second; the rest are counted (``suppressed``)
and summed up in one warning when the next second's first line comes. The
last ``STDERR_KEPT`` lines stay in ``tail`` (for an error message: "its last
stderr line: ..."), across restarts of the child.
"""

from __future__ import annotations

import collections
import logging
from typing import Final

import trio

__all__ = ["StderrDrain"]

#: Lines logged per second at most; the rest are counted.
STDERR_LINES_PER_SECOND: Final = 20
#: Characters kept of one line (a longer run without a newline is cut into lines this long).
STDERR_LINE_CHARS: Final = 2000
#: Lines kept in ``StderrDrain.tail``.
STDERR_KEPT: Final = 20
#: Bytes read at once.
READ_SIZE: Final = 65536


class StderrDrain:
    """Logs the lines of a child's stderr to ``logger`` as ``"<label> stderr: <line>"``."""

    def __init__(
        self, label: str, logger: logging.Logger, rate: int = STDERR_LINES_PER_SECOND
    ) -> None:
        self.label = label
        #: Lines logged per second at most.
        self.rate = rate
        self.tail: collections.deque[str] = collections.deque(maxlen=STDERR_KEPT)
        self.suppressed = 0
        self._log = logger
        self._window_start = 0.0
        self._in_window = 0
        self._window_suppressed = 0

    async def drain(self, stream: trio.abc.ReceiveStream, *, close: bool = True) -> None:
        """Read ``stream`` to its end, logging its lines; closes it unless ``close`` is false
        (a stream read further by someone else once this drain is cancelled).

        One stream at a time (each restart of the child gets a new one); the
        tail and the count carry on across them.
        """
        buffer = b""
        self._window_start, self._in_window, self._window_suppressed = trio.current_time(), 0, 0
        try:
            while data := await stream.receive_some(READ_SIZE):
                *lines, buffer = (buffer + data).split(b"\n")
                if len(buffer) > STDERR_LINE_CHARS:
                    lines.append(buffer)
                    buffer = b""
                for raw in lines:
                    line = raw[:STDERR_LINE_CHARS].decode("utf-8", "replace").rstrip()
                    if line:
                        self._line(line)
        finally:
            if close:
                await stream.aclose()

    def _line(self, line: str) -> None:
        self.tail.append(line)
        now = trio.current_time()
        if now - self._window_start >= 1.0:
            if self._window_suppressed:
                self._log.warning(
                    "%s: %d stderr lines not logged (too many)",
                    self.label,
                    self._window_suppressed,
                )
            self._window_start, self._in_window, self._window_suppressed = now, 0, 0
        if self._in_window < self.rate:
            self._in_window += 1
            self._log.info("%s stderr: %s", self.label, line)
        else:
            self._window_suppressed += 1
            self.suppressed += 1
