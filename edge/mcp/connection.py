"""One connected session of an MCP server: requests in, one task each, until it ends or idles.

::

    Connection.serve
    ├── pinger                   (a ping every ``ping_interval``; no answer → the session ends)
    └── one task per request     (call_tool / list_tools, replies on the request's channel)

A request taken from the queue after the SDK has seen the connection close is
carried over to the next session (once) instead of being sent. The tool list
is fetched again every ``tools_ttl`` seconds. An HTTP session with no request
for ``idle_after`` seconds, and none in flight, closes (``idle``); the next
request reopens it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from ..errors import McpCallError, first_leaf
from .metrics import ServerMetrics
from .requests import Request, RequestQueue
from .sdk import McpSession, connection_already_closed
from .session import ToolList, describe_failure, log
from .timing import Timing

__all__ = ["Connection", "SessionEnded"]


class SessionEnded(Exception):
    """The connection closed or stopped answering; the supervisor reconnects."""


class Connection:
    """Serves one initialized session of server ``name`` from ``requests``.

    Args:
        session: the initialized SDK session.
        requests: the server's queue (shared by its sessions).
        tools: the server's tool list (fetched again by list requests and the TTL).
        name: the server's name, for messages and the log.
        timing: the server's delays.
        idle_after: seconds without requests after which the session closes, or None.
        metrics: the server's figures (every call counts).
        on_answer: called after each call's outcome is counted (status may change).
        stderr_hint: text about the server's last stderr line, for a crash message.
    """

    def __init__(
        self,
        session: McpSession,
        requests: RequestQueue,
        tools: ToolList,
        *,
        name: str,
        timing: Timing,
        idle_after: float | None,
        metrics: ServerMetrics,
        on_answer: Callable[[], None],
        stderr_hint: Callable[[], str],
    ) -> None:
        self._session = session
        self._requests = requests
        self._tools = tools
        self._name = name
        self._timing = timing
        self._idle_after = idle_after
        self._metrics = metrics
        self._on_answer = on_answer
        self._stderr_hint = stderr_hint
        self._wait_scope: trio.CancelScope | None = None
        self._in_flight = 0
        #: Why the session became unusable; ``None`` while it serves.
        self.ended_reason: str | None = None
        #: Whether it closed for idleness (not a failure).
        self.idle = False

    async def serve(self) -> None:
        """Serve until the session ends (raises) or closes for idleness (returns).

        Raises:
            SessionEnded: the connection closed or stopped answering pings.
        """
        async with trio.open_nursery() as handlers:
            handlers.start_soon(self._pinger)
            for request in self._requests.take_carried():
                handlers.start_soon(self._handle, request)
            await self._take_requests(handlers)
            handlers.cancel_scope.cancel()
        if self.ended_reason is not None:
            raise SessionEnded(self.ended_reason)

    def end(self, reason: str) -> None:
        """The session is unusable: stop serving it (in-flight calls get an error)."""
        if self.ended_reason is None:
            self.ended_reason = reason
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    async def _take_requests(self, handlers: trio.Nursery) -> None:
        """Start a handler per request until the session ends or goes idle; refresh the tools."""
        idle_after, ttl = self._idle_after, self._timing.tools_ttl
        last_activity = trio.current_time()
        while not self._ended():
            assert self._tools.fetched_at is not None
            deadline = self._tools.fetched_at + ttl
            if idle_after is not None:
                deadline = min(deadline, last_activity + idle_after)
            with trio.CancelScope(deadline=deadline) as self._wait_scope:
                request = await self._requests.get()
                last_activity = trio.current_time()
                if connection_already_closed(self._session) and not request.carried:
                    request.carried = True
                    self._requests.carry(request)
                    self.end("the connection closed")
                else:
                    handlers.start_soon(self._handle, request)
                continue
            if self._ended():
                return
            now = trio.current_time()
            if idle_after is not None and now >= last_activity + idle_after:
                if self._in_flight == 0:
                    log.info("MCP server %s: idle for %g s, closing", self._name, idle_after)
                    self.idle = True
                    return
                last_activity = now
            if now >= self._tools.fetched_at + ttl:
                handlers.start_soon(self._handle, Request("list"))
                self._tools.fetched_at = now  # the next refresh is due a TTL from now

    def _ended(self) -> bool:
        return self.ended_reason is not None

    async def _pinger(self) -> None:
        while True:
            await trio.sleep(self._timing.ping_interval)
            try:
                with trio.fail_after(self._timing.ping_timeout):
                    await self._session.send_ping()
            except Exception as exc:
                self.end(f"no answer to ping: {describe_failure(exc)}")
                return

    async def _handle(self, request: Request) -> None:
        outcome: Any = McpCallError(
            f"MCP server {self._name!r}: the connection ended before the call finished"
        )
        self._in_flight += 1
        try:
            if request.abandoned:
                return
            with request.scope:
                if request.kind == "list":
                    await self._tools.fetch(self._session)
                    outcome = None
                else:
                    outcome = await self._call(request)
        finally:
            self._in_flight -= 1
            request.answer(outcome)

    async def _call(self, request: Request) -> dict[str, Any] | Exception:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if request.progress is not None:
                request.progress(progress, total, message)

        try:
            result = await self._session.call_tool(
                request.tool,
                request.args,
                progress_callback=on_progress if request.progress else None,
            )
        except Exception as exc:
            reason = describe_failure(exc)
            self._metrics.request(False, reason)
            self._on_answer()
            if _connection_closed(first_leaf(exc)):
                self.end("the connection closed during a call")
                return McpCallError(
                    f"MCP server {self._name!r} closed the connection during the call "
                    f"(it may have crashed{self._stderr_hint()})"
                )
            return McpCallError(f"MCP server {self._name!r}: {reason}")
        self._metrics.request(True)
        self._on_answer()
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)


def _connection_closed(exc: BaseException) -> bool:
    """Whether ``exc`` is the SDK's "connection closed" error."""
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    return isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED
