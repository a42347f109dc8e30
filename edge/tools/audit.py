"""What tool calls ran: the calls in flight and the last ones finished, never their args or output.

``Executor.call`` (``edge.tools.execute``) reports every call here when the daemon
gave it a ``CallLog``: ``begin`` when the call starts, ``end`` when it is over,
whatever its outcome. A ``CallRecord`` holds the call's id, tool, the tool's
source (``builtin``, ``mcp:time``, ``plugin:notes``...), when it started (wall
time), how long it took, its outcome (``OUTCOMES``), the size of its output in
characters (of its error text, the caller's, when it has no output) and a short
summary of why it failed, in edge's own words (never a tool's error text, which
may hold output). ``CallLog`` keeps the ones in flight
and the last ``KEEP_RECENT`` finished (``GET /calls``, ``edge.control.calls``)
and tells its listeners of each start and end (the daemon turns them into
``call_started`` and ``call_finished`` events).

The cost per call is a few attribute writes and a dict insert and removal: times
are kept as numbers and turned into text only when a snapshot or an event asks.
Plain code: no trio, no I/O.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..logs import iso_time

__all__ = ["KEEP_RECENT", "OUTCOMES", "CallLog", "CallRecord", "Outcome", "label"]

#: Finished calls a ``CallLog`` keeps.
KEEP_RECENT: Final = 300
#: Longest id or tool name a record or a log line shows (longer ones are cut).
LABEL_LIMIT: Final = 80

#: How a call ended: ``refused`` is an unknown tool, one the policy or the cloud does not
#: allow, args that break its schema, or a call turned away before it ran (busy, updating).
Outcome = Literal["ok", "error", "timeout", "cancelled", "refused"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("ok", "error", "timeout", "cancelled", "refused")


def label(value: object) -> str:
    """``value`` as one short printable word for a log line or a record: ids and tool names
    come from the cloud, and a newline in one must not forge a log line."""
    text = str(value)
    if len(text) <= LABEL_LIMIT and text.isprintable() and " " not in text:
        return text
    return ascii(text[:LABEL_LIMIT])


@dataclass(slots=True, eq=False)
class CallRecord:
    """One call: what ran, when, for how long, how it ended. Never its args or output."""

    id: str
    tool: str
    #: Where the tool comes from (``ToolSpec.source``); ``""`` for a tool that is not registered.
    source: str
    #: Wall time (``time.time()``) when it started.
    started_at: float
    #: When it started on its log's clock (``CallLog.clock``: how long it has run so far).
    began: float
    #: Seconds it took; ``None`` while it runs.
    seconds: float | None = None
    outcome: Outcome | None = None
    #: Characters of its output (or of its error message) as delivered.
    chars: int = 0
    #: Why it did not succeed, in edge's words (``None`` when it did).
    error: str | None = None
    #: Its number in its ``CallLog`` (the order calls started in).
    serial: int = 0

    @property
    def started(self) -> str:
        """When it started: local time with its UTC offset (``edge.logs.iso_time``)."""
        return iso_time(self.started_at)

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """The record as ``GET /calls`` and the events show it; a call still running gets
        the seconds it has run so far (``now``: the time on its log's clock; without it,
        none)."""
        running = self.outcome is None
        seconds = self.seconds
        if seconds is None:
            seconds = 0.0 if now is None else max(0.0, now - self.began)
        entry: dict[str, Any] = {
            "id": self.id,
            "tool": self.tool,
            "source": self.source,
            "started": self.started,
            "seconds": round(seconds, 3),
        }
        if not running:
            entry.update(outcome=self.outcome, chars=self.chars, error=self.error)
        return entry


Listener = Callable[[CallRecord], None]


class CallLog:
    """The calls in flight and the last ``keep`` finished; state of its owner (the daemon).

    Args:
        keep: how many finished calls to keep (the oldest go first).
        on_started: called with each call's record when it starts.
        on_finished: called with each call's record when it is over (its outcome set).
        clock: the time calls in flight are measured on (the daemon's: trio's clock).
    """

    def __init__(
        self,
        keep: int = KEEP_RECENT,
        *,
        on_started: Listener | None = None,
        on_finished: Listener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.on_started = on_started
        self.on_finished = on_finished
        self._running: dict[int, CallRecord] = {}
        self._recent: deque[CallRecord] = deque(maxlen=keep)
        self._serial = itertools.count(1)
        #: Calls finished since this log was made, by outcome.
        self.counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)

    def __len__(self) -> int:
        """Calls in flight."""
        return len(self._running)

    def begin(self, call_id: object, tool: str, source: str) -> CallRecord:
        """A call starts: its record (for ``end``). A call without an id gets ``local-N``."""
        serial = next(self._serial)
        record = CallRecord(
            id=f"local-{serial}" if call_id is None else label(call_id),
            tool=label(tool),
            source=source,
            started_at=time.time(),
            began=self.clock(),
            serial=serial,
        )
        self._running[serial] = record
        if self.on_started is not None:
            self.on_started(record)
        return record

    def end(
        self,
        record: CallRecord,
        outcome: Outcome,
        chars: int,
        error: str | None,
        seconds: float | None = None,
    ) -> None:
        """The call of ``record`` is over, after ``seconds`` (default: since ``begin``, on the
        log's clock): it moves to the finished ones."""
        record.seconds = self.clock() - record.began if seconds is None else seconds
        record.outcome = outcome
        record.chars = chars
        record.error = error
        self._running.pop(record.serial, None)
        self._recent.append(record)
        self.counts[outcome] += 1
        if self.on_finished is not None:
            self.on_finished(record)

    def add(
        self, call_id: object, tool: str, source: str, outcome: Outcome, error: str | None
    ) -> CallRecord:
        """A call that ended as soon as it came (refused before it ran): begun and ended."""
        record = self.begin(call_id, tool, source)
        self.end(record, outcome, 0, error, 0.0)
        return record

    def in_flight(self) -> list[CallRecord]:
        """The calls running now, newest first."""
        return list(reversed(self._running.values()))

    def recent(self, limit: int | None = None) -> list[CallRecord]:
        """The last ``limit`` finished calls (all kept, without it), newest first."""
        items = list(reversed(self._recent))
        return items if limit is None else items[: max(0, limit)]

    def snapshot(self, limit: int | None = None) -> dict[str, Any]:
        """``{"inFlight": [...], "recent": [...]}``, newest first; ``limit`` caps each list."""
        now = self.clock()
        running = self.in_flight()
        if limit is not None:
            running = running[: max(0, limit)]
        return {
            "inFlight": [r.to_json(now) for r in running],
            "recent": [r.to_json(now) for r in self.recent(limit)],
            "counts": dict(self.counts),
        }
