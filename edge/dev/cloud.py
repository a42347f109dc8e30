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
Tests drive edge against it over loopback; ``edge dev-cloud`` runs it by hand.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import trio
import trio_websocket
import wsproto.events

from .asr import AsrSession, FakeAsr
from .gateway import SHAPES, FakeGateway, Step

log = logging.getLogger(__name__)


@dataclass
class _Connection:
    ws: trio_websocket.WebSocketConnection
    scope: trio.CancelScope
    report: dict[str, Any] | None = None
    send_lock: trio.Lock = field(default_factory=trio.Lock)


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
        self.results: dict[Any, dict[str, Any]] = {}
        self.duplicate_results = 0
        self.frames: list[Any] = []
        self.attempts = 0
        self.rejected = 0
        self.auth_headers: list[str] = []
        self._conn: _Connection | None = None
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
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                trio_websocket.serve_websocket, self._handle, host, port, None
            )
            self.url = f"ws://{host}:{server.port}/tunnel"
            self.asr_url = f"ws://{host}:{server.port}/asr"
            task_status.started(self)

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.report is not None

    @property
    def report(self) -> dict[str, Any] | None:
        return self.reports[-1] if self.reports else None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _handle(self, request: trio_websocket.WebSocketRequest) -> None:
        if request.path.startswith("/asr"):
            await self._handle_asr(request)
            return
        self.attempts += 1
        self._notify()
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        auth = headers.get("authorization", "")
        self.auth_headers.append(auth)
        if self.refuse_status is not None:
            self.rejected += 1
            await request.reject(self.refuse_status, body=b"refused by the fake cloud")
            return
        if not auth.startswith("Bearer ") or auth[len("Bearer ") :] not in self.tokens:
            self.rejected += 1
            await request.reject(401, body=b"bad token")
            return
        ws = await request.accept()
        self._hold_pongs(ws)
        if self.close_code is not None:
            await ws.aclose(self.close_code, "closed by the fake cloud")
            return
        with trio.CancelScope() as scope:
            conn = _Connection(ws, scope)
            previous, self._conn = self._conn, conn
            if previous is not None:
                previous.scope.cancel()
            try:
                await self._converse(conn)
            except trio_websocket.ConnectionClosed:
                pass
            finally:
                if self._conn is conn:
                    self._conn = None
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
            await request.reject(self.asr_refuse_status, body=b"refused by the fake cloud")
            return
        if not auth.startswith("Bearer ") or auth[len("Bearer ") :] not in self.tokens:
            await request.reject(401, body=b"bad token")
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
            self._receive(conn, frame)
            if frame is conn.report and self.send_approval:
                offered = [t["name"] for t in conn.report.get("tools", [])]
                tools = offered if self.approve is None else sorted(self.approve)
                async with conn.send_lock:
                    await ws.send_message(json.dumps({"type": "approved_tools", "tools": tools}))
            self._notify()

    def _receive(self, conn: _Connection, frame: Any) -> None:
        if isinstance(frame, dict) and frame.get("type") == "capability_report":
            conn.report = frame
            self.reports.append(frame)
        elif isinstance(frame, dict) and "result" in frame and "id" in frame:
            if frame["id"] in self.results:
                self.duplicate_results += 1
            else:
                self.results[frame["id"]] = frame["result"]
        else:
            self.frames.append(frame)

    # -- driving it --------------------------------------------------------------------

    async def wait_for(self, predicate: Any) -> None:
        """Wait until ``predicate()`` is true (re-checked after every event)."""
        while not predicate():
            await self._changed.wait()

    async def wait_connected(self, connections: int | None = None) -> None:
        """Wait for a completed handshake (the ``connections``-th report, if given)."""
        if connections is None:
            await self.wait_for(lambda: self.connected)
        else:
            await self.wait_for(lambda: self.connected and len(self.reports) >= connections)

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
        await self.send({"type": "approved_tools", "tools": list(tools)})

    async def ping(self) -> float:
        """Send ``{"type":"ping"}``; return the seconds until the pong arrived."""
        seen = sum(1 for f in self.frames if f == {"type": "pong"})
        start = trio.current_time()
        await self.send({"type": "ping"})
        await self.wait_for(lambda: sum(1 for f in self.frames if f == {"type": "pong"}) > seen)
        return trio.current_time() - start

    async def drop(self, code: int | None = None) -> None:
        """End the live connection: a close frame with ``code``, or a bare TCP drop."""
        conn = self._conn
        if conn is None:
            return
        if code is not None:
            await conn.ws.aclose(code, "closed by the fake cloud")
        else:
            await conn.ws._stream.aclose()
        conn.scope.cancel()
        await self.wait_for(lambda: self._conn is not conn)


