"""What the tunnel has to send, with results kept until the cloud surely has them.

Two queues: ``urgent`` frames (pongs, capability updates) belong to one
connection and are dropped with it; ``results`` survive reconnects. A result the
writer has sent stays *unconfirmed* until a heartbeat's pong comes back: the
WebSocket is ordered, so a pong proves every frame sent before its ping arrived.
When a connection breaks, unconfirmed results go back to the front of the queue
and are sent again after the next handshake; the cloud deduplicates by id.

Between runs, what is still pending waits in a file (``load_kept``/``keep``):
one JSON frame a line, mode 0600 since results hold tool output.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from pathlib import Path
from typing import Final

import trio

from ..fs import write_private

log = logging.getLogger(__name__)

#: Most results kept while the cloud is away; past it the oldest are dropped (and logged).
MAX_RESULTS: Final = 10_000


class Outbox:
    """Frames waiting for the writer (one writer, many producers; no locks needed)."""

    def __init__(self, max_results: int = MAX_RESULTS) -> None:
        self._urgent: deque[str] = deque()
        self._results: deque[str] = deque()
        self._unconfirmed: deque[tuple[int, str]] = deque()
        self._sent_seq = 0
        self._max_results = max_results
        self._wakeup = trio.Event()
        self._empty = trio.Event()
        self._empty.set()
        self._sending = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._results) + len(self._unconfirmed)

    def put_urgent(self, text: str) -> None:
        self._urgent.append(text)
        self._wakeup.set()

    def urgent_backlog(self) -> int:
        return len(self._urgent)

    def put_result(self, text: str) -> None:
        self._results.append(text)
        self._not_empty()
        if len(self._results) > self._max_results:
            self._results.popleft()
            self.dropped += 1
            log.warning(
                "outbox full: dropped the oldest undelivered result (%d so far)", self.dropped
            )
        self._wakeup.set()

    async def get(self) -> tuple[bool, str]:
        """Wait for the next frame to send: ``(is_result, text)``; urgent ones first."""
        while True:
            if self._urgent:
                return False, self._urgent.popleft()
            if self._results:
                self._sending = True
                return True, self._results.popleft()
            if self._wakeup.is_set():
                self._wakeup = trio.Event()
            await self._wakeup.wait()

    async def wait_sent(self) -> None:
        """Return once every queued result has been written to the socket."""
        await self._empty.wait()

    def _not_empty(self) -> None:
        if self._empty.is_set():
            self._empty = trio.Event()

    def unsent(self, is_result: bool, text: str) -> None:
        """The writer could not send ``text``: results go back to the front."""
        if is_result:
            self._sending = False
            self._results.appendleft(text)

    def sent(self, is_result: bool, text: str) -> None:
        if is_result:
            self._sending = False
            self._sent_seq += 1
            self._unconfirmed.append((self._sent_seq, text))
            if not self._results:
                self._empty.set()

    def mark(self) -> int:
        """A point in the sent sequence; ``confirm(mark)`` once the cloud has seen it."""
        return self._sent_seq

    def confirm(self, mark: int) -> None:
        while self._unconfirmed and self._unconfirmed[0][0] <= mark:
            self._unconfirmed.popleft()

    def pending(self) -> list[str]:
        """Every result not yet confirmed, oldest first (what a restart must not lose)."""
        return [text for _, text in self._unconfirmed] + list(self._results)

    def restore(self, texts: list[str]) -> None:
        """Queue results kept from an earlier run ahead of everything else."""
        for text in reversed(texts):
            self._results.appendleft(text)
        if texts:
            self._not_empty()
            self._wakeup.set()

    def connection_lost(self) -> None:
        """Requeue every unconfirmed result and drop the old connection's urgent frames."""
        while self._unconfirmed:
            self._results.appendleft(self._unconfirmed.pop()[1])
            self._not_empty()
        self._urgent.clear()


def load_kept(path: Path | None) -> list[str]:
    """Results an earlier run could not deliver, oldest first (the file is consumed)."""
    if path is None or not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        path.unlink()
    except OSError as exc:
        log.warning("cannot read undelivered results from %s: %s", path, exc.strerror)
        return []
    kept = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            continue
        kept.append(line)
    return kept


def keep(path: Path | None, pending: list[str]) -> None:
    """Keep undelivered results for the next run (nothing to keep: nothing written)."""
    if path is None or not pending:
        return
    try:
        write_private(path, "\n".join(pending) + "\n")
        log.info("%d undelivered results kept in %s for the next run", len(pending), path)
    except OSError as exc:
        log.error("cannot keep %d undelivered results: %s", len(pending), exc.strerror)
