"""Who may use the control API: this user's processes, then browser safety (Host, Origin,
CSRF), then CORS.

Any local process can connect to 127.0.0.1, other users' included, and the
browser rules below bind only browsers. So first, on Linux, the guard asks the
kernel who owns the peer's socket of each TCP connection (``edge.control.peer``)
and refuses, 403, a request from any uid but the one edge runs as (or root,
which can read this user's files anyway). A request whose connection is
already closed when it is checked is refused too: the kernel then lists the
closed socket as root's. Where the owner cannot be found at all (macOS, a
system without ``/proc`` or socket diagnostics) requests are not refused for
it, with one warning in the log; the local key (``edge.control.key``) still
guards the routes that need it.

A DNS-rebinding page reaches a loopback port under its own host name, so the
Host header must be a loopback name. A request carrying an Origin must come
from a configured origin, or be of the API's own origin, preflights included;
Starlette's CORS middleware then answers the allowed preflights, and
``Access-Control-Allow-Private-Network`` is added for browsers that ask before a
public page may call a loopback address
(https://wicg.github.io/private-network-access/).

The dashboard (``edge.control.dashboard``) is a page of the API's own origin:
its Origin is ``http://`` and the request's Host, the exact same-origin test
(it holds through a port forward such as ``ssh -L``, where the browser's port
is not the one served). Its reads pass like any other; what it sends to change
state (any method but GET, HEAD and OPTIONS) must carry this run's CSRF token
in ``X-Edge-CSRF``, which only the page itself can read (it is in the page,
and no other origin may read the page). A request without an Origin is the
CLI's or a same-origin read, and passes; but one that a browser marks as made
for another site (``Sec-Fetch-Site: cross-site`` or ``same-site`` on a script,
image, style or frame load) is refused, so a page on another origin gets
nothing, not even the dashboard's files. Following a link to the dashboard (a
top-level navigation) is allowed.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import trio

from ..config import is_loopback
from .peer import Address, Lookup, diag_lookup, working_lookup

if TYPE_CHECKING:
    from starlette.middleware import Middleware

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)

#: The refusal for a request from a process of another user.
PEER_REFUSED: Final = (
    "the control API answers only to processes of the user edge runs as (uid {ours}); "
    "this request came from uid {theirs}"
)
#: The refusal for a request whose connection closed before its sender could be checked.
PEER_CLOSED: Final = (
    "the control API answers only to processes of the user edge runs as (uid {ours}); "
    "this request's connection was closed before its sender could be checked"
)
#: The refusal for a request whose sender could not be checked where checks work.
PEER_UNCHECKED: Final = (
    "the control API answers only to processes of the user edge runs as (uid {ours}); "
    "this request's sender could not be checked: {problem}"
)
#: What the log says once where the owner of a connection cannot be found.
PEER_CHECKS_UNAVAILABLE: Final = (
    "cannot tell which user's process calls the control API on this system (no socket "
    "diagnostics, no /proc/net/tcp): requests from other local users are not refused; "
    "POST /stop and POST /tools/call still need the local key"
)

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


def is_own_origin(origin: str, host_header: str) -> bool:
    """Whether ``origin`` is the control API's own as the browser reached it.

    The exact same-origin test: the Origin equals ``http://`` and the request's
    Host header (case-insensitive), which must be a loopback name. It holds
    through a port forward (``ssh -L 9000:127.0.0.1:8660``: the page is at
    ``http://localhost:9000`` and says so in both headers).
    """
    host = host_header.strip().lower()
    return host_is_loopback(host) and origin.strip().lower() == f"http://{host}"


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
    """ASGI middleware: refuse other users' processes, foreign Host headers and Origins
    before anything runs.

    ``csrf_token`` is this run's dashboard token: requests from the API's own
    origin that change state must present it (``None``: they are all refused).
    ``probe`` finds which peer lookup works here (``working_lookup``); it runs
    once, in a thread, at the first request, and its answer is kept for the
    guard's life: the netlink lookup then runs inline (tens of microseconds), the
    /proc one in a thread (milliseconds).
    """

    def __init__(
        self,
        app: ASGIApp,
        allowed_origins: Iterable[str],
        csrf_token: str | None = None,
        probe: Callable[[], Lookup | None] = working_lookup,
    ) -> None:
        self.app = app
        self.allowed = frozenset(o.rstrip("/") for o in allowed_origins)
        self._csrf = csrf_token.encode() if csrf_token else None
        self._uid = os.geteuid()
        self._probe = probe
        self._lookup: Lookup | None = None
        self._probed = False
        self._probing = trio.Lock()

    def __repr__(self) -> str:
        return f"BrowserGuard(allowed={sorted(self.allowed)!r}, csrf='***')"

    def _csrf_ok(self, presented: str | None) -> bool:
        """Whether ``presented`` is this run's CSRF token (compared in constant time)."""
        if self._csrf is None or not presented:
            return False
        return hmac.compare_digest(presented.strip().encode("latin-1"), self._csrf)

    async def _peer_problem(self, scope: Scope) -> str | None:
        """Why the process at the other end of this request's connection may not use the
        API (``None``: it may, or there is no way to tell here)."""
        client, server = scope.get("client"), scope.get("server")
        if not client or not server or _ip_or_none(client[0]) is None:
            return None  # not a TCP peer (a unix socket, an in-process client)
        if not self._probed:
            async with self._probing:
                if not self._probed:
                    self._lookup = await trio.to_thread.run_sync(self._probe)
                    self._probed = True
                    if self._lookup is None:
                        log.warning(PEER_CHECKS_UNAVAILABLE)
        lookup = self._lookup
        if lookup is None:
            return None
        try:
            if lookup is diag_lookup:
                uid = lookup(client, server)
            else:
                uid = await trio.to_thread.run_sync(lookup, client, server)
        except (OSError, ValueError) as exc:
            log.warning("cannot check the sender of a control API request: %s", exc)
            return PEER_UNCHECKED.format(ours=self._uid, problem=exc)
        if uid is None:
            return PEER_CLOSED.format(ours=self._uid) if _on_this_machine(client, server) else None
        if uid in (self._uid, 0):
            return None
        return PEER_REFUSED.format(ours=self._uid, theirs=uid)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not host_is_loopback(host):
            await _refuse(scope, send, 403, HOST_REFUSED)
            return
        problem = await self._peer_problem(scope)
        if problem is not None:
            await _refuse(scope, send, 403, problem)
            return
        origin = headers.get("origin")
        if origin is None:
            if loaded_for_another_site(headers):
                await _refuse(scope, send, 403, SITE_REFUSED)
                return
        elif is_own_origin(origin, host):
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


def _ip_or_none(host: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address, or ``None`` when it is not one (an in-process client's name)."""
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return None


def _on_this_machine(client: Address, server: Address) -> bool:
    """Whether the peer at ``client`` is a process of this machine: a loopback address, or the
    server's own (what a local process connects from to an address it serves on)."""
    peer, own = _ip_or_none(client[0]), _ip_or_none(server[0])
    if peer is None:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    if isinstance(own, ipaddress.IPv6Address) and own.ipv4_mapped is not None:
        own = own.ipv4_mapped
    return peer.is_loopback or peer == own
