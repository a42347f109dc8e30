"""A lean client WebSocket for the tunnel: wsproto over a trio stream, no tasks of its own.

trio-websocket runs a reader task per connection that hands each message to the
caller through a channel, and every send takes a lock and then the stream, each
a schedule point. The tunnel reads in one task and has one writer, so it needs
neither: ``WsLink`` reads, parses and answers control frames in the task that
calls ``get_message``, and ``write`` puts a message on the socket at once,
from synchronous code, when nothing is waiting to go before it (a plain
``os.write`` on the non-blocking socket; with TLS or a full socket buffer the
bytes queue for ``flush_forever``, the owner's writer task). The figures that
chose this are in the README ("The tunnel's WebSocket").

What the link keeps of trio-websocket is its vocabulary: the same exceptions
(``ConnectionRejected``, ``ConnectionTimeout``, ``HandshakeError``,
``ConnectionClosed`` with a ``CloseReason``), the same close codes (1006 for a
connection that ended without a close frame, 1009 for a message over the
limit) and the same closing handshake, so the tunnel's classification of
failures reads the same whichever link carried it.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
)
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from .wsclient import WsTarget, close_politely, open_stream, parse_ws_url

#: Bytes asked of the stream per read.
RECEIVE_SIZE: Final = 65536
#: Messages handed out in a row before ``get_message`` lets other tasks run.
MESSAGES_PER_CHECKPOINT: Final = 64
#: Close code of a connection that ended without a close frame (as trio-websocket says).
ABNORMAL: Final = 1006
#: Close code for a message over the size limit.
TOO_BIG: Final = 1009


class WsLink:
    """One open client WebSocket; made by ``open_link``.

    One task reads (``get_message``); ``write`` never blocks and may be called from
    any task; ``flush_forever`` (one task) writes what ``write`` could not.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        ws: WSConnection,
        max_message_size: int,
        early: list[Event],
    ) -> None:
        self._stream = stream
        self._ws = ws
        self._max = max_message_size
        self._fd = _socket_fd(stream)
        self._messages: deque[str | bytes] = deque()
        self._parts: list[str | bytes] = []
        self._size = 0
        self._backlog = bytearray()
        self._flushing = False
        self._queued = trio.Event()
        self._drained = trio.Event()
        self._drained.set()
        self._write_error: OSError | None = None
        self._close_reason: CloseReason | None = None
        self._peer_closed = trio.Event()
        self._pings: dict[bytes, trio.Event] = {}
        self._ping_ids = itertools.count(1)
        self._in_a_row = 0
        #: Called (synchronously) when the backlog has been written out.
        self.on_drained: Callable[[], None] = lambda: None
        self._handle(early)

    # -- state --------------------------------------------------------------------------

    @property
    def closed(self) -> CloseReason | None:
        """Why the link closed, or ``None`` while it is open."""
        return self._close_reason

    @property
    def backlog(self) -> int:
        """Bytes written but not yet on the socket."""
        return len(self._backlog)

    # -- reading ------------------------------------------------------------------------

    async def get_message(self) -> str | bytes:
        """The next message; control frames are answered on the way.

        Raises:
            ConnectionClosed: the link closed (messages that arrived before the
                close are handed out first).
        """
        while not self._messages:
            self._in_a_row = 0
            if self._close_reason is not None:
                raise ConnectionClosed(self._close_reason)
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._abort()
                continue
            try:
                self._ws.receive_data(_bytes(data))
            except RemoteProtocolError as exc:
                self._fail_protocol(exc)
                continue
            self._handle(self._events())
        self._in_a_row += 1
        if self._in_a_row >= MESSAGES_PER_CHECKPOINT:
            self._in_a_row = 0
            await trio.lowlevel.checkpoint()
        return self._messages.popleft()

    def _events(self) -> list[Event]:
        try:
            return list(self._ws.events())
        except RemoteProtocolError as exc:
            self._fail_protocol(exc)
            return []

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Message):
                self._on_message(event)
            elif isinstance(event, Ping):
                self._send_event(event.response())
            elif isinstance(event, Pong):
                waiter = self._pings.pop(bytes(event.payload), None)
                if waiter is not None:
                    waiter.set()
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    if self._close_reason is None:
                        self._close_reason = CloseReason(event.code, event.reason or None)
                    self._send_event(event.response())
                elif self._close_reason is None:
                    self._close_reason = CloseReason(event.code, event.reason or None)
                self._peer_closed.set()

    def _on_message(self, event: Message) -> None:  # type: ignore[type-arg]
        if self._close_reason is not None:
            return
        self._size += len(event.data)
        self._parts.append(event.data)
        if self._size > self._max:
            problem = f"Exceeded maximum message size: {self._max} bytes"
            self._parts, self._size = [], 0
            self._close_reason = CloseReason(TOO_BIG, problem)
            self._send_event(CloseConnection(code=TOO_BIG, reason=problem))
            return
        if event.message_finished:
            parts, self._parts, self._size = self._parts, [], 0
            if isinstance(event, BytesMessage):
                self._messages.append(parts[0] if len(parts) == 1 else b"".join(parts))  # type: ignore[arg-type]
            else:
                self._messages.append(parts[0] if len(parts) == 1 else "".join(parts))  # type: ignore[arg-type]

    def _fail_protocol(self, exc: RemoteProtocolError) -> None:
        hint = exc.event_hint
        if isinstance(hint, CloseConnection) and self._ws.state is ConnectionState.OPEN:
            self._send_event(hint)
            reason = CloseReason(hint.code, hint.reason or None)
        else:
            reason = CloseReason(ABNORMAL, None)
        if self._close_reason is None:
            self._close_reason = reason
        self._peer_closed.set()

    def _abort(self) -> None:
        """The stream ended without a close frame."""
        if self._close_reason is None:
            self._close_reason = CloseReason(ABNORMAL, None)
        self._peer_closed.set()
        # Later writes go nowhere; the reader reports the end (the flusher stays quiet).
        self._write_error = self._write_error or BrokenPipeError(errno.EPIPE, "connection ended")

    # -- writing ------------------------------------------------------------------------

    def write(self, message: str | bytes) -> None:
        """Send one message now, or queue it for ``flush_forever`` (never blocks).

        Raises:
            ConnectionClosed: the link is closed or closing.
        """
        if self._close_reason is not None:
            raise ConnectionClosed(self._close_reason)
        if isinstance(message, str):
            self._put(self._ws.send(TextMessage(data=message)))
        else:
            self._put(self._ws.send(BytesMessage(data=message)))

    def write_many(self, messages: list[str]) -> None:
        """``write`` each, in one write to the socket."""
        if self._close_reason is not None:
            raise ConnectionClosed(self._close_reason)
        send = self._ws.send
        self._put(b"".join(send(TextMessage(data=m)) for m in messages))

    def _send_event(self, event: Event) -> None:
        if self._ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return
        try:
            self._put(self._ws.send(event))
        except RemoteProtocolError:  # the state moved on meanwhile: nothing to answer
            pass

    def _put(self, data: bytes) -> None:
        if self._write_error is not None:
            return  # the link is broken: the reader and the flusher report it
        if self._backlog or self._flushing or self._fd is None:
            self._backlog += data
            self._queue()
            return
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._write_error = exc
            self._queued.set()
            return
        if sent < len(data):
            self._backlog += data[sent:] if sent else data
            self._queue()

    def _queue(self) -> None:
        if self._drained.is_set():
            self._drained = trio.Event()
        self._queued.set()

    async def flush_forever(self) -> None:
        """Write the backlog as it comes, until the stream breaks (then raise).

        Raises:
            ConnectionClosed: the stream broke.
        """
        while True:
            await self._queued.wait()
            self._queued = trio.Event()
            await self._flush()

    async def _flush(self) -> None:
        self._flushing = True  # what is written meanwhile queues behind this
        try:
            while self._backlog and self._write_error is None:
                data = bytes(self._backlog)
                self._backlog.clear()
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._write_error = BrokenPipeError(errno.EPIPE, "connection ended")
        finally:
            self._flushing = False
        if self._write_error is not None:
            self._abort()
            assert self._close_reason is not None
            raise ConnectionClosed(self._close_reason)
        self._drained.set()
        self.on_drained()

    async def ping(self) -> None:
        """Send a ping and wait for its pong (the reader must be running).

        Raises:
            ConnectionClosed: the link is closed.
        """
        if self._close_reason is not None:
            raise ConnectionClosed(self._close_reason)
        payload = b"edge-%d" % next(self._ping_ids)
        waiter = self._pings[payload] = trio.Event()
        self._send_event(Ping(payload=payload))
        await waiter.wait()

    def send_close(self, code: int = 1000, reason: str | None = None) -> None:
        """Start the closing handshake (the reader then sees the peer's reply and ends)."""
        if self._ws.state is ConnectionState.OPEN:
            if self._close_reason is None:
                self._close_reason = CloseReason(1000, None)  # as trio-websocket says locally
            self._send_event(CloseConnection(code=code, reason=reason))

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close politely: send the close frame, write the backlog, read until the peer's
        close or the end of the stream. Only with no other task reading."""
        self.send_close(code, reason)
        try:
            await self._flush()
            while not self._peer_closed.is_set():
                try:
                    data = await self._stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    break
                try:
                    self._ws.receive_data(_bytes(data))
                except RemoteProtocolError:
                    break
                self._handle(self._events())
        except ConnectionClosed:
            pass


def _socket_fd(stream: trio.abc.Stream) -> int | None:
    """The socket's descriptor when bytes may be written to it directly (plain TCP)."""
    if isinstance(stream, trio.SocketStream):
        return stream.socket.fileno()
    return None


