"""Open a client WebSocket over a stream edge owns, so every exit closes the socket.

``trio_websocket.open_websocket_url`` leaves the TCP socket open when the server
rejects the upgrade (the rejection is raised from its reader task); edge opens
the stream itself, hands it to ``wrap_client_stream`` and closes it in a
``finally``, whatever ended the connection.
"""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import trio
import trio_websocket

#: Seconds a closing handshake may take before the socket is simply closed.
CLOSE_TIMEOUT: Final = 1.0
#: Seconds to spend on the close frame when the connection is being cancelled.
CLOSE_WHILE_CANCELLED: Final = 0.05


@dataclass(frozen=True, slots=True)
class WsTarget:
    host: str
    port: int
    resource: str
    tls: bool

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_ws_url(url: str) -> WsTarget:
    """Split a ``ws://`` or ``wss://`` URL; ``ValueError`` names what is wrong."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    tls = parts.scheme == "wss"
    port = parts.port or (443 if tls else 80)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return WsTarget(parts.hostname, port, resource, tls)


async def open_stream(
    target: WsTarget, connect_timeout: float
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    """The TCP (and, for ``wss://``, TLS) stream to ``target``.

    Raises:
        OSError: the connection failed.
        trio_websocket.ConnectionTimeout: not connected within ``connect_timeout``.
    """
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
    with trio.move_on_after(connect_timeout) as connecting:
        if target.tls:
            stream = await trio.open_ssl_over_tcp_stream(
                target.host,
                target.port,
                ssl_context=ssl.create_default_context(),
                https_compatible=True,
            )
        else:
            stream = await trio.open_tcp_stream(target.host, target.port)
    if connecting.cancelled_caught:
        raise trio_websocket.ConnectionTimeout
    return stream


async def close_politely(aclose: Callable[[], Awaitable[None]]) -> None:
    """Run a WebSocket's closing handshake, shielded and bounded: ``CLOSE_TIMEOUT``, or
    ``CLOSE_WHILE_CANCELLED`` when the caller is being cancelled (send the frame, go)."""
    cancelled = trio.current_effective_deadline() == float("-inf")
    wait = CLOSE_WHILE_CANCELLED if cancelled else CLOSE_TIMEOUT
    with trio.CancelScope(shield=True), trio.move_on_after(wait):
        await aclose()


@asynccontextmanager
async def open_ws(
    url: str,
    *,
    headers: list[tuple[bytes, bytes]],
    connect_timeout: float,
    max_message_size: int,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """Connect, upgrade, yield the connection; close it and its socket on the way out.

    Raises:
        OSError: the TCP or TLS connection failed.
        trio_websocket.HandshakeError: the upgrade failed or timed out (a
            rejection is a ``ConnectionRejected`` carrying the HTTP status).
    """
    target = parse_ws_url(url)
    stream = await open_stream(target, connect_timeout)
    try:
        async with trio.open_nursery() as nursery:
            with trio.move_on_after(connect_timeout) as upgrading:
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    target.host_header,
                    target.resource,
                    extra_headers=headers,
                    max_message_size=max_message_size,
                )
            if upgrading.cancelled_caught:
                raise trio_websocket.ConnectionTimeout
            try:
                yield ws
            finally:
                # When we are being cancelled, the library's reader task is too and
                # no close reply can be read: send the close frame, don't wait.
                await close_politely(ws.aclose)
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)
