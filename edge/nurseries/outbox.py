"""What the tunnel has to send, with results kept until the cloud surely has them.

Two queues: ``urgent`` frames (pongs, capability updates) belong to one
connection and are dropped with it; ``results`` survive reconnects. A result the
writer has sent stays *unconfirmed* until a pong edge asked for after sending it
comes back: the WebSocket is ordered, so a pong proves every frame sent before
its ping arrived. When a connection breaks, unconfirmed results go back to the
front of the queue and are sent again after the next handshake (counted in
``resent``); the cloud deduplicates by id.

A frame JSON cannot carry (a set, bytes, a NaN) never breaks the connection:
``encode_result`` makes an error result naming the problem instead, and
``put_urgent_frame`` logs and drops a broken progress or capability frame.

The outbox lives in memory. What must outlive the process is the journal's
job (``edge.nurseries.journal``): each result carries the journal's key, and
the outbox reports through ``on_sent`` and ``on_gone`` when a result was first
sent and when it left (confirmed, or dropped past the bound).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import trio

from ..protocol import encode, error_result, tool_response

log = logging.getLogger(__name__)

#: Most results kept while the cloud is away; past it the oldest are dropped (and logged).
MAX_RESULTS: Final = 10_000


@dataclass(slots=True)
class Entry:
    """One result: its frame, its key in the journal (0: none yet), whether it went out
    before, and whether it has left the outbox (confirmed, or dropped past the bound)."""

    text: str
    key: int = 0
    sent: bool = False
    gone: bool = False


class Outbox:
    """Frames waiting for the writer (one writer, many producers; no locks needed).

    Args:
        max_results: results kept (queued or unconfirmed); past it the oldest queued go.
        on_sent: called with a result's key the first time it is sent.
        on_gone: called with the keys of results that left (confirmed or dropped).
    """

    def __init__(
        self,
        max_results: int = MAX_RESULTS,
        *,
        on_sent: Callable[[int], None] | None = None,
        on_gone: Callable[[list[int]], None] | None = None,
    ) -> None:
        self._urgent: deque[str] = deque()
        self._results: deque[Entry] = deque()
        self._unconfirmed: deque[tuple[int, Entry]] = deque()
        self._in_hand: Entry | None = None
        self._sent_seq = 0
        self._max_results = max_results
        self._on_sent = on_sent
        self._on_gone = on_gone
        self._wakeup = trio.Event()
        self._changed = trio.Event()
        self.dropped = 0
        self.resent = 0
        #: Called, synchronously, whenever a frame is queued: the live connection's pump
        #: (``take`` the frames and write them); ``None`` while no connection is up.
        self.on_queued: Callable[[], None] | None = None
        #: Bytes taken as sent but still in this process, not yet in the kernel's socket
        #: buffer (the live link's backlog); the journal commits at once while there are.
        self.held: Callable[[], int] = lambda: 0

    def __len__(self) -> int:
        """Results not yet confirmed: queued, being written, or sent."""
        return len(self._results) + len(self._unconfirmed) + (self._in_hand is not None)

    @property
    def unconfirmed(self) -> int:
        """Results sent on this connection whose pong has not come back yet."""
        return len(self._unconfirmed)

    def put_urgent(self, text: str) -> None:
        self._urgent.append(text)
        self._wakeup.set()
        if self.on_queued is not None:
            self.on_queued()

    def put_urgent_frame(self, what: str, build: Callable[[], Mapping[str, Any]]) -> None:
        """Queue the frame ``build()`` makes; one JSON cannot carry is logged and dropped."""
        try:
            text = encode(build())
        except (TypeError, ValueError, RecursionError) as exc:
            log.error("dropped a %s that is not valid JSON: %s", what, exc)
            return
        self.put_urgent(text)

    def urgent_backlog(self) -> int:
        return len(self._urgent)

    def put_result(self, text: str, key: int = 0) -> None:
        self.put_entry(Entry(text, key))

    def put_entry(self, entry: Entry) -> None:
        """Queue a result whose ``Entry`` the caller keeps (the journal sets its key later)."""
        self._results.append(entry)
        self._trim()
        self._wakeup.set()
        self._notify()
        if self.on_queued is not None:
            self.on_queued()

    def restore(self, entries: list[Entry]) -> None:
        """Queue results kept from an earlier run ahead of everything else."""
        self._results.extendleft(reversed(entries))
        self._trim()
        if entries:
            self._wakeup.set()
            self._notify()
            if self.on_queued is not None:
                self.on_queued()

    def _trim(self) -> None:
        gone: list[int] = []
        while len(self) > self._max_results and self._results:
            entry = self._results.popleft()
            entry.gone = True
            gone.append(entry.key)
        if gone:
            self.dropped += len(gone)
            log.warning(
                "outbox full: dropped the %d oldest undelivered results (%d so far)",
                len(gone),
                self.dropped,
            )
            self._gone(gone)

    async def get(self) -> tuple[bool, str]:
        """Wait for the next frame to send: ``(is_result, text)``; urgent ones first."""
        while True:
            if self._urgent:
                return False, self._urgent.popleft()
            if self._results:
                self._in_hand = self._results.popleft()
                return True, self._in_hand.text
            if self._wakeup.is_set():
                self._wakeup = trio.Event()
            await self._wakeup.wait()

    def take(self) -> str | None:
        """The next frame to send, now counted as sent (urgent ones first); ``None`` when
        nothing waits. For a writer that cannot fail half way (the link queues what the
        socket does not take at once; a broken link ends the connection, and
        ``connection_lost`` requeues every result not confirmed)."""
        if self._urgent:
            return self._urgent.popleft()
        if self._results:
            entry = self._results.popleft()
            self._count_sent(entry)
            return entry.text
        return None

    def unsent(self, is_result: bool, text: str) -> None:
        """The writer could not send ``text``: results go back to the front."""
        if is_result and self._in_hand is not None:
            self._results.appendleft(self._in_hand)
            self._in_hand = None

    def sent(self, is_result: bool, text: str) -> None:
        entry = self._in_hand
        if not is_result or entry is None:
            return
        self._in_hand = None
        self._count_sent(entry)

    def _count_sent(self, entry: Entry) -> None:
        self._sent_seq += 1
        self._unconfirmed.append((self._sent_seq, entry))
        if entry.sent:
            self.resent += 1
        else:
            entry.sent = True
            if self._on_sent is not None and entry.key:
                self._on_sent(entry.key)
        self._notify()

    def mark(self) -> int:
        """A point in the sent sequence; ``confirm(mark)`` once the cloud has seen it."""
        return self._sent_seq

    def confirm(self, mark: int) -> int:
        """The cloud has every result sent up to ``mark``; returns how many that confirmed."""
        gone: list[int] = []
        while self._unconfirmed and self._unconfirmed[0][0] <= mark:
            entry = self._unconfirmed.popleft()[1]
            entry.gone = True
            gone.append(entry.key)
        if gone:
            self._gone(gone)
            self._notify()
        return len(gone)

    def _gone(self, keys: list[int]) -> None:
        if self._on_gone is not None:
            keyed = [key for key in keys if key]
            if keyed:
                self._on_gone(keyed)

    def pending(self) -> list[str]:
        """Every result not yet confirmed, oldest first."""
        in_hand = [] if self._in_hand is None else [self._in_hand.text]
        return [e.text for _, e in self._unconfirmed] + in_hand + [e.text for e in self._results]

    def connection_lost(self) -> None:
        """Requeue every unconfirmed result and drop the old connection's urgent frames."""
        if self._in_hand is not None:
            self._results.appendleft(self._in_hand)
            self._in_hand = None
        while self._unconfirmed:
            self._results.appendleft(self._unconfirmed.pop()[1])
        self._urgent.clear()
        self._notify()

    # -- waiting on it -----------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait(self, done: Callable[[], bool]) -> None:
        while not done():
            await self._changed.wait()

    async def wait_sent(self) -> None:
        """Return once every queued result has been written to the socket."""
        await self._wait(lambda: not self._results and self._in_hand is None)

    async def wait_unconfirmed(self) -> None:
        """Return once some result sent on this connection waits for its confirmation."""
        await self._wait(lambda: bool(self._unconfirmed))

    async def wait_confirmed(self) -> None:
        """Return once every result is confirmed (nothing queued, nothing unconfirmed)."""
        await self._wait(lambda: len(self) == 0)


# -- the frames it holds ----------------------------------------------------------------


def encode_result(request_id: str | int, result: Mapping[str, Any]) -> str:
    """The response frame for a call; an error result naming the problem if JSON cannot carry it."""
    try:
        return encode(tool_response(request_id, result))
    except (TypeError, ValueError, RecursionError) as exc:
        log.error("the result of call %r is not valid JSON: %s", request_id, exc)
        problem = f"edge cannot send this call's result: it is not valid JSON ({exc})"
        return encode(tool_response(request_id, error_result(problem)))
