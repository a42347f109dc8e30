"""Requests to an MCP server: what callers put in, and the queue a session takes them from.

A request waits in the queue until a session takes it. A session that finds
its connection already closed carries the request over to the next session
(once); when the server parks or stops, whatever waits is answered with an
``McpCallError`` at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import trio

from ..errors import McpCallError

__all__ = ["QUEUE_SIZE", "Progress", "Request", "RequestQueue"]

#: Requests waiting for a server at most; one more is refused.
QUEUE_SIZE: Final = 256

Progress = Callable[[float, float | None, str | None], None]


@dataclass(slots=True, eq=False)
class Request:
    """One call (or tool listing); the outcome goes to ``reply``, a one-shot channel."""

    kind: Literal["call", "list"]
    reply: trio.MemorySendChannel[Any] | None = None
    tool: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    progress: Progress | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    abandoned: bool = False
    carried: bool = False

    def answer(self, outcome: Any) -> None:
        """Send the outcome (a JSON result, ``None`` or an exception) unless nobody waits."""
        if self.reply is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.WouldBlock):
                self.reply.send_nowait(outcome)


class RequestQueue:
    """Requests waiting for a session, and those carried over to the next one."""

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self._send, self._receive = trio.open_memory_channel[Request](size)
        self._carried: list[Request] = []

    def put_nowait(self, request: Request) -> None:
        """Queue ``request``.

        Raises:
            trio.WouldBlock: the queue is full.
        """
        self._send.send_nowait(request)

    async def get(self) -> Request:
        """The next request (waits for one)."""
        return await self._receive.receive()

    def carry(self, request: Request) -> None:
        """Keep ``request`` for the next session."""
        self._carried.append(request)

    def take_carried(self) -> list[Request]:
        """The requests carried over, in order; the list starts afresh."""
        carried, self._carried = self._carried, []
        return carried

    def fail_waiting(self, message: str) -> None:
        """Answer every carried and queued request with ``McpCallError(message)``."""
        for request in self.take_carried():
            request.answer(McpCallError(message))
        while True:
            try:
                request = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.ClosedResourceError):
                return
            request.answer(McpCallError(message))
