"""Browser safety in front of the control API: Host and Origin checks, then CORS.

A DNS-rebinding page reaches a loopback port under its own host name, so the
Host header must be a loopback name. A request carrying an Origin must come
from a configured origin, preflights included; Starlette's CORS middleware then
answers the allowed preflights, and ``Access-Control-Allow-Private-Network`` is
added for browsers that ask before a public page may call a loopback address
(https://wicg.github.io/private-network-access/).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from ..config import is_loopback

if TYPE_CHECKING:
    from starlette.middleware import Middleware

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The refusal for a Host header that is not a loopback name.
HOST_REFUSED: Final = (
    "Host not allowed: the control API answers only to loopback names (localhost, 127.0.0.1, [::1])"
)
#: The refusal for an Origin that is not configured.
ORIGIN_REFUSED: Final = (
    "Origin not allowed: add it to [control] allowed_origins to let that page call edge"
)
#: Seconds a browser may cache an answered CORS preflight.
PREFLIGHT_MAX_AGE: Final = 600


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
            await _refuse(scope, send, 403, HOST_REFUSED)
            return
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/") not in self.allowed:
            await _refuse(scope, send, 403, ORIGIN_REFUSED)
            return
        if headers.get("access-control-request-private-network") == "true":
            send = partial(_add_private_network_header, send)
        await self.app(scope, receive, send)


def guard_middleware(allowed_origins: Iterable[str]) -> list[Middleware]:
    """The middleware in front of every route: the guard first, then CORS for allowed origins."""
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware

    origins = list(allowed_origins)
    return [
        Middleware(BrowserGuard, allowed_origins=origins),
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type"],
            max_age=PREFLIGHT_MAX_AGE,
        ),
    ]


async def _add_private_network_header(send: Send, message: Message) -> None:
    """Send ``message``, with the private-network grant added to a response start."""
    if message["type"] == "http.response.start":
        message.setdefault("headers", [])
        message["headers"] = [
            *message["headers"],
            (b"access-control-allow-private-network", b"true"),
        ]
    await send(message)


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    """Answer with ``status`` and ``{"error": message}`` (a websocket is closed with 1008)."""
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
