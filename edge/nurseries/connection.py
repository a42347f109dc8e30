"""One connection of the tunnel, from the WebSocket upgrade until it breaks.

Inside a connection::

    reader     socket → parse_frame → hooks.on_frame (or a pong to the outbox),
               in one task: the link (``edge.net.wslink``) parses the WebSocket
               frames and answers its control frames there
    pump       the outbox's ``on_queued``: whatever queues a frame (a result, a
               pong) writes it to the socket then and there, unless the link
               holds a backlog; no task switch between a result and the socket
    flusher    the one task that waits for the socket, when the link has a
               backlog (a full socket buffer, TLS); it pumps again once drained
    heartbeat  a WebSocket ping CONFIRM_DELAY after results went out (one ping
               confirms every result sent before it), else every HEARTBEAT_INTERVAL;
               HEARTBEAT_TIMEOUT to answer
    closer     closes the socket politely (code 1001) once edge asks

The handshake (see docs/protocol.md) runs in the connection's own task before
the pump is attached, so frames queued meanwhile wait for it. A connection
always ends in an exception (a drop, a refused token, a cancel); however it
ends, unconfirmed results go back to the outbox and its urgent frames go.

The tunnel (``edge.nurseries.tunnel``) opens one ``Connection`` per attempt and
keeps the state that outlives it; the connection reports through
``ConnectionHooks`` and never imports the tunnel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import trio
import trio_websocket

from ..errors import ConnectionLost, HandshakeFailed, Unauthorized, first_leaf
from ..net.wslink import WsLink, open_link
from ..protocol import (
    MAX_FRAME_CHARS,
    ApprovedTools,
    Connected,
    Frame,
    Ping,
    ProtocolError,
    encode,
    invalid_request,
    parse_frame,
    pong,
)
from ..secret import Secret
from .failures import closed
from .outbox import Outbox

log = logging.getLogger(__name__)

#: Seconds between heartbeats on an idle or busy connection alike.
HEARTBEAT_INTERVAL: Final = 30.0
#: Seconds after a result went out before the ping that confirms it (and all sent meanwhile).
CONFIRM_DELAY: Final = 0.25
#: Seconds a heartbeat ping may wait for its pong before the connection counts as lost.
HEARTBEAT_TIMEOUT: Final = 10.0
#: Seconds the cloud has for ``connected`` and, after the report, ``approved_tools``.
HANDSHAKE_TIMEOUT: Final = 10.0
#: Seconds for the TCP + TLS + HTTP upgrade.
CONNECT_TIMEOUT: Final = 10.0
#: Bytes the link may hold for the socket before the pump leaves frames in the outbox.
MAX_BACKLOG: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Pacing:
    """How a connection paces itself; the defaults are the module constants."""

    heartbeat_interval: float = HEARTBEAT_INTERVAL
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT
    confirm_delay: float = CONFIRM_DELAY
    handshake_timeout: float = HANDSHAKE_TIMEOUT


@dataclass(frozen=True, slots=True)
class ConnectionHooks:
    """How a connection reports to the tunnel; every hook is synchronous and quick.

    Attributes:
        capability_report: builds the report sent in the handshake.
        on_connected: the cloud's ``connected`` frame (it never reaches ``on_frame``).
        on_frame: every other frame but pings and unparsable ones, in arrival order.
        on_ready: the handshake is complete; reader, writer and heartbeat start next.
        send_result: queues the error result for a bad frame that carries an id.
        confirm_now: the event that, once set, sends the confirming ping at once;
            asked for anew before every ping (the tunnel replaces it after a drain).
    """

    capability_report: Callable[[], Mapping[str, Any]]
    on_connected: Callable[[Connected], None]
    on_frame: Callable[[Frame], None]
    on_ready: Callable[[], None]
    send_result: Callable[[str | int, Mapping[str, Any]], None]
    confirm_now: Callable[[], trio.Event]


class Connection:
    """One attempt's WebSocket to the cloud; ``run`` it once.

    Args:
        outbox: what to send; told what was sent, confirmed, and lost with the socket.
        hooks: how the connection reports.
        pacing: heartbeat and handshake timing.
        close_requested: once set, the socket is closed with code 1001.
    """

    def __init__(
        self,
        outbox: Outbox,
        hooks: ConnectionHooks,
        pacing: Pacing,
        close_requested: trio.Event,
    ) -> None:
        self._outbox = outbox
        self._hooks = hooks
        self._pacing = pacing
        self._close_requested = close_requested

    async def run(self, url: str, token: Secret) -> None:
        """Connect, shake hands and serve until the connection breaks (always an exception).

        Raises:
            Unauthorized: HTTP 401 or 403 on the WebSocket upgrade.
        """
        try:
            await self._connect(url, token)
        finally:
            self._outbox.connection_lost()

    async def _connect(self, url: str, token: Secret) -> None:
        try:
            await self._serve(url, token)
        except* trio_websocket.ConnectionRejected as group:
            status = getattr(first_leaf(group), "status_code", None)
            if status in (401, 403):
                raise Unauthorized(f"HTTP {status} on the WebSocket upgrade") from None
            raise

    async def _serve(self, url: str, token: Secret) -> None:
        headers = [(b"Authorization", b"Bearer " + token.reveal().encode())]
        async with open_link(
            url,
            headers=headers,
            connect_timeout=CONNECT_TIMEOUT,
            # Twice the protocol limit: a frame between the two gets a clear error
            # result from parse_frame; only a larger one closes the socket (1009).
            max_message_size=2 * MAX_FRAME_CHARS,
        ) as link:
            await self._handshake(link)
            self._hooks.on_ready()
            try:
                async with trio.open_nursery() as conn:
                    conn.start_soon(self._reader, link)
                    conn.start_soon(self._flusher, link)
                    conn.start_soon(self._heartbeat, link)
                    conn.start_soon(self._close_when_asked, link)
                    self._attach(link)
            finally:
                self._outbox.on_queued = None
                self._outbox.held = lambda: 0
                link.on_drained = lambda: None

    async def _handshake(self, link: WsLink) -> None:
        limit = self._pacing.handshake_timeout
        with trio.move_on_after(limit) as waiting:
            while not isinstance(frame := parse_frame(await link.get_message()), Connected):
                if isinstance(frame, ProtocolError):
                    raise HandshakeFailed(f"bad first frame from the cloud: {frame.message}")
                self._dispatch(frame)
            self._hooks.on_connected(frame)
        if waiting.cancelled_caught:
            raise HandshakeFailed(f"the cloud sent no 'connected' within {limit:g} s")
        link.write(encode(self._hooks.capability_report()))
        # The cloud answers the report with ``approved_tools``. A cloud that sends
        # something else first (a ping, a call) is served with an empty approval, as
        # the older bridge did: that frame is answered now (a call with "not
        # approved"), and the approval applies whenever it arrives. Silence fails.
        with trio.move_on_after(limit) as waiting:
            frame = parse_frame(await link.get_message())
        if waiting.cancelled_caught:
            raise HandshakeFailed(f"the cloud sent no 'approved_tools' within {limit:g} s")
        if not isinstance(frame, ApprovedTools):
            log.info(
                "tunnel: the cloud sent %s before 'approved_tools': going on with no tool "
                "approved until it comes",
                _kind(frame),
            )
        self._dispatch(frame)

    def _dispatch(self, frame: Frame) -> None:
        if isinstance(frame, Ping):
            self._outbox.put_urgent(encode(pong()))
        elif isinstance(frame, ProtocolError):
            log.warning("tunnel: %s", frame.message)
            if frame.id is not None:
                self._hooks.send_result(frame.id, {"error": frame.message})
            else:
                self._outbox.put_urgent(encode(invalid_request(frame.message)))
        else:
            self._hooks.on_frame(frame)

    def _attach(self, link: WsLink) -> None:
        """From now on whatever is queued goes to the socket at once (and what waits, now)."""

        def pump() -> None:
            outbox = self._outbox
            batch: list[str] = []
            while link.backlog < MAX_BACKLOG and (text := outbox.take()) is not None:
                batch.append(text)
                if len(batch) >= 64:
                    link.write_many(batch)
                    batch = []
            if batch:
                link.write_many(batch)

        def safe_pump() -> None:
            # Called from whatever queued a frame (a worker's reply, the reader's pong):
            # nothing may escape into it. What was taken is unconfirmed, so it goes again.
            if link.closed is not None:
                return
            try:
                pump()
            except trio_websocket.ConnectionClosed:
                pass  # the reader or the flusher ends the connection
            except Exception:
                log.exception("tunnel: writing to the socket failed; this connection ends")
                self._outbox.on_queued = None
                link.send_close(1011, "edge failed to write")

        self._outbox.on_queued = safe_pump
        self._outbox.held = lambda: link.backlog
        link.on_drained = safe_pump
        safe_pump()

    async def _reader(self, link: WsLink) -> None:
        while True:
            try:
                message = await link.get_message()
            except trio_websocket.ConnectionClosed as exc:
                raise closed(exc) from None
            self._dispatch(parse_frame(message))

    async def _flusher(self, link: WsLink) -> None:
        try:
            await link.flush_forever()
        except trio_websocket.ConnectionClosed as exc:
            raise closed(exc) from None

    async def _close_when_asked(self, link: WsLink) -> None:
        await self._close_requested.wait()
        # The reader keeps running, so the cloud's close reply is read and the
        # socket is shut down cleanly; the reader then ends the connection.
        self._outbox.on_queued = None
        link.send_close(1001, "edge is shutting down")

    async def _heartbeat(self, link: WsLink) -> None:
        pacing = self._pacing
        while True:
            with trio.move_on_after(pacing.heartbeat_interval):
                await self._outbox.wait_unconfirmed()
                with trio.move_on_after(pacing.confirm_delay):
                    await self._hooks.confirm_now().wait()
            mark = self._outbox.mark()
            with trio.move_on_after(pacing.heartbeat_timeout) as scope:
                try:
                    await link.ping()
                except trio_websocket.ConnectionClosed as exc:
                    raise closed(exc) from None
            if scope.cancelled_caught:
                raise ConnectionLost(f"heartbeat unanswered for {pacing.heartbeat_timeout:g} s")
            self._outbox.confirm(mark)


def _kind(frame: Frame) -> str:
    """What a frame is, for a log line: ``a Ping frame``, ``a ToolCall frame``."""
    return f"a {type(frame).__name__} frame"
