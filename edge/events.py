"""Fan-out of the daemon's events to live subscribers (the control API's event stream).

``publish`` never blocks: each subscriber has a bounded buffer, and a subscriber
too slow to keep up loses events, counted in its ``dropped`` and announced to it
with a ``lagged`` event as soon as it has room again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import trio

#: Events buffered per subscriber.
SUBSCRIBER_BUFFER: Final = 256


@dataclass(eq=False)
class Subscription:
    send: trio.MemorySendChannel[dict[str, Any]]
    receive: trio.MemoryReceiveChannel[dict[str, Any]]
    dropped: int = 0
    _unreported: int = field(default=0, repr=False)


class EventHub:
    def __init__(self, buffer: int = SUBSCRIBER_BUFFER) -> None:
        self._buffer = buffer
        self._subscribers: set[Subscription] = set()

    def __len__(self) -> int:
        return len(self._subscribers)

    def publish(self, event: dict[str, Any]) -> None:
        for sub in list(self._subscribers):
            try:
                if sub._unreported:
                    sub.send.send_nowait({"type": "lagged", "dropped": sub._unreported})
                    sub._unreported = 0
                sub.send.send_nowait(event)
            except trio.WouldBlock:
                sub.dropped += 1
                sub._unreported += 1
            except trio.BrokenResourceError:
                self._subscribers.discard(sub)

    @contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        send, receive = trio.open_memory_channel[dict[str, Any]](self._buffer)
        sub = Subscription(send, receive)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            send.close()
            receive.close()
