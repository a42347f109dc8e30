"""The control API: a small HTTP API on loopback for the cloud's web page and the CLI.

Served by hypercorn on trio. Routes (see README "Control API")::

    GET  /health            version, uptime, tunnel status, effective tool count
    GET  /tunnel/status     the tunnel's state (never the token)
    POST /tunnel/activate   {"jwt": ..., "tunnelUrl": ...}: connect with these credentials
    POST /tunnel/disconnect
    POST /record/start      {"chatId", "source", "asr"?, "sampleRate"?, "channels"?, "format"?}
    POST /record/stop       ?chatId=ID stops one capture; without it, all
    GET  /record/status     every live capture
    GET  /record/events     server-sent events: transcripts, captures started and ended
    GET  /events            the same stream (MCP server status changes included)
    GET  /mcp/servers       every MCP server: status, metrics, per-tool figures
    POST /mcp/servers/NAME/test   connect on a fresh connection, list tools, time it
                                  (?timeout=SECONDS, default 10)
    GET  /tools/openai      the effective tools in OpenAI function-calling form
    POST /tools/batch       {"toolCalls": [OpenAI tool calls], "concurrency"?}: run them
                            under the cloud's approval and the local policy

Browser safety, in ``BrowserGuard`` in front of everything: the Host header must
be a loopback name (a DNS-rebinding page arrives with its own host name), and a
request carrying an Origin must come from a configured origin, preflights
included. Starlette's CORS middleware answers the allowed preflights; the
guard adds ``Access-Control-Allow-Private-Network`` for browsers that ask
before a public page may call a loopback address.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextlib import aclosing
from functools import partial
from typing import Any, Final, Protocol

import trio

from ..config import is_loopback
from ..errors import BadRequest, CaptureConflict, CaptureError, NoSuchCapture
from ..events import EventHub
from ..protocol.openai import from_openai_call, to_openai_message
from ..tools.batch import BATCH_CONCURRENCY

log = logging.getLogger(__name__)

#: Request bodies larger than this are refused (bytes).
MAX_BODY: Final = 64 * 1024
#: Seconds POST /mcp/servers/NAME/test waits for a server unless ?timeout= says otherwise.
MCP_TEST_TIMEOUT: Final = 10.0
#: Calls in one /tools/batch request at most.
MAX_BATCH: Final = 64
#: Seconds between keep-alive comments on an idle event stream.
EVENT_KEEPALIVE: Final = 15.0
#: Seconds open HTTP requests get to finish when the daemon stops.
GRACEFUL_TIMEOUT: Final = 0.3

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ControlTarget(Protocol):
    """What the control API drives; the daemon implements it."""

    def health(self) -> dict[str, Any]: ...

    def tunnel_info(self) -> dict[str, Any]: ...

    def activate(self, jwt: str, url: str) -> None: ...

    def disconnect(self) -> None: ...

    events: EventHub

    async def record_start(
        self,
        chat_id: str,
        source: str,
        *,
        asr: str | bool | None = None,
        sample_rate: int = 16000,
        channels: int = 1,
        container: str = "flac",
    ) -> dict[str, Any]: ...

    async def record_stop(self, chat_id: str | None) -> list[dict[str, Any]]: ...

    def record_status(self) -> list[dict[str, Any]]: ...

    def mcp_servers(self) -> list[dict[str, Any]]: ...

    async def mcp_test(self, name: str, within: float) -> dict[str, Any]: ...

    def openai_tools(self) -> list[dict[str, Any]]: ...

    async def call_tools(
        self, calls: list[tuple[str, dict[str, Any]]], concurrency: int
    ) -> list[dict[str, Any]]: ...



def host_is_loopback(host_header: str) -> bool:
    """Whether a Host header (``name[:port]``, ``[v6]:port``) names this machine's loopback."""
    host = host_header.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return bool(host) and is_loopback(host)


class BrowserGuard:
    """ASGI middleware: refuse foreign Host headers and Origins before anything runs."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(o.rstrip("/") for o in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not host_is_loopback(headers.get("host", "")):
            await _refuse(
                scope,
                send,
                403,
                "Host not allowed: the control API answers only "
                "to loopback names (localhost, 127.0.0.1, [::1])",
            )
            return
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/") not in self.allowed:
            await _refuse(
                scope,
                send,
                403,
                "Origin not allowed: add it to "
                "[control] allowed_origins to let that page call edge",
            )
            return
        if headers.get("access-control-request-private-network") == "true":
            send = partial(_add_private_network_header, send)
        await self.app(scope, receive, send)


async def _add_private_network_header(send: Send, message: Message) -> None:
    if message["type"] == "http.response.start":
        message.setdefault("headers", [])
        message["headers"] = [
            *message["headers"],
            (b"access-control-allow-private-network", b"true"),
        ]
    await send(message)


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def build_app(target: ControlTarget, allowed_origins: Iterable[str] = ()) -> ASGIApp:
    """The control API as an ASGI app (the guard, CORS, then the routes)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    origins = list(allowed_origins)

    async def read_json(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise BadRequest(f"body is over {MAX_BODY} bytes")
        body = b""
        async with aclosing(request.stream()) as chunks:
            async for chunk in chunks:
                body += chunk
                if len(body) > MAX_BODY:
                    raise BadRequest(f"body is over {MAX_BODY} bytes")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadRequest("body must be a JSON object")
        return data

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(target.health())

    async def tunnel_status(request: Request) -> JSONResponse:
        return JSONResponse(target.tunnel_info())

    async def tunnel_activate(request: Request) -> JSONResponse:
        data = await read_json(request)
        jwt = data.get("jwt")
        url = data.get("tunnelUrl")
        if not isinstance(jwt, str) or not jwt.strip():
            raise BadRequest('"jwt" is missing or not a non-empty string')
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise BadRequest('"tunnelUrl" is missing or not a ws:// or wss:// URL')
        try:
            target.activate(jwt.strip(), url)
        except ValueError as exc:
            raise BadRequest(f'"tunnelUrl": {exc}') from None
        return JSONResponse({"status": "connecting", "tunnelUrl": url}, status_code=202)

    async def tunnel_disconnect(request: Request) -> JSONResponse:
        target.disconnect()
        return JSONResponse({"status": "disconnected"})

    async def record_start(request: Request) -> JSONResponse:
        data = await read_json(request)
        options: dict[str, Any] = {}
        for key, name, kind in (
            ("sampleRate", "sample_rate", int),
            ("channels", "channels", int),
            ("format", "container", str),
        ):
            if key in data:
                value = data[key]
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise BadRequest(f'"{key}" must be a {kind.__name__}')
                options[name] = value
        asr = data.get("asr")
        if asr is not None and asr is not False and not isinstance(asr, str):
            raise BadRequest('"asr" must be a ws:// or wss:// URL, or false')
        source = data.get("source")
        if not isinstance(source, str):
            raise BadRequest('"source" is missing or not a string (mic, system, tone:FREQ, ...)')
        status = await target.record_start(data.get("chatId"), source, asr=asr, **options)  # type: ignore[arg-type]
        return JSONResponse(status, status_code=201)

    async def record_stop(request: Request) -> JSONResponse:
        chat_id = request.query_params.get("chatId")
        return JSONResponse({"stopped": await target.record_stop(chat_id)})

    async def record_status(request: Request) -> JSONResponse:
        return JSONResponse({"captures": target.record_status()})

    async def record_events(request: Request) -> StreamingResponse:
        async def stream() -> Any:
            with target.events.subscribe() as sub:
                yield b": edge events\n\n"
                while True:
                    with trio.move_on_after(EVENT_KEEPALIVE):
                        event = await sub.receive.receive()
                        yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
                        continue
                    yield b": keep-alive\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def mcp_servers(request: Request) -> JSONResponse:
        return JSONResponse({"servers": target.mcp_servers()})

    async def mcp_test(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        try:
            within = float(request.query_params.get("timeout", MCP_TEST_TIMEOUT))
        except ValueError:
            raise BadRequest("timeout must be a number of seconds") from None
        if not 0 < within <= 120:
            raise BadRequest("timeout must be between 0 and 120 seconds")
        try:
            report = await target.mcp_test(name, within)
        except KeyError:
            raise HTTPException(404, f"no MCP server named {name!r}") from None
        return JSONResponse(report, status_code=200 if report["ok"] else 502)

    async def tools_openai(request: Request) -> JSONResponse:
        return JSONResponse({"tools": target.openai_tools()})

    async def tools_batch(request: Request) -> JSONResponse:
        data = await read_json(request)
        raw = data.get("toolCalls")
        if not isinstance(raw, list) or not raw or len(raw) > MAX_BATCH:
            raise BadRequest(f'"toolCalls" must be a list of 1 to {MAX_BATCH} OpenAI tool calls')
        concurrency = data.get("concurrency", BATCH_CONCURRENCY)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise BadRequest('"concurrency" must be a positive integer')
        calls = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, dict):
                raise BadRequest(f"toolCalls[{i}] is not an object")
            try:
                calls.append(from_openai_call(entry))
            except ValueError as exc:
                raise BadRequest(f"toolCalls[{i}]: {exc}") from None
        results = await target.call_tools(calls, min(concurrency, MAX_BATCH))
        messages = [
            to_openai_message(str(entry.get("id", i)), result)
            for i, (entry, result) in enumerate(zip(raw, results, strict=True))
        ]
        return JSONResponse({"results": results, "messages": messages})

    async def bad_request(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def capture_error(request: Request, exc: Exception) -> JSONResponse:
        status = 400
        if isinstance(exc, NoSuchCapture):
            status = 404
        elif isinstance(exc, CaptureConflict):
            status = 409
        return JSONResponse({"error": str(exc)}, status_code=status)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/tunnel/status", tunnel_status, methods=["GET"]),
            Route("/tunnel/activate", tunnel_activate, methods=["POST"]),
            Route("/tunnel/disconnect", tunnel_disconnect, methods=["POST"]),
            Route("/record/start", record_start, methods=["POST"]),
            Route("/record/stop", record_stop, methods=["POST"]),
            Route("/record/status", record_status, methods=["GET"]),
            Route("/record/events", record_events, methods=["GET"]),
            Route("/events", record_events, methods=["GET"]),
            Route("/mcp/servers", mcp_servers, methods=["GET"]),
            Route("/mcp/servers/{name}/test", mcp_test, methods=["POST"]),
            Route("/tools/openai", tools_openai, methods=["GET"]),
            Route("/tools/batch", tools_batch, methods=["POST"]),
        ],
        middleware=[
            Middleware(BrowserGuard, allowed_origins=origins),
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST"],
                allow_headers=["content-type"],
                max_age=600,
            ),
        ],
        exception_handlers={
            BadRequest: bad_request,
            CaptureError: capture_error,
            HTTPException: http_error,
        },
    )
    return app


async def serve_control(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``nursery.start`` gives its URL."""
    import hypercorn
    import hypercorn.trio

    config = hypercorn.Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    http_log = logging.getLogger("edge.control.http")
    http_log.setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    config.errorlog = http_log
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.include_server_header = False
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn.trio.serve, app, config))  # type: ignore[arg-type]
        task_status.started(binds[0])