@asynccontextmanager
async def open_link(
    url: str,
    *,
    headers: list[tuple[bytes, bytes]],
    connect_timeout: float,
    max_message_size: int,
) -> AsyncIterator[WsLink]:
    """Connect, upgrade, yield the link; close it politely and its socket on the way out.

    Raises:
        OSError: the TCP or TLS connection failed.
        trio_websocket.HandshakeError: the upgrade failed or timed out (a rejection is
            a ``ConnectionRejected`` carrying the HTTP status).
    """
    target = parse_ws_url(url)
    stream = await open_stream(target, connect_timeout)
    try:
        with trio.move_on_after(connect_timeout) as upgrading:
            link = await _upgrade(stream, target, headers, max_message_size)
        if upgrading.cancelled_caught:
            raise ConnectionTimeout
        try:
            yield link
        finally:
            await close_politely(link.aclose)
    finally:
        await trio.aclose_forcefully(stream)


async def _upgrade(
    stream: trio.abc.Stream,
    target: WsTarget,
    headers: list[tuple[bytes, bytes]],
    max_message_size: int,
) -> WsLink:
    ws = WSConnection(ConnectionType.CLIENT)
    request = Request(host=target.host_header, target=target.resource, extra_headers=headers)
    await stream.send_all(ws.send(request))
    rejected: RejectConnection | None = None
    body = bytearray()
    while True:
        try:
            data = await stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            if rejected is not None:
                raise ConnectionRejected(rejected.status_code, tuple(rejected.headers), bytes(body))
            raise HandshakeError("the connection ended during the WebSocket upgrade")
        try:
            ws.receive_data(_bytes(data))
            events = list(ws.events())
        except RemoteProtocolError as exc:
            raise HandshakeError(f"bad WebSocket upgrade answer: {exc}") from None
        for i, event in enumerate(events):
            if isinstance(event, AcceptConnection):
                return WsLink(stream, ws, max_message_size, events[i + 1 :])
            if isinstance(event, RejectConnection):
                rejected = event
                if not event.has_body:
                    raise ConnectionRejected(event.status_code, tuple(event.headers), None)
            elif isinstance(event, RejectData):
                body += event.data
                if event.body_finished and rejected is not None:
                    raise ConnectionRejected(
                        rejected.status_code, tuple(rejected.headers), bytes(body)
                    )


def _bytes(data: bytes | bytearray) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)
