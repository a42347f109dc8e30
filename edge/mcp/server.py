"""One MCP server: a supervised session task, reached through a channel.

::

    McpServer.run                    (a task in the MCP nursery; lifetime = this server)
    └── Supervisor.run               (edge.supervise: restarts, backoff, parking)
        └── session                  (one connection: open_session entered and left here)
            ├── stderr drain         (stdio: the child's stderr into edge's log, rate-limited)
            ├── pinger               (a ping every PING_INTERVAL; no answer → reconnect)
            └── one task per request (call_tool / list_tools, replies on a one-shot channel)

The SDK's context managers (transport, ``ClientSession``) are entered and
left by the session task only; callers put requests into a channel and wait
for the reply. A request that reaches a session whose connection has already
closed is carried over to the next session once (the transparent retry); a
call the server had already received is never sent twice.

Failures (cannot start, crash, no answer to ``initialize`` or to pings) are
retried with jittered exponential backoff. ``Timing.crash_loop_failures`` failures
within ``crash_loop_window`` seconds, with no session lasting ``stable_after``
seconds in between, park the server as ``error`` for ``park_seconds``
(requests fail at once meanwhile); then it is tried again. An HTTP session
idle for ``idleTimeout`` closes; the next request reopens it. Status rules:
``edge.mcp.metrics``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO, cast

import trio

from ..drain import StderrDrain
from ..errors import McpCallError, first_leaf
from ..supervise import State, Supervisor
from .config import McpServerConfig
from .connection import Connection, SessionEnded
from .metrics import ServerMetrics, ToolMetrics
from .requests import QUEUE_SIZE, Progress, Request, RequestQueue
from .sdk import McpSession
from .session import ToolList, describe_failure, log, open_session
from .timing import Timing

if TYPE_CHECKING:
    import collections

    from mcp_types import InitializeResult

__all__ = ["McpServer", "Progress", "Status"]

#: Seconds the stderr of a child that is gone is still read.
STDERR_LINGER: Final = 1.0


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A server's status change, for the events that say what changed."""

    old: Status
    new: Status
    reason: str
    #: Wall-clock time (``time.time()``).
    at: float

    def to_json(self) -> dict[str, Any]:
        """``{"oldStatus", "status", "reason", "at"}`` (``at``: ISO 8601 with the offset)."""
        import datetime

        local = datetime.datetime.fromtimestamp(self.at).astimezone()
        when = local.isoformat(timespec="milliseconds")
        return {"oldStatus": self.old, "status": self.new, "reason": self.reason, "at": when}


#: A call cancelled after this share of its time limit was cut off by it (timed out).
TIMED_OUT_SHARE: Final = 0.98

