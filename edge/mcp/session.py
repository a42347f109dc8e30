"""One MCP server: a supervised session task, reached through a channel.

::

    McpServer.run                    (a task in the MCP nursery; lifetime = this server)
    └── session                      (one connection: open_session entered and left here)
        ├── stderr reader            (stdio: the child's stderr into edge's log, rate-limited)
        ├── pinger                   (a ping every PING_INTERVAL; no answer → reconnect)
        └── one task per request     (call_tool / list_tools, replies on a one-shot channel)

The SDK's context managers (transport, ``ClientSession``) are entered and
left by the session task only; callers put requests into a channel and wait
for the reply. A request that reaches a session whose connection has already
closed is carried over to the next session once (the transparent retry); a
call the server had already received is never sent twice.

Failures (cannot start, crash, no answer to ``initialize`` or to pings) are
retried with jittered exponential backoff. ``CRASH_LOOP_FAILURES`` failures
within ``CRASH_LOOP_WINDOW`` seconds, with no session lasting ``STABLE_AFTER``
seconds in between, park the server as ``error`` for ``PARK_SECONDS``; then it
is tried again. Status rules: ``edge.mcp.metrics``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TextIO, cast

import trio

from ..errors import first_leaf
from ..net.backoff import Backoff
from .config import McpServerConfig
from .metrics import ServerMetrics, ToolMetrics

log = logging.getLogger(__name__)

INIT_TIMEOUT: Final = 20.0
PING_INTERVAL: Final = 15.0
PING_TIMEOUT: Final = 10.0
TOOLS_TTL: Final = 300.0
MAX_TOOL_PAGES: Final = 50
MAX_TOOLS: Final = 2000
CRASH_LOOP_FAILURES: Final = 5
CRASH_LOOP_WINDOW: Final = 60.0
STABLE_AFTER: Final = 30.0
PARK_SECONDS: Final = 300.0
QUEUE_SIZE: Final = 256
STDERR_LINES_PER_SECOND: Final = 20
STDERR_LINE_CHARS: Final = 2000
STDERR_KEPT: Final = 20

Status = Literal["active", "degraded", "error", "inactive"]
Progress = Callable[[float, float | None, str | None], None]


class McpCallError(Exception):
    """A call that got no proper answer from the server (the message says why)."""


@dataclass(frozen=True, slots=True)
class Timing:
    """Overridable in tests: every delay the supervisor uses."""

    init_timeout: float = INIT_TIMEOUT
    ping_interval: float = PING_INTERVAL
    ping_timeout: float = PING_TIMEOUT
    tools_ttl: float = TOOLS_TTL
    crash_loop_failures: int = CRASH_LOOP_FAILURES
    crash_loop_window: float = CRASH_LOOP_WINDOW
    stable_after: float = STABLE_AFTER
    park_seconds: float = PARK_SECONDS
    backoff_first: float = 0.5
    backoff_cap: float = 30.0


@dataclass(slots=True, eq=False)
class _Request:
    kind: Literal["call", "list"]
    reply: trio.MemorySendChannel[Any] | None = None
    tool: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    progress: Progress | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    abandoned: bool = False
    carried: bool = False

    def answer(self, outcome: Any) -> None:
        if self.reply is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.WouldBlock):
                self.reply.send_nowait(outcome)


class _SessionEnded(Exception):
    """The connection closed or stopped answering; the supervisor reconnects."""


# -- opening a session (shared by the supervisor and `test`) -------------------------------


@contextlib.asynccontextmanager
async def open_session(
    config: McpServerConfig,
    *,
    errlog: TextIO | None = None,
    message_handler: Callable[[Any], Awaitable[None]] | None = None,
    init_timeout: float = INIT_TIMEOUT,
) -> AsyncIterator[tuple[Any, Any]]:
    """Connect and initialize; yields ``(ClientSession, InitializeResult)``.

    Enter and leave it in the same task. A stdio server's stderr goes to
    ``errlog`` (a file with a descriptor), else to /dev/null.
    """
    from mcp.client.session import ClientSession

    async with contextlib.AsyncExitStack() as stack:
        if config.transport == "stdio":
            from mcp.client.stdio import StdioServerParameters, stdio_client

            assert config.command is not None
            if errlog is None:
                errlog = stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115, ASYNC230
            params = StdioServerParameters(
                command=config.command, args=list(config.args), env=config.child_env(),
                cwd=config.cwd,
            )  # fmt: skip
            read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
        elif config.transport == "sse":
            from mcp.client.sse import sse_client

            assert config.url is not None
            read, write = await stack.enter_async_context(
                sse_client(config.url, headers=dict(config.headers), timeout=init_timeout)
            )
        else:
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            assert config.url is not None
            client = await stack.enter_async_context(
                create_mcp_http_client(headers=dict(config.headers))
            )
            read, write = await stack.enter_async_context(
                streamable_http_client(config.url, http_client=client)
            )
        session = await stack.enter_async_context(
            ClientSession(read, write, message_handler=cast(Any, message_handler))
        )
        with trio.fail_after(init_timeout):
            init = await session.initialize()
        yield session, init


async def fetch_tools(session: Any) -> list[dict[str, Any]]:
    """Every tool the server lists, following pagination (bounded), as JSON dicts."""
    from mcp_types import PaginatedRequestParams

    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in page.tools
        )
        cursor = page.next_cursor
        if not cursor or len(tools) >= MAX_TOOLS:
            break
    else:
        log.warning("stopped listing tools after %d pages", MAX_TOOL_PAGES)
    return tools[:MAX_TOOLS]


def describe_failure(exc: BaseException) -> str:
    """A one-line reason for a failed connection or call."""
    exc = first_leaf(exc)
    from mcp.shared.exceptions import MCPError

    if isinstance(exc, trio.TooSlowError):
        return "no answer in time"
    if isinstance(exc, MCPError):
        return exc.message
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _connection_closed(exc: BaseException) -> bool:
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    return isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED


def _already_closed(session: Any) -> bool:
    """Whether the SDK already knows the connection is gone (nothing more will be sent).

    Reads the dispatcher's closed flag; if a later SDK renames it, this says
    False and such requests simply fail instead of being carried over.
    """
    return bool(getattr(getattr(session, "_dispatcher", None), "_closed", False))


# -- the server handle ---------------------------------------------------------------------


class McpServer:
    """Handle on one configured server; ``run`` is its lifetime (in the MCP nursery)."""

    def __init__(
        self,
        config: McpServerConfig,
        *,
        on_tools: Callable[[McpServer], None] = lambda server: None,
        on_status: Callable[[McpServer, Status], None] = lambda server, status: None,
        timing: Timing | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.timing = timing or Timing()
        self._on_tools = on_tools
        self._on_status = on_status
        self._send, self._receive = trio.open_memory_channel[_Request](QUEUE_SIZE)
        self._carry: list[_Request] = []
        self._backoff = Backoff(first=self.timing.backoff_first, cap=self.timing.backoff_cap)
        self._failures: collections.deque[float] = collections.deque()
        self._session: Any = None
        self._wait_scope: trio.CancelScope | None = None
        self._ended_reason: str | None = None
        self._failing = False
        self._idle = False
        self.parked_until: float | None = None
        self.tools: list[dict[str, Any]] = []
        self.tools_fetched_at: float | None = None
        self.server_info: dict[str, Any] | None = None
        self.metrics = ServerMetrics()
        self.tool_metrics: dict[str, ToolMetrics] = {}
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_KEPT)
        self.stderr_suppressed = 0
        self._last_status: Status = "inactive"
        self._in_flight = 0
        self._sessions = 0
        self._last_reason: str | None = None

    # -- what callers use ---------------------------------------------------------------

    @property
    def status(self) -> Status:
        if self.config.disabled:
            return "inactive"
        if self.parked_until is not None:
            return "error"
        if self._session is None:
            return "error" if self._failing else "inactive"
        return "degraded" if self.metrics.degraded() else "active"

    async def call_tool(
        self, tool: str, args: dict[str, Any], *, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Call ``tool``; returns the ``CallToolResult`` as JSON (``isError`` included).

        Cancel the calling task to cancel the call: the server is told
        (``notifications/cancelled``) when the request had reached it.

        Raises:
            McpCallError: the server is disabled, parked, too busy, or did not
                answer properly (the message says which).
        """
        self._refuse_if_unavailable()
        reply_send, reply_receive = trio.open_memory_channel[Any](1)
        request = _Request("call", reply_send, tool, args, progress)
        try:
            self._send.send_nowait(request)
        except trio.WouldBlock:
            raise McpCallError(f"MCP server {self.name!r} has {QUEUE_SIZE} calls waiting") from None
        metrics = self.tool_metrics.setdefault(tool, ToolMetrics())
        started = time.perf_counter()
        try:
            outcome = await reply_receive.receive()
        finally:
            # Cancelled while waiting: the session task cancels the request (and the
            # SDK tells the server); a request still queued is skipped.
            request.abandoned = True
            request.scope.cancel()
        ok = isinstance(outcome, dict) and not outcome.get("isError", False)
        metrics.record(time.perf_counter() - started, ok)
        if isinstance(outcome, BaseException):
            raise outcome
        return dict(outcome)

    def refresh_tools(self) -> None:
        """Ask the session to list the tools again (after ``list_changed``, say)."""
        with contextlib.suppress(trio.WouldBlock):
            self._send.send_nowait(_Request("list"))

    def info(self) -> dict[str, Any]:
        m = self.metrics
        return {
            **self.config.describe(),
            "status": self.status,
            "server": self.server_info,
            "tools": len(self.tools),
            "toolsFetchedAgo": (
                None
                if self.tools_fetched_at is None
                else round(trio.current_time() - self.tools_fetched_at, 1)
            ),
            "requests": m.requests,
            "errors": m.errors,
            "restarts": m.restarts,
            "lastError": m.last_error,
            "lastErrorAt": m.last_error_at,
            "uptime": m.uptime(),
            "parkedFor": (
                None
                if self.parked_until is None
                else round(max(0.0, self.parked_until - trio.current_time()), 1)
            ),
            "stderrSuppressed": self.stderr_suppressed,
            "toolMetrics": {name: t.to_json() for name, t in sorted(self.tool_metrics.items())},
        }

    def _refuse_if_unavailable(self) -> None:
        if self.config.disabled:
            raise McpCallError(f"MCP server {self.name!r} is disabled")
        if self.parked_until is not None:
            raise McpCallError(
                f"MCP server {self.name!r} is parked after repeated failures "
                f"({self.metrics.last_error}); edge tries it again in "
                f"{max(0, round(self.parked_until - trio.current_time()))} s"
            )

    # -- the supervisor -----------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[McpServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep a session up (or parked) until cancelled."""
        task_status.started(self)
        if self.config.disabled:
            await trio.sleep_forever()
        try:
            while True:
                if self._idle:
                    # An HTTP session closed for idleness: reconnect when a request comes.
                    first = await self._receive.receive()
                    self._carry.append(first)
                    self._idle = False
                opened = trio.current_time()
                try:
                    await self._session_lifetime()
                except Exception as exc:
                    reason = self._ended_reason or describe_failure(exc)
                else:
                    if self._idle:
                        self._status_changed()
                        continue
                    reason = self._ended_reason or "the session ended"
                self._session_failed(reason, lasted=trio.current_time() - opened)
                if self.parked_until is not None:
                    await self._park()
                else:
                    await trio.sleep(self._backoff.next_delay())  # requests wait in the channel
        finally:
            self._session = None
            self._failing = False
            self._fail_waiting("edge is shutting down its MCP sessions")
            self._status_changed()

    def _session_failed(self, reason: str, *, lasted: float) -> None:
        now = trio.current_time()
        if lasted >= self.timing.stable_after:
            self._failures.clear()
        self._failures.append(now)
        while self._failures and self._failures[0] < now - self.timing.crash_loop_window:
            self._failures.popleft()
        self.metrics.problem(reason)
        self._failing = True
        if len(self._failures) >= self.timing.crash_loop_failures:
            self.parked_until = now + self.timing.park_seconds
            self.metrics.problem(
                f"failed {len(self._failures)} times within "
                f"{self.timing.crash_loop_window:g} s: {reason}"
            )
            log.error(
                "MCP server %s: %s; parked for %g s",
                self.name,
                self.metrics.last_error,
                self.timing.park_seconds,
            )
        elif reason != self._last_reason:
            log.warning("MCP server %s: %s; reconnecting", self.name, reason)
        else:  # the same problem again: once in the log is enough
            log.debug("MCP server %s: %s; reconnecting", self.name, reason)
        self._last_reason = reason
        self._status_changed()

    async def _park(self) -> None:
        """Fail every waiting request at once, and keep doing so until the park is over."""
        assert self.parked_until is not None
        with trio.move_on_at(self.parked_until):
            while True:
                request = await self._receive.receive()
                request.answer(McpCallError(self._parked_message()))
        self._fail_waiting(self._parked_message())
        self.parked_until = None
        self._failures.clear()
        self._backoff.reset()
        log.info("MCP server %s: trying again after the park", self.name)
        self._status_changed()

    def _parked_message(self) -> str:
        return (
            f"MCP server {self.name!r} is parked after repeated failures "
            f"({self.metrics.last_error})"
        )

    def _fail_waiting(self, message: str) -> None:
        for request in self._carry:
            request.answer(McpCallError(message))
        self._carry.clear()
        while True:
            try:
                request = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.ClosedResourceError):
                return
            request.answer(McpCallError(message))

    def _status_changed(self) -> None:
        status = self.status
        if status != self._last_status:
            self._last_status = status
            self._on_status(self, status)

    # -- one session --------------------------------------------------------------------

    async def _session_lifetime(self) -> None:
        self._ended_reason = None
        async with trio.open_nursery() as outer:
            errlog = None
            stderr_done = trio.Event()
            if self.config.transport == "stdio":
                read_fd, write_fd = os.pipe()
                os.set_blocking(read_fd, False)
                outer.start_soon(self._read_stderr, read_fd, stderr_done)
                errlog = os.fdopen(write_fd, "w")
            else:
                stderr_done.set()
            try:
                async with open_session(
                    self.config,
                    errlog=errlog,
                    message_handler=self._on_message,
                    init_timeout=self.timing.init_timeout,
                ) as (session, init):
                    if errlog is not None:
                        errlog.close()  # the child holds its own copy
                    await self._serve(session, init)
            finally:
                if errlog is not None and not errlog.closed:
                    errlog.close()
                self._session = None
                self.metrics.connected_since = None
                # The child is gone: its stderr ends; read what is left, briefly.
                with trio.move_on_after(1.0):
                    await stderr_done.wait()
                outer.cancel_scope.cancel()

    async def _serve(self, session: Any, init: Any) -> None:
        self.server_info = {
            "name": init.server_info.name,
            "version": init.server_info.version,
            "protocolVersion": init.protocol_version,
        }
        await self._list_tools(session)
        self._sessions += 1
        self.metrics.restarts = self._sessions - 1
        self._last_reason = None
        self.metrics.connected_since = time.monotonic()
        self._session = session
        self._failing = False
        self._backoff.reset()
        log.info(
            "MCP server %s: connected (%s %s), %d tools",
            self.name,
            init.server_info.name,
            init.server_info.version,
            len(self.tools),
        )
        self._status_changed()
        idle_after = self.config.idle_timeout if self.config.transport != "stdio" else None
        last_activity = trio.current_time()
        async with trio.open_nursery() as handlers:
            handlers.start_soon(self._pinger, session)
            carried, self._carry = self._carry, []
            for request in carried:
                handlers.start_soon(self._handle, session, request)
            while not self._ended():
                now = trio.current_time()
                assert self.tools_fetched_at is not None
                deadline = self.tools_fetched_at + self.timing.tools_ttl
                if idle_after is not None:
                    deadline = min(deadline, last_activity + idle_after)
                with trio.CancelScope(deadline=deadline) as self._wait_scope:
                    request = await self._receive.receive()
                    last_activity = trio.current_time()
                    if _already_closed(session) and not request.carried:
                        request.carried = True
                        self._carry.append(request)
                        self._end("the connection closed")
                    else:
                        handlers.start_soon(self._handle, session, request)
                    continue
                if self._ended():
                    break
                now = trio.current_time()
                if idle_after is not None and now >= last_activity + idle_after:
                    if self._in_flight == 0:
                        log.info("MCP server %s: idle for %g s, closing", self.name, idle_after)
                        self._idle = True
                        break
                    last_activity = now
                if now >= self.tools_fetched_at + self.timing.tools_ttl:
                    handlers.start_soon(self._handle, session, _Request("list"))
                    self.tools_fetched_at = now  # the next refresh is due a TTL from now
            handlers.cancel_scope.cancel()
        if self._ended_reason is not None:
            raise _SessionEnded(self._ended_reason)

    def _ended(self) -> bool:
        return self._ended_reason is not None

    def _end(self, reason: str) -> None:
        """The session is unusable: stop serving it (in-flight calls get an error)."""
        if self._ended_reason is None:
            self._ended_reason = reason
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    async def _pinger(self, session: Any) -> None:
        while True:
            await trio.sleep(self.timing.ping_interval)
            try:
                with trio.fail_after(self.timing.ping_timeout):
                    await session.send_ping()
            except Exception as exc:
                self._end(f"no answer to ping: {describe_failure(exc)}")
                return

    async def _handle(self, session: Any, request: _Request) -> None:
        outcome: Any = McpCallError(
            f"MCP server {self.name!r}: the connection ended before the call finished"
        )
        self._in_flight += 1
        try:
            if request.abandoned:
                return
            with request.scope:
                if request.kind == "list":
                    await self._list_tools(session)
                    outcome = None
                else:
                    outcome = await self._call(session, request)
        finally:
            self._in_flight -= 1
            request.answer(outcome)

    async def _call(self, session: Any, request: _Request) -> Any:
        async def progress(value: float, total: float | None, message: str | None) -> None:
            if request.progress is not None:
                request.progress(value, total, message)

        try:
            result = await session.call_tool(
                request.tool,
                request.args,
                progress_callback=progress if request.progress else None,
            )
        except Exception as exc:
            reason = describe_failure(exc)
            self.metrics.request(False, reason)
            self._status_changed()
            if _connection_closed(first_leaf(exc)):
                self._end("the connection closed during a call")
                return McpCallError(
                    f"MCP server {self.name!r} closed the connection during the call "
                    f"(it may have crashed{self._stderr_hint()})"
                )
            return McpCallError(f"MCP server {self.name!r}: {reason}")
        self.metrics.request(True)
        self._status_changed()
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)

    def _stderr_hint(self) -> str:
        return f"; its last stderr line: {self.stderr_tail[-1]!r}" if self.stderr_tail else ""

    async def _list_tools(self, session: Any) -> None:
        tools = await fetch_tools(session)
        self.tools_fetched_at = trio.current_time()
        if tools != self.tools:
            self.tools = tools
            self._on_tools(self)

    async def _on_message(self, message: Any) -> None:
        from mcp_types import ToolListChangedNotification

        if isinstance(message, ToolListChangedNotification):
            log.info("MCP server %s: its tools changed", self.name)
            self.refresh_tools()
        elif isinstance(message, Exception):
            log.debug("MCP server %s: transport: %s", self.name, describe_failure(message))

    async def _read_stderr(self, fd: int, done: trio.Event) -> None:
        """Log the child's stderr by line: STDERR_LINES_PER_SECOND at most, the rest counted."""
        stream = trio.lowlevel.FdStream(fd)
        buffer = b""
        window_start, in_window, suppressed = trio.current_time(), 0, 0
        try:
            async with stream:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    buffer += data
                    *lines, buffer = buffer.split(b"\n")
                    if len(buffer) > STDERR_LINE_CHARS:
                        lines.append(buffer)
                        buffer = b""
                    for raw in lines:
                        line = raw[:STDERR_LINE_CHARS].decode("utf-8", "replace").rstrip()
                        if not line:
                            continue
                        self.stderr_tail.append(line)
                        now = trio.current_time()
                        if now - window_start >= 1.0:
                            if suppressed:
                                log.warning(
                                    "MCP server %s: %d stderr lines not logged (too many)",
                                    self.name,
                                    suppressed,
                                )
                            window_start, in_window, suppressed = now, 0, 0
                        if in_window < STDERR_LINES_PER_SECOND:
                            in_window += 1
                            log.info("MCP server %s stderr: %s", self.name, line)
                        else:
                            suppressed += 1
                            self.stderr_suppressed += 1
        finally:
            done.set()


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


async def probe_server(config: McpServerConfig, *, within: float = 30.0) -> dict[str, Any]:
    """Connect on a connection of its own, list the tools, time both; never raises."""
    started = time.perf_counter()
    try:
        with trio.fail_after(within):
            async with open_session(config, init_timeout=within) as (session, init):
                connected = _ms_since(started)
                listing = time.perf_counter()
                tools = await fetch_tools(session)
                listed = _ms_since(listing)
    except Exception as exc:
        return {
            "name": config.name,
            "ok": False,
            "error": describe_failure(exc),
            "ms": _ms_since(started),
        }
    return {
        "name": config.name,
        "ok": True,
        "server": {"name": init.server_info.name, "version": init.server_info.version},
        "protocolVersion": init.protocol_version,
        "connectMs": connected,
        "listToolsMs": listed,
        "tools": [t["name"] for t in tools],
        "ms": _ms_since(started),
    }
