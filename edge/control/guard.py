"""Browser safety in front of the control API: Host and Origin checks, then CORS.

A DNS-rebinding page reaches a loopback port under its own host name, so the
Host header must be a loopback name. A request carrying an Origin must come
from a configured origin, preflights included; Starlette's CORS middleware then
answers the allowed preflights, and ``Access-Control-Allow-Private-Network`` is
added for browsers that ask before a public page may call a loopback address
(https://wicg.github.io/private-network-access/).

The dashboard (``edge.control.dashboard``) is a page of the API's own origin,
``http://<loopback name>:<the port served>``. Its reads pass like any other;
what it sends to change state (any method but GET, HEAD and OPTIONS) must
carry this run's CSRF token in ``X-Edge-CSRF``, which only the page itself can
read (it is in the page, and no other origin may read the page). A request
without an Origin is the CLI's or a same-origin read, and passes; but one that
a browser marks as made for another site (``Sec-Fetch-Site: cross-site`` or
``same-site`` on a script, image, style or frame load) is refused, so a page on
another origin gets nothing, not even the dashboard's files. Following a link
to the dashboard (a top-level navigation) is allowed.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

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
#: The refusal for what a browser loads for a page of another site (no Origin sent).
SITE_REFUSED: Final = (
    "cross-site request refused: only edge's own pages and the configured origins may "
    "load from the control API"
)
#: The refusal for a state change from the dashboard page without this run's CSRF token.
CSRF_REFUSED: Final = (
    "the dashboard's request lacks this run's CSRF token (X-Edge-CSRF): reload the page"
)
#: The request header that carries the dashboard's CSRF token.
CSRF_HEADER: Final = "x-edge-csrf"
#: Methods that change nothing: the dashboard sends them without the token.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
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


def is_own_origin(origin: str, port: int | None) -> bool:
    """Whether ``origin`` is the control API's own: ``http://<loopback name>:<port>``.

    ``port`` is the port this server listens on (the ASGI scope's ``server``);
    ``None`` (unknown) matches nothing.
    """
    if port is None:
        return False
    try:
        parts = urlsplit(origin)
        origin_port = parts.port if parts.port is not None else 80
    except ValueError:
        return False
    if parts.scheme != "http" or parts.path or parts.query or parts.username is not None:
        return False
    return origin_port == port and host_is_loopback(parts.netloc)


def loaded_for_another_site(headers: dict[str, str]) -> bool:
    """Whether a request without an Origin is a browser's load for a page of another site.

    Browsers mark what they fetch with ``Sec-Fetch-*`` headers; scripts, images,
    styles and frames loaded for another site's page carry ``Sec-Fetch-Site:
    cross-site`` (or ``same-site``: another port of the same host) and no Origin.
    A top-level navigation (following a link) is not refused: the page then runs
    in its own origin.
    """
    site = headers.get("sec-fetch-site")
    if site not in ("cross-site", "same-site"):
        return False
    navigation = headers.get("sec-fetch-mode") == "navigate"
    return not (navigation and headers.get("sec-fetch-dest", "document") == "document")


class BrowserGuard:
    """ASGI middleware: refuse foreign Host headers and Origins before anything runs.

    ``csrf_token`` is this run's dashboard token: requests from the API's own
    origin that change state must present it (``None``: they are all refused).
    """

    def __init__(
        self, app: ASGIApp, allowed_origins: Iterable[str], csrf_token: str | None = None
    ) -> None:
        self.app = app
        self.allowed = frozenset(o.rstrip("/") for o in allowed_origins)
        self._csrf = csrf_token.encode() if csrf_token else None

    def __repr__(self) -> str:
        return f"BrowserGuard(allowed={sorted(self.allowed)!r}, csrf='***')"

    def _csrf_ok(self, presented: str | None) -> bool:
        """Whether ``presented`` is this run's CSRF token (compared in constant time)."""
        if self._csrf is None or not presented:
            return False
        return hmac.compare_digest(presented.strip().encode("latin-1"), self._csrf)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not host_is_loopback(headers.get("host", "")):
            await _refuse(scope, send, 403, HOST_REFUSED)
            return
        origin = headers.get("origin")
        server = scope.get("server")
        port = server[1] if server and len(server) > 1 else None
        if origin is None:
            if loaded_for_another_site(headers):
                await _refuse(scope, send, 403, SITE_REFUSED)
                return
        elif is_own_origin(origin, port):
            method = scope.get("method", "GET")
            if method not in SAFE_METHODS and not self._csrf_ok(headers.get(CSRF_HEADER)):
                await _refuse(scope, send, 403, CSRF_REFUSED)
                return
        elif origin.rstrip("/") not in self.allowed:
            await _refuse(scope, send, 403, ORIGIN_REFUSED)
            return
        if headers.get("access-control-request-private-network") == "true":
            send = partial(_add_private_network_header, send)
        await self.app(scope, receive, send)


def guard_middleware(
    allowed_origins: Iterable[str], csrf_token: str | None = None
) -> list[Middleware]:
    """The middleware in front of every route: the guard first, then CORS for allowed origins.

    ``csrf_token``: what the dashboard page must send with the state changes it makes.
    """
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware

    origins = list(allowed_origins)
    return [
        Middleware(BrowserGuard, allowed_origins=origins, csrf_token=csrf_token),
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
