"""Server-sent events (``text/event-stream``) decoded from bytes, as plain code.

The model gateway streams a chat turn as server-sent events, one chunk in each
``data:`` field. ``SseDecoder`` takes the response body in whatever pieces the
network delivers and gives back whole events::

    decoder = SseDecoder()
    for piece in body:                      # bytes, cut anywhere
        for event in decoder.feed(piece):
            ...                             # SseEvent(event="message", data="{...}")
    decoder.close()                         # end of stream

The rules are the WHATWG HTML standard's "event stream interpretation"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
UTF-8 (undecodable bytes become U+FFFD), one leading byte-order mark dropped,
lines ending in ``\\r\\n``, ``\\n`` or ``\\r``; a line starting with ``:`` is a
comment; ``field: value`` loses one space after the colon; ``data`` lines of one
event are joined with ``\\n``; a blank line dispatches the event, unless it had
no ``data`` field; ``id`` (without NUL) becomes the last event id, kept for the
events after it; an event not ended by a blank line when the stream ends is
dropped. ``retry`` and unknown fields are ignored.

A ``\\r`` ending one piece ends the line at once (so an event is not held back
waiting for the next piece); a ``\\n`` starting the next piece is then the same
line end, not a blank line.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_LINE", "SseDecoder", "SseError", "SseEvent"]

#: Default bound, in characters, on one line of the stream (a chunk is one line).
MAX_LINE: Final = 4 * 1024 * 1024

#: A line end: CRLF, LF or CR.
_LINE_END: Final = re.compile(r"\r\n|\r|\n")

#: The byte-order mark a stream may start with.
_BOM: Final = "\ufeff"


class SseError(ValueError):
    """The event stream cannot be read on (a line longer than the decoder's ``max_line``)."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched server-sent event."""

    event: str
    """The ``event`` field; ``"message"`` when the event had none."""
    data: str
    """The ``data`` lines, joined with ``\\n``."""
    id: str | None = None
    """The last event id seen so far in the stream (None: no ``id`` field yet)."""


class SseDecoder:
    """Server-sent events from bytes in arbitrary pieces (WHATWG rules: \\n, \\r\\n, \\r line
    ends, ':' comments ignored, 'data:' with one optional space stripped, multi-line data, a
    leading UTF-8 BOM dropped, an event dispatched at a blank line, fields without data not
    dispatched).

    Args:
        max_line: the longest line, and the most data one event may hold, in characters.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max_line = max_line
        self._reset()

    def _reset(self) -> None:
        """Forget everything about the stream so far."""
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False  # some text has been seen (the BOM check is done)
        self._skip_lf = False  # the last piece ended in \r: a \n next is the same line end
        self._partial: list[str] = []  # the current line so far (never holds a line end)
        self._partial_len = 0
        self._event = ""
        self._data: list[str] = []
        self._data_len = 0
        self._last_id: str | None = None

    def feed(self, data: bytes) -> list[SseEvent]:
        """The events completed by the next piece of the stream.

        Raises:
            SseError: a line is longer than ``max_line`` characters.
        """
        return self._text(self._utf8.decode(data))

    def close(self) -> list[SseEvent]:
        """End of stream: the events still completed; an unterminated last event is dropped.

        The decoder starts afresh afterwards (a new stream, no last event id).

        Raises:
            SseError: a line is longer than ``max_line`` characters.
        """
        try:
            return self._text(self._utf8.decode(b"", final=True))
        finally:
            self._reset()

    def _text(self, text: str) -> list[SseEvent]:
        """Split decoded text into lines and interpret each complete one."""
        if not self._started and text:
            self._started = True
            if text.startswith(_BOM):
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        events: list[SseEvent] = []
        start = 0
        for match in _LINE_END.finditer(text):
            piece = text[start : match.start()]
            if self._partial:
                self._partial.append(piece)
                line = "".join(self._partial)
                self._partial.clear()
                self._partial_len = 0
            else:
                line = piece
            if len(line) > self._max_line:
                raise SseError(f"an event-stream line is longer than {self._max_line} characters")
            event = self._line(line)
            if event is not None:
                events.append(event)
            start = match.end()
        if start < len(text):
            rest = text[start:]
            self._partial_len += len(rest)
            if self._partial_len > self._max_line:
                raise SseError(f"an event-stream line is longer than {self._max_line} characters")
            self._partial.append(rest)
        elif text.endswith("\r"):
            self._skip_lf = True
        return events

    def _line(self, line: str) -> SseEvent | None:
        """Interpret one line; the event it dispatches, if any."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data), self._last_id)
            self._event = ""
            self._data.clear()
            self._data_len = 0
            return event
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_len += len(value) + 1
            if self._data_len > self._max_line:
                raise SseError(f"an event is longer than {self._max_line} characters")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        return None
