"""A fake cloud: a real trio-websocket server that speaks the tunnel protocol.

It checks the Bearer token, sends ``connected``, reads the capability report,
approves tools (all offered ones unless told otherwise), sends tool calls and
records their results (deduplicated by id, as the real cloud does), answers
nothing it need not, and can refuse, close or drop connections on command,
or stop answering WebSocket pings (so that nothing edge sent is confirmed).
It also serves a speech-recognition endpoint on ``/asr`` (``edge.dev.asr``),
named to edge in ``connected`` as ``asrUrl``, whose transcripts name the tones
each second of audio holds; ``gateway_url`` and ``versions_url``, when set, are
sent there as ``gatewayUrl`` and ``versionsUrl`` (``edge dev-cloud`` runs a fake
model gateway, ``edge.dev.gateway``, and names it so).
It serves several edges at once, each known by the agent id of its capability
report (a new connection of the same agent replaces the old one), and relays
the ``agents`` extension between them (``edge.protocol.a2a``): an
``agent_request`` naming ``to`` goes to that edge (``from`` set to the asker),
its ``agent_event``s back to the asker, cancels and resumes forward;
``agent_peers`` goes to every edge whenever the set changes; and when the edge
running a task goes away and is not back within ``away_grace`` seconds, the
asker gets a final ``failed`` event ("agent X went away"); when the asker goes
away so (it can no longer cancel), the edge running each task it asked for gets
an ``agent_cancel``, the cloud's duty as much as the relay. The cloud itself
asks too (``ask_agent``), taking each event once and in order (``agent_events``).
Tests drive edge against it over loopback; ``edge dev-cloud`` runs it by hand
(``edge.dev.console``), printing what ``announce`` is told: an edge connecting,
disconnecting or being refused.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import trio
import trio_websocket
import wsproto.events

from ..config import format_hostport
from ..errors import ConfigError
from ..protocol.a2a import EventOrder, Order, TaskEvent
from .asr import AsrSession, FakeAsr
from .commands import count

log = logging.getLogger(__name__)


@dataclass
class _Connection:
    ws: trio_websocket.WebSocketConnection
    scope: trio.CancelScope
    report: dict[str, Any] | None = None
    send_lock: trio.Lock = field(default_factory=trio.Lock)
    #: The tools last approved on this connection (``approved_tools`` sent).
    approved: list[str] | None = None
    #: Why the fake cloud ended it (``drop``, a newer connection), for the announcement.
    ended_by: str | None = None

    @property
    def agent_id(self) -> str | None:
        agent = (self.report or {}).get("agent")
        ident = agent.get("id") if isinstance(agent, dict) else None
        return ident if isinstance(ident, str) else None


@dataclass
class _Route:
    """A task the fake cloud relays: who asked (an agent id, or ``None``: the cloud) and who
    runs it; what the asker has been given."""

    requester: str | None
    responder: str
    order: EventOrder = field(default_factory=EventOrder)
    #: Events the asker took, once each and in order (the cloud's own asks).
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Every event that came, repeats included.
    received: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = 0
    done: bool = False


class FakeCloud:
    """The cloud's side of the tunnel, scriptable from a test or the terminal.

    Args:
        tokens: tokens it accepts (``Authorization: Bearer <token>``).
        approve: tool names it approves; ``None`` approves every tool offered.
        user_id: sent in ``connected``.
    """

    def __init__(
        self,
        tokens: Iterable[str] = ("dev-token",),
        *,
        approve: Iterable[str] | None = None,
        user_id: str = "user-1",
    ) -> None:
        self.tokens = set(tokens)
        self.approve: set[str] | None = None if approve is None else set(approve)
        self.user_id = user_id
        #: When set, upgrades are refused with this HTTP status.
        self.refuse_status: int | None = None
        #: When set, accepted connections are closed at once with this close code.
        self.close_code: int | None = None
        #: Handshake knobs, for timeout tests.
        self.send_connected = True
        self.send_approval = True
        #: When false, WebSocket pings get no pong (edge cannot confirm what it sent).
        self.answer_pings = True
        #: WebSocket pings answered and left unanswered.
        self.pings_answered = 0
        self.pings_unanswered = 0
        self.url = ""
        self.asr_url = ""
        #: When set, sent in ``connected`` as ``gatewayUrl`` (the model gateway's base URL).
        self.gateway_url: str | None = None
        #: When set, sent in ``connected`` as ``versionsUrl`` (the versions manifest).
        self.versions_url: str | None = None
        self.asr = FakeAsr()
        #: When set, ASR upgrades are refused with this HTTP status.
        self.asr_refuse_status: int | None = None
        self.reports: list[dict[str, Any]] = []
        #: Handshakes done: connections whose first capability report arrived (a report
        #: announced again on the same connection is not another one).
        self.handshakes = 0
        #: ``{"type": "pong"}`` frames received (``ping`` waits for the next one).
        self.pongs = 0
        self.results: dict[Any, dict[str, Any]] = {}
        self.duplicate_results = 0
        self.frames: list[Any] = []
        #: When each connection attempt came (trio time).
        self.attempted_at: list[float] = []
        self.rejected = 0
        self.auth_headers: list[str] = []
        #: Told a line for a person when an edge connects, disconnects or is refused.
        self.announce: Callable[[str], None] | None = None
        self._conn: _Connection | None = None
        #: Every live connection, the newest last.
        self._conns: list[_Connection] = []
        #: Tasks relayed between agents (and the cloud's own asks), by task id.
        self.routes: dict[str, _Route] = {}
        #: Seconds an edge running a relayed task may be away before its asker is told.
        self.away_grace = 3.0
        #: Sends the fake cloud's relay made (frames sent to edges), by method.
        self.relayed: dict[str, int] = {}
        self._nursery: trio.Nursery | None = None
        self._ids = itertools.count(1)
        self._changed = trio.Event()

    # -- serving ------------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[FakeCloud] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; ``nursery.start`` gives the cloud, its URLs set.

        Raises:
            ConfigError: ``host:port`` cannot be bound (in use, not an address here).
        """
        bound = False
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                server = await nursery.start(
                    trio_websocket.serve_websocket, self._handle, host, port, None
                )
                bound = True
                where = format_hostport((host, server.port))  # [::1]:PORT for IPv6
                self.url = f"ws://{where}/tunnel"
                self.asr_url = f"ws://{where}/asr"
                task_status.started(self)
        except* OSError as group:
            if bound:
                raise
            exc = group.exceptions[0]
            while isinstance(exc, BaseExceptionGroup):
                exc = exc.exceptions[0]
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(
                f"cannot serve the fake cloud on {format_hostport((host, port))}: {why} "
                "(another edge dev-cloud? --port 0 takes any free port)"
            ) from None

    @property
    def attempts(self) -> int:
        """Connection attempts so far (refused ones included)."""
        return len(self.attempted_at)

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.report is not None

    @property
    def report(self) -> dict[str, Any] | None:
        return self.reports[-1] if self.reports else None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _say(self, line: str) -> None:
        if self.announce is not None:
            self.announce(line)

    @property
    def approved(self) -> list[str] | None:
        """The tools last approved on the live connection (``None``: no edge connected)."""
        return None if self._conn is None else self._conn.approved

    async def _handle(self, request: trio_websocket.WebSocketRequest) -> None:
        if request.path.startswith("/asr"):
            await self._handle_asr(request)
            return
        self.attempted_at.append(trio.current_time())
        self._notify()
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        auth = headers.get("authorization", "")
        self.auth_headers.append(auth)
        if self.refuse_status is not None:
            self.rejected += 1
            self._say(f"refused a connection with HTTP {self.refuse_status}, as told")
            await _reject(request, self.refuse_status, body=b"refused by the fake cloud")
            return
        if not auth.startswith("Bearer ") or auth[len("Bearer ") :] not in self.tokens:
            self.rejected += 1
            # What it sent is not echoed: it may be a real token for another cloud.
            self._say("refused a connection: " + ("wrong token" if auth else "no token") + " (401)")
            await _reject(request, 401, body=b"bad token")
            return
        ws = await request.accept()
        self._hold_pongs(ws)
        if self.close_code is not None:
            self._say(f"closed a connection at once with code {self.close_code}, as told")
            await ws.aclose(self.close_code, "closed by the fake cloud")
            return
        with trio.CancelScope() as scope:
            conn = _Connection(ws, scope)
            self._conn = conn
            self._conns.append(conn)
            why = "the connection ended"
            try:
                await self._converse(conn)
            except trio_websocket.ConnectionClosed as exc:
                why = _close_reason(exc.reason)
            finally:
                self._conns.remove(conn)
                if self._conn is conn:
                    self._conn = self._conns[-1] if self._conns else None
                if conn.report is not None:
                    self._say(f"edge disconnected: {conn.ended_by or why}")
                    self._gone(conn)
                self._notify()

    def _hold_pongs(self, ws: trio_websocket.WebSocketConnection) -> None:
        """Send pongs only while ``answer_pings`` (trio-websocket answers pings itself)."""
        send = ws._send

        async def send_unless_pong(event: wsproto.events.Event) -> None:
            if isinstance(event, wsproto.events.Pong):
                if not self.answer_pings:
                    self.pings_unanswered += 1
                    self._notify()
                    return
                self.pings_answered += 1
                self._notify()
            await send(event)

        ws._send = send_unless_pong  # type: ignore[method-assign]

    async def _handle_asr(self, request: trio_websocket.WebSocketRequest) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        auth = headers.get("authorization", "")
        if self.asr_refuse_status is not None:
            await _reject(request, self.asr_refuse_status, body=b"refused by the fake cloud")
            return
        if not auth.startswith("Bearer ") or auth[len("Bearer ") :] not in self.tokens:
            await _reject(request, 401, body=b"bad token")
            return
        ws = await request.accept()
        try:
            await self.asr.handle(ws, self._notify)
        except trio_websocket.ConnectionClosed:
            pass

    def asr_session(self, chat_id: str) -> AsrSession | None:
        return self.asr.sessions.get(chat_id)

    async def wait_transcribed(self, chat_id: str, seconds: int) -> AsrSession:
        """Wait until ``chat_id`` has at least ``seconds`` final transcript segments."""
        await self.wait_for(
            lambda: (s := self.asr.sessions.get(chat_id)) is not None and len(s.finals()) >= seconds
        )
        return self.asr.sessions[chat_id]

    async def drop_asr(self, chat_id: str) -> None:
        """Cut the ASR connection of ``chat_id`` without a close frame."""
        ws = self.asr.live.get(chat_id)
        if ws is not None:
            await ws._stream.aclose()
            await self.wait_for(lambda: self.asr.live.get(chat_id) is not ws)

    async def _converse(self, conn: _Connection) -> None:
        ws = conn.ws
        if self.send_connected:
            connected = {"type": "connected", "userId": self.user_id, "asrUrl": self.asr_url}
            if self.gateway_url is not None:
                connected["gatewayUrl"] = self.gateway_url
            if self.versions_url is not None:
                connected["versionsUrl"] = self.versions_url
            await ws.send_message(json.dumps(connected))
        while True:
            message = await ws.get_message()
            try:
                frame = json.loads(message)
            except ValueError:
                self.frames.append(message)
                continue
            first = conn.report is None
            self._receive(conn, frame)
            if conn.report is not None and frame is conn.report:
                self._say(_describe(conn.report, first))
                if first:
                    self._replace_older(conn)
            elif isinstance(frame, dict) and frame.get("method") in _RELAYED:
                await self._relay(conn, frame)
            if frame is conn.report and self.send_approval:
                offered = [t["name"] for t in conn.report.get("tools", [])]
                tools = offered if self.approve is None else sorted(self.approve)
                async with conn.send_lock:
                    await ws.send_message(json.dumps({"type": "approved_tools", "tools": tools}))
                conn.approved = tools
            if frame is conn.report:
                await self._send_peers()  # after the approval, which the handshake waits for
            self._notify()

    def _receive(self, conn: _Connection, frame: Any) -> None:
        if isinstance(frame, dict) and frame.get("method") in _RELAYED:
            return
        if isinstance(frame, dict) and frame.get("type") == "capability_report":
            if conn.report is None:
                self.handshakes += 1
            conn.report = frame
            self.reports.append(frame)
        elif isinstance(frame, dict) and "result" in frame and "id" in frame:
            if frame["id"] in self.results:
                self.duplicate_results += 1
            else:
                self.results[frame["id"]] = frame["result"]
        else:
            if frame == {"type": "pong"}:
                self.pongs += 1
            self.frames.append(frame)

    # -- driving it --------------------------------------------------------------------

    async def wait_for(self, predicate: Any) -> None:
        """Wait until ``predicate()`` is true (re-checked after every event)."""
        while not predicate():
            await self._changed.wait()

    async def wait_connected(self, connections: int | None = None) -> None:
        """Wait for a completed handshake (the ``connections``-th one, if given)."""
        if connections is None:
            await self.wait_for(lambda: self.connected)
        else:
            await self.wait_for(lambda: self.connected and self.handshakes >= connections)

    async def send(self, frame: dict[str, Any] | str) -> None:
        """Send a raw frame (a dict is JSON-encoded) on the live connection."""
        await self.wait_connected()
        conn = self._conn
        assert conn is not None
        text = frame if isinstance(frame, str) else json.dumps(frame)
        async with conn.send_lock:
            await conn.ws.send_message(text)

    async def start_call(self, tool: str, args: Any = None, call_id: Any = None) -> Any:
        """Send a ``tool_call`` and return its id without waiting for the result."""
        call_id = next(self._ids) if call_id is None else call_id
        params: dict[str, Any] = {"tool": tool}
        if args is not None:
            params["args"] = args
        await self.send({"jsonrpc": "2.0", "id": call_id, "method": "tool_call", "params": params})
        return call_id

    async def result(self, call_id: Any) -> dict[str, Any]:
        await self.wait_for(lambda: call_id in self.results)
        return self.results[call_id]

    async def call(self, tool: str, args: Any = None) -> dict[str, Any]:
        """Send a ``tool_call`` and wait for its result."""
        return await self.result(await self.start_call(tool, args))

    async def cancel(self, call_id: Any) -> None:
        await self.send({"jsonrpc": "2.0", "method": "cancel", "params": {"id": call_id}})

    async def approve_tools(self, tools: Iterable[str]) -> None:
        """Send ``approved_tools``: the edge's approved set becomes exactly ``tools``."""
        await self.wait_connected()
        conn = self._conn
        assert conn is not None
        names = list(tools)
        async with conn.send_lock:
            await conn.ws.send_message(json.dumps({"type": "approved_tools", "tools": names}))
        conn.approved = names

    async def ping(self) -> float:
        """Send ``{"type":"ping"}``; return the seconds until the pong arrived."""
        seen = self.pongs
        start = trio.current_time()
        await self.send({"type": "ping"})
        await self.wait_for(lambda: self.pongs > seen)
        return trio.current_time() - start

    async def drop(self, code: int | None = None) -> None:
        """End the live connection: a close frame with ``code``, or a bare TCP drop."""
        if self._conn is not None:
            await self._drop_connection(self._conn, code)

    async def _drop_connection(self, conn: _Connection, code: int | None) -> None:
        conn.ended_by = (
            f"closed by the fake cloud (code {code})"
            if code is not None
            else "dropped by the fake cloud (no close frame)"
        )
        if code is not None:
            await conn.ws.aclose(code, "closed by the fake cloud")
        else:
            await conn.ws._stream.aclose()
        conn.scope.cancel()
        await self.wait_for(lambda: conn not in self._conns)

    # -- the agents relay ----------------------------------------------------------------

    def agent(self, agent_id: str) -> _Connection | None:
        """The live connection of the edge with that agent id (its report received)."""
        for conn in reversed(self._conns):
            if conn.report is not None and conn.agent_id == agent_id:
                return conn
        return None

    @property
    def agents(self) -> dict[str, dict[str, Any]]:
        """The connected edges' capability reports, by agent id."""
        return {c.agent_id: c.report for c in self._conns if c.report and c.agent_id}

    def peers(self) -> list[dict[str, Any]]:
        """The connected agents as ``agent_peers`` names them."""
        out = []
        for ident, report in self.agents.items():
            agent = report.get("agent") or {}
            out.append(
                {
                    "id": ident,
                    "name": agent.get("name") or ident,
                    "hostname": report.get("hostname"),
                    "skills": [t.get("name") for t in report.get("tools", [])],
                }
            )
        return out

    async def wait_agent(self, agent_id: str) -> None:
        """Wait until the edge with that agent id is connected."""
        await self.wait_for(lambda: self.agent(agent_id) is not None)

    async def drop_agent(self, agent_id: str, code: int | None = None) -> None:
        """End the connection of one edge (see ``drop``)."""
        conn = self.agent(agent_id)
        if conn is not None:
            await self._drop_connection(conn, code)

    async def ask_agent(
        self,
        agent_id: str,
        skill: str,
        args: dict[str, Any] | None = None,
        *,
        deadline: float | None = None,
        task_id: str | None = None,
    ) -> str:
        """Ask an edge, as the cloud, to run ``skill``: the task id (see ``agent_events``)."""
        await self.wait_agent(agent_id)
        conn = self.agent(agent_id)
        assert conn is not None
        task_id = task_id or f"cloud-task-{next(self._ids)}"
        self.routes[task_id] = _Route(None, agent_id)
        params: dict[str, Any] = {"taskId": task_id, "skill": skill, "args": args or {}}
        if deadline is not None:
            params["deadline"] = deadline
        frame = {"jsonrpc": "2.0", "id": f"ask-{task_id}", "method": "agent_request"}
        await self._send_to(conn, {**frame, "params": params})
        return task_id

    def agent_events(self, task_id: str) -> list[dict[str, Any]]:
        """The events of a task the cloud asked for, each once and in order."""
        return self.routes[task_id].events

    async def agent_final(self, task_id: str) -> dict[str, Any]:
        """Wait for the final event of a task the cloud asked for; that event."""
        route = self.routes[task_id]
        await self.wait_for(lambda: route.done)
        return route.events[-1]

    async def cancel_agent_task(self, task_id: str, reason: str | None = None) -> None:
        """Cancel, as the cloud, a task it asked for."""
        route = self.routes[task_id]
        conn = self.agent(route.responder)
        if conn is not None:
            params: dict[str, Any] = {"taskId": task_id}
            if reason is not None:
                params["reason"] = reason
            frame = {"jsonrpc": "2.0", "method": "agent_cancel", "params": params}
            await self._send_to(conn, frame)

    def _replace_older(self, conn: _Connection) -> None:
        """A new connection of an agent ends its older ones (all older ones without an id)."""
        ident = conn.agent_id
        for other in list(self._conns):
            if (
                other is not conn
                and other.agent_id == ident
                and (other.report is not None or ident is None)
            ):
                other.ended_by = "replaced by a new connection"
                other.scope.cancel()

    async def _send_to(self, conn: _Connection, frame: dict[str, Any]) -> bool:
        method = frame.get("method") or "response"
        self.relayed[method] = self.relayed.get(method, 0) + 1
        try:
            async with conn.send_lock:
                await conn.ws.send_message(json.dumps(frame))
        except trio_websocket.ConnectionClosed:
            return False
        return True

    async def _send_peers(self) -> None:
        frame = {"jsonrpc": "2.0", "method": "agent_peers", "params": {"peers": self.peers()}}
        for conn in list(self._conns):
            if conn.report is not None and conn.approved is not None:
                await self._send_to(conn, frame)

    async def _relay(self, conn: _Connection, frame: dict[str, Any]) -> None:
        """An edge's ``agent_*`` frame: to the agent it is for."""
        method = frame["method"]
        params = frame.get("params")
        if not isinstance(params, dict):
            self.frames.append(frame)
            return
        rpc_id = frame.get("id")
        task_id = params.get("taskId")
        route = self.routes.get(task_id) if isinstance(task_id, str) else None
        sender = conn.agent_id
        if method == "agent_request":
            to = params.get("to")
            target = self.agent(to) if isinstance(to, str) else None
            if target is None or not isinstance(task_id, str) or sender is None:
                error = {"code": -32004, "message": f"no agent {to!r} is connected to the cloud"}
                if rpc_id is not None:
                    await self._send_to(conn, {"jsonrpc": "2.0", "id": rpc_id, "error": error})
                return
            if route is None:
                self.routes[task_id] = _Route(sender, str(to))
            forwarded = {k: v for k, v in params.items() if k != "to"}
            forwarded["from"] = sender
            relay_id = f"relay-{next(self._ids)}"
            await self._send_to(
                target,
                {"jsonrpc": "2.0", "id": relay_id, "method": "agent_request", "params": forwarded},
            )
            if rpc_id is not None:
                answer = {"taskId": task_id, "accepted": True}
                await self._send_to(conn, {"jsonrpc": "2.0", "id": rpc_id, "result": answer})
        elif method == "agent_event":
            if route is None:
                self.frames.append(frame)
                return
            await self._deliver(route, params)
        elif route is not None and route.requester == sender:  # agent_cancel, agent_resume
            target = self.agent(route.responder)
            if target is not None:
                await self._send_to(target, {"jsonrpc": "2.0", "method": method, "params": params})

    async def _deliver(self, route: _Route, params: dict[str, Any]) -> None:
        """An event of a relayed task, to its asker (the cloud itself takes it in order)."""
        route.received.append(params)
        try:
            event = TaskEvent.from_json(params)
        except ValueError:
            self.frames.append(params)
            return
        route.last_seq = max(route.last_seq, event.seq)
        if route.requester is None:
            order = route.order.take(event)
            if order is Order.NEW:
                route.events.append(params)
                route.done = event.final
            elif order is Order.GAP:
                target = self.agent(route.responder)
                if target is not None:
                    resume = {"taskId": event.task_id, "after": route.order.last}
                    await self._send_to(
                        target, {"jsonrpc": "2.0", "method": "agent_resume", "params": resume}
                    )
        else:
            target = self.agent(route.requester)
            if target is not None:
                await self._send_to(
                    target, {"jsonrpc": "2.0", "method": "agent_event", "params": params}
                )
            if event.final:
                route.done = True
        self._notify()

    def _gone(self, conn: _Connection) -> None:
        """An edge's connection ended: the others hear of the new set of peers; the askers
        of its unfinished tasks hear it went away, and the runners of those it asked for get
        a cancel, unless it is back within ``away_grace``."""
        ident = conn.agent_id
        if self._nursery is None or ident is None:
            return
        if any(c.report is not None and c.approved is not None for c in self._conns):
            self._nursery.start_soon(self._send_peers)
        routes = self.routes.values()
        if any(r.responder == ident and not r.done for r in routes) or any(
            r.requester == ident and not r.done for r in routes
        ):
            self._nursery.start_soon(self._away, ident)

    async def _away(self, agent_id: str) -> None:
        await trio.sleep(self.away_grace)
        if self.agent(agent_id) is not None:
            return
        for task_id, route in list(self.routes.items()):
            if route.requester == agent_id and not route.done:
                # Nobody waits for it any more: the work stops where it runs.
                route.done = True
                target = self.agent(route.responder)
                if target is not None:
                    params = {"taskId": task_id, "reason": f"agent {agent_id} went away"}
                    frame = {"jsonrpc": "2.0", "method": "agent_cancel", "params": params}
                    await self._send_to(target, frame)
                self._notify()
            elif route.responder == agent_id and not route.done:
                why = f"agent {agent_id} went away"
                event = {
                    "taskId": task_id,
                    "seq": route.last_seq + 1,
                    "state": "failed",
                    "at": time.time(),
                    "message": why,
                    "result": {"error": why},
                }
                await self._deliver(route, event)


#: The agents extension's methods the fake cloud relays.
_RELAYED: Final = frozenset({"agent_request", "agent_event", "agent_cancel", "agent_resume"})


async def _reject(request: trio_websocket.WebSocketRequest, status: int, *, body: bytes) -> None:
    """Refuse an upgrade; a client that goes before the answer is whole is no error here."""
    try:
        await request.reject(status, body=body)
    except trio_websocket.ConnectionClosed:
        pass


def _describe(report: dict[str, Any], first: bool) -> str:
    """The announcement of a capability report: who connected, and what it offers."""
    tools = report.get("tools")
    offered = count(len(tools), "tool") if isinstance(tools, list) else "no tool list"
    who = f"{report.get('hostname', '?')} (edge {report.get('edgeVersion', '?')})"
    if first:
        return f"edge connected: {who}, {offered} offered"
    return f"edge {who} sent a new capability report: {offered} offered"


def _close_reason(reason: Any) -> str:
    """Why a connection closed, from trio-websocket's ``CloseReason``."""
    code = getattr(reason, "code", None)
    if code == 1006:
        return "the connection broke (no close frame)"
    text = getattr(reason, "reason", None)
    return f"closed by the edge (code {code}{': ' + text if text else ''})"