Status = Literal["active", "degraded", "error", "inactive"]


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
        self._requests = RequestQueue(QUEUE_SIZE)
        self._supervisor = Supervisor(
            f"MCP server {self.name}",
            self.timing.restart_policy(),
            logger=log,
            retrying="reconnecting",
            describe=self._describe,
            on_change=self._supervision_changed,
            while_parked=self._refuse_while_parked,
        )
        self._session: McpSession | None = None
        self._connection: Connection | None = None
        self.parked_until: float | None = None
        self._tools = ToolList(lambda: self._on_tools(self))
        self.server_info: dict[str, Any] | None = None
        self.metrics = ServerMetrics(rule=config.health or self.timing.health)
        self.tool_metrics: dict[str, ToolMetrics] = {}
        self._stderr = StderrDrain(f"MCP server {self.name}", log)
        self._last_status: Status = "inactive"
        #: The last status change: from, to, why, when (``StatusChange``), else ``None``.
        self.last_change: StatusChange | None = None
        self._sessions = 0
        #: Why the server is stopping or has stopped (``stop_reason``), else ``None``.
        self._stopped: str | None = None

    # -- what callers use ---------------------------------------------------------------

    @property
    def status(self) -> Status:
        if self.config.disabled:
            return "inactive"
        if self.parked_until is not None:
            return "error"
        if self._session is None:
            return "error" if self._supervisor.state.value.reason is not None else "inactive"
        return cast(Status, self.metrics.health())

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The server's tools as last listed (JSON dicts), kept while it reconnects."""
        return self._tools.tools

    @property
    def tools_fetched_at(self) -> float | None:
        """When the tools were last listed (trio clock)."""
        return self._tools.fetched_at

    @property
    def stderr_tail(self) -> collections.deque[str]:
        """The last lines of a stdio server's stderr."""
        return self._stderr.tail

    @property
    def stderr_suppressed(self) -> int:
        """Lines of a stdio server's stderr not logged (too many at once)."""
        return self._stderr.suppressed

    async def call_tool(
        self, tool: str, args: dict[str, Any], *, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Call ``tool``; returns the ``CallToolResult`` as JSON (``isError`` included).

        Cancel the calling task to cancel the call: the server is told
        (``notifications/cancelled``) when the request had reached it.

        Raises:
            McpCallError: the server is disabled, parked, stopped, too busy, or did
                not answer properly (the message says which).
        """
        self._refuse_if_unavailable()
        reply_send, reply_receive = trio.open_memory_channel[Any](1)
        request = Request("call", reply_send, tool, args, progress)
        try:
            self._requests.put_nowait(request)
        except trio.WouldBlock:
            raise McpCallError(f"MCP server {self.name!r} has {QUEUE_SIZE} calls waiting") from None
        metrics = self.tool_metrics.setdefault(tool, ToolMetrics())
        started = time.perf_counter()
        answered = False
        try:
            outcome = await reply_receive.receive()
            answered = True
        finally:
            # Cancelled while waiting: the session task cancels the request (and the
            # SDK tells the server); a request still queued is skipped.
            request.abandoned = True
            request.scope.cancel()
            if not answered:
                self._cut_off(metrics, time.perf_counter() - started)
        ok = isinstance(outcome, dict) and not outcome.get("isError", False)
        metrics.record(time.perf_counter() - started, ok)
        if isinstance(outcome, BaseException):
            if self._stopped is not None:  # cut off by the stop: say why
                raise McpCallError(self._stopped)
            raise outcome
        return dict(outcome)

    def _cut_off(self, metrics: ToolMetrics, seconds: float) -> None:
        """A call cancelled before its answer came. Cut off at its time limit (the
        server's ``timeout``, which the executor enforces), it is a failed request: the
        server did not answer in time. Cancelled sooner (the cloud's cancel, a stop), it
        says nothing about the server and is not counted."""
        if seconds < self.config.timeout * TIMED_OUT_SHARE:
            return
        metrics.record(seconds, False)
        self.metrics.request(False, f"no answer within {self.config.timeout:g} s")
        self._status_changed()

    async def list_tools_now(self) -> list[str]:
        """List the tools again now, past the cache (``edge mcp refresh``); their names.

        Raises:
            McpCallError: the server is unavailable, or the listing failed.
        """
        self._refuse_if_unavailable()
        reply_send, reply_receive = trio.open_memory_channel[Any](1)
        request = Request("list", reply_send)
        try:
            self._requests.put_nowait(request)
        except trio.WouldBlock:
            raise McpCallError(f"MCP server {self.name!r} has {QUEUE_SIZE} calls waiting") from None
        try:
            outcome = await reply_receive.receive()
        finally:
            request.abandoned = True
            request.scope.cancel()
        if isinstance(outcome, BaseException):
            raise outcome
        return [str(tool.get("name")) for tool in self.tools]

    def _session_timing(self) -> Timing:
        """The timing of a session: the server's own ``toolsTtl``, if its entry has one."""
        if self.config.tools_ttl is None:
            return self.timing
        return replace(self.timing, tools_ttl=self.config.tools_ttl)

    def refresh_tools(self) -> None:
        """Ask the session to list the tools again (after ``list_changed``, say)."""
        with contextlib.suppress(trio.WouldBlock):
            self._requests.put_nowait(Request("list"))

    def info(self) -> dict[str, Any]:
        """Config (no secrets), status, metrics and per-tool figures, as JSON."""
        m = self.metrics
        now = trio.current_time()
        return {
            **self.config.describe(),
            "status": self.status,
            "server": self.server_info,
            "tools": len(self.tools),
            "toolsFetchedAgo": (
                None if self.tools_fetched_at is None else round(now - self.tools_fetched_at, 1)
            ),
            "requests": m.requests,
            "errors": m.errors,
            "restarts": m.restarts,
            "lastError": m.last_error,
            "lastErrorAt": m.last_error_at,
            "uptime": m.uptime(),
            "parkedFor": (
                None if self.parked_until is None else round(max(0.0, self.parked_until - now), 1)
            ),
            "stderrSuppressed": self.stderr_suppressed,
            "toolMetrics": {name: t.to_json() for name, t in sorted(self.tool_metrics.items())},
        }

    def stop_reason(self, reason: str) -> None:
        """Say why the server is about to be stopped (before its task is cancelled): calls
        in flight, waiting or coming later fail with ``reason``, never wait for nothing."""
        if self._stopped is None:
            self._stopped = reason

    def _refuse_if_unavailable(self) -> None:
        if self._stopped is not None:
            raise McpCallError(self._stopped)
        if self.config.disabled:
            raise McpCallError(f"MCP server {self.name!r} is disabled")
        if self.parked_until is not None:
            raise McpCallError(
                f"{self._parked_message()}; edge tries it again in "
                f"{max(0, round(self.parked_until - trio.current_time()))} s"
            )

    # -- supervision --------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[McpServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep a session up (or parked) until cancelled."""
        task_status.started(self)
        try:
            if self.config.disabled:
                await trio.sleep_forever()
            await self._supervisor.run(self._lifetime)
        finally:
            self._session = None
            self.stop_reason("edge is shutting down its MCP sessions")
            assert self._stopped is not None
            self._requests.fail_waiting(self._stopped)
            self._status_changed()

    async def _lifetime(self, *, task_status: trio.TaskStatus[None]) -> None:
        """One session; after an idle HTTP session closed, also the wait for the next request."""
        self._connection = None
        await self._session_lifetime(task_status)
        if not self._went_idle():
            raise SessionEnded("the session ended")
        self._status_changed()
        self._requests.carry(await self._requests.get())

    def _went_idle(self) -> bool:
        return self._connection is not None and self._connection.idle

    def _describe(self, exc: BaseException) -> str:
        """Why the last session failed: the reason it ended for, else what it raised."""
        if self._connection is not None and self._connection.ended_reason is not None:
            return self._connection.ended_reason
        leaf = first_leaf(exc)
        return str(leaf) if isinstance(leaf, SessionEnded) else describe_failure(exc)

    def _supervision_changed(self, state: State) -> None:
        if state.status == "parked":
            self.parked_until = state.until
        if state.status in ("parked", "backing-off"):
            assert state.reason is not None
            self.metrics.problem(state.reason)
        elif state.status == "starting" and self.parked_until is not None:
            self._requests.fail_waiting(self._parked_message())
            self.parked_until = None
        self._status_changed()

    async def _refuse_while_parked(self, state: State) -> None:
        """Fail every request at once while parked (cancelled when the park ends)."""
        while True:
            request = await self._requests.get()
            request.answer(McpCallError(self._parked_message()))

    def _parked_message(self) -> str:
        return (
            f"MCP server {self.name!r} is parked after repeated failures "
            f"({self.metrics.last_error})"
        )

    def _status_changed(self) -> None:
        status = self.status
        if status != self._last_status:
            self.last_change = StatusChange(
                self._last_status, status, self._why(status), time.time()
            )
            self._last_status = status
            self._on_status(self, status)

    def _why(self, status: Status) -> str:
        """Why the server has ``status`` now, in a few words (for status events)."""
        if self.config.disabled:
            return "disabled in mcp.json"
        if self.parked_until is not None:
            return f"parked after repeated failures ({self.metrics.last_error})"
        if self._session is None:
            reason = self._supervisor.state.value.reason
            if reason is not None:
                return f"cannot connect: {reason}"
            return self._stopped or "not connected (idle or not started yet)"
        if status == "active":
            return "connected, answering"
        return self.metrics.rule.describe(self.metrics.recent)

    # -- one session --------------------------------------------------------------------

    async def _session_lifetime(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as outer:
            errlog = None
            stderr_done = trio.Event()
            if self.config.transport == "stdio":
                errlog = self._stderr_pipe(outer, stderr_done)
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
                    await self._serve(session, init, task_status)
            finally:
                if errlog is not None and not errlog.closed:
                    errlog.close()
                self._session = None
                self.metrics.connected_since = None
                # The child is gone: its stderr ends; read what is left, briefly.
                with trio.move_on_after(STDERR_LINGER):
                    await stderr_done.wait()
                outer.cancel_scope.cancel()

    def _stderr_pipe(self, nursery: trio.Nursery, done: trio.Event) -> TextIO:
        """A pipe for the child's stderr, drained in ``nursery``; returns its writing end."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        nursery.start_soon(self._drain_stderr, read_fd, done)
        return os.fdopen(write_fd, "w")

    async def _drain_stderr(self, fd: int, done: trio.Event) -> None:
        try:
            await self._stderr.drain(trio.lowlevel.FdStream(fd))
        finally:
            done.set()

    async def _serve(
        self, session: McpSession, init: InitializeResult, task_status: trio.TaskStatus[None]
    ) -> None:
        """Note the new session's server and tools, report it up, and serve it."""
        self.server_info = {
            "name": init.server_info.name,
            "version": init.server_info.version,
            "protocolVersion": init.protocol_version,
        }
        await self._tools.fetch(session)
        self._sessions += 1
        self.metrics.restarts = self._sessions - 1
        self.metrics.connected_since = time.monotonic()
        self._session = session
        log.info(
            "MCP server %s: connected (%s %s), %d tools",
            self.name,
            init.server_info.name,
            init.server_info.version,
            len(self.tools),
        )
        task_status.started()
        self._connection = Connection(
            session,
            self._requests,
            self._tools,
            name=self.name,
            timing=self._session_timing(),
            idle_after=self.config.idle_timeout if self.config.transport != "stdio" else None,
            metrics=self.metrics,
            on_answer=self._status_changed,
            stderr_hint=self._stderr_hint,
        )
        await self._connection.serve()

    def _stderr_hint(self) -> str:
        return f"; its last stderr line: {self.stderr_tail[-1]!r}" if self.stderr_tail else ""

    async def _on_message(self, message: Any) -> None:
        from mcp_types import ToolListChangedNotification

        if isinstance(message, ToolListChangedNotification):
            log.info("MCP server %s: its tools changed", self.name)
            self.refresh_tools()
        elif isinstance(message, Exception):
            log.debug("MCP server %s: transport: %s", self.name, describe_failure(message))