async def run_interactive(host: str, port: int, token: str, gateway_port: int = 0) -> None:
    """``edge dev-cloud``: serve, print how to connect, and take commands on stdin.

    A fake model gateway (``edge.dev.gateway``) runs beside it on ``gateway_port``
    (0: any free port), accepting the same token, and is named in ``connected``.
    """
    cloud = FakeCloud([token])
    gateway = FakeGateway([token])
    async with trio.open_nursery() as nursery:
        cloud.gateway_url = await nursery.start(gateway.serve, host, gateway_port)
        await nursery.start(cloud.serve, host, port)
        print(f"fake cloud on {cloud.url}  (token: {token})")
        print(
            f"fake model gateway on {cloud.gateway_url}  (echoes; '/call NAME {{JSON}}' "
            "asks for a tool call)"
        )
        print(f"  connect an edge:  EDGE_TOKEN={token} edge run --cloud {cloud.url}")
        print("  or hand a running edge the token:")
        print(
            "    curl -X POST http://127.0.0.1:8660/tunnel/activate -H 'content-type: "
            f'application/json\' -d \'{{"jwt":"{token}","tunnelUrl":"{cloud.url}"}}\''
        )
        print("commands: call TOOL {JSON args} | approve NAME,NAME | ping | drop | status | quit")
        print(f"          {GATEWAY_HELP}")
        sys.stdout.flush()
        if sys.stdin is None or sys.stdin.closed:
            await trio.sleep_forever()
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        buffer = b""
        async with stdin:
            while True:
                chunk = await stdin.receive_some(4096)
                if not chunk:
                    await trio.sleep_forever()
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    text = line.decode(errors="replace").strip()
                    if not await _command(cloud, text, gateway):
                        nursery.cancel_scope.cancel()
                        return


#: The ``gw`` commands of ``edge dev-cloud``: how the gateway answers the next question.
GATEWAY_HELP = (
    "gw say TEXT | gw slow SECONDS TEXT | gw call [SHAPE] NAME {JSON} | gw error STATUS | "
    "gw shapes"
)


def _gateway_step(rest: str) -> Step | str:
    """A ``gw`` command's step for the gateway's script, or the text to print."""
    verb, _, rest = rest.strip().partition(" ")
    if verb == "say" and rest:
        return Step(text=rest)
    if verb == "slow":
        seconds, _, text = rest.partition(" ")
        return Step(text=text or "a slow answer, one word at a time", chunk_delay=float(seconds))
    if verb == "error":
        return Step(status=int(rest))
    if verb == "call":
        first, _, more = rest.partition(" ")
        shape = "standard"
        if first in SHAPES:
            shape, (first, _, more) = first, more.partition(" ")
        args = json.loads(more) if more.strip() else {}
        return Step(calls=((first, args),), shape=shape)
    if verb == "shapes":
        return "tool-call shapes: " + ", ".join(SHAPES)
    return f"usage: {GATEWAY_HELP}"


async def _command(cloud: FakeCloud, line: str, gateway: FakeGateway | None = None) -> bool:
    word, _, rest = line.partition(" ")
    try:
        if word in ("quit", "exit"):
            return False
        if not word:
            return True
        if word == "gw" and gateway is not None:
            step = _gateway_step(rest)
            if isinstance(step, str):
                print(step)
            else:
                gateway.script(step)
                print(f"the gateway's next answer: {step}")
        elif word == "status":
            print(
                json.dumps(
                    {
                        "connected": cloud.connected,
                        "attempts": cloud.attempts,
                        "results": len(cloud.results),
                    }
                )
            )
        elif not cloud.connected:
            print("no edge connected yet")
        elif word == "call":
            tool, _, args = rest.partition(" ")
            with trio.fail_after(120):
                result = await cloud.call(tool, json.loads(args) if args.strip() else {})
            print(json.dumps(result, indent=2))
        elif word == "approve":
            await cloud.approve_tools([t for t in rest.split(",") if t])
            print("approved:", rest)
        elif word == "ping":
            print(f"pong in {await cloud.ping() * 1000:.2f} ms")
        elif word == "drop":
            await cloud.drop()
            print("dropped the connection")
        else:
            print(f"unknown command {word!r}")
    except (ValueError, trio.TooSlowError) as exc:
        print(f"error: {exc}")
    sys.stdout.flush()
    return True
