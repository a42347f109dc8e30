"""The WebSocket tunnel to the cloud.

One task per connection attempt; inside a connection::

    reader     socket → parse_frame → hooks.on_frame (or a pong to the outbox)
    writer     the only task that sends once the handshake is done; fed by the outbox
    heartbeat  a WebSocket ping CONFIRM_DELAY after results went out (one ping
               confirms every result sent before it), else every HEARTBEAT_INTERVAL;
               HEARTBEAT_TIMEOUT to answer

The handshake (see docs/protocol.md) happens in the attempt task itself before
the writer starts, so there is still exactly one sender at any time. The tunnel
reports its status and every frame through the hooks its owner gives it.
Results go through the journal (``edge.nurseries.journal``; its writer task
runs beside the connections): committed there before they reach the outbox,
kept across reconnects and restarts until a pong confirms them.

A rejected token (HTTP 401/403 on the upgrade, close code 4401 or 1008) stops
the retries and leaves the tunnel ``unauthorized`` until ``activate()`` brings a
new token.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import trio
import trio_websocket

from ..errors import ConnectionLost, HandshakeFailed, Unauthorized, first_leaf
from ..net.backoff import Backoff
from ..net.wsclient import open_ws, parse_ws_url
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
    progress_notification,
)
from ..secret import Secret
from ..watch import Watched
from .failures import classify, closed
from .journal import Journal
from .outbox import encode_result

log = logging.getLogger(__name__)

#: Frames waiting to go out above which progress notifications are dropped.
MAX_PROGRESS: Final = 256

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
#: Seconds a connection must have stayed up for the backoff to start over.
STABLE_AFTER: Final = 5.0


class TunnelStatus(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True, slots=True)
class TunnelHooks:
    """How the tunnel reports to its owner; every hook is synchronous and quick.

    Attributes:
        capability_report: builds the report sent at every handshake.
        on_frame: approved tools, tool calls and cancels, in arrival order.
        on_status: every status change, with a reason when there is one.
    """

    capability_report: Callable[[], Mapping[str, Any]]
    on_frame: Callable[[Frame], None]
    on_status: Callable[[TunnelStatus, str | None], None] = lambda status, reason: None


@dataclass(frozen=True, slots=True)
class TunnelOptions:
    """How the tunnel paces itself; the defaults are the module constants (tests shorten them)."""

    backoff: Backoff | None = None
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT
    confirm_delay: float = CONFIRM_DELAY
    handshake_timeout: float = HANDSHAKE_TIMEOUT


@dataclass(frozen=True, slots=True)
class _Credentials:
    url: str
    token: Secret


class Tunnel:
    """Handle on the tunnel; made by ``serve_tunnel``, owned by the caller."""

    def __init__(
        self,
        hooks: TunnelHooks,
        options: TunnelOptions | None = None,
        *,
        journal: Journal | None = None,
    ) -> None:
        opts = options or TunnelOptions()
        self._hooks = hooks
        self._backoff = opts.backoff or Backoff()
        self._heartbeat_interval = opts.heartbeat_interval
        self._heartbeat_timeout = opts.heartbeat_timeout
        self._handshake_timeout = opts.handshake_timeout
        self._confirm_delay = opts.confirm_delay
        self.journal = journal if journal is not None else Journal()
        self.outbox = self.journal.outbox
        self._confirm_now = trio.Event()
        self._creds: _Credentials | None = None
        self._creds_changed = trio.Event()
        self._session_scope: trio.CancelScope | None = None
        self.state = Watched(TunnelStatus.DISCONNECTED)
        self.reason: str | None = None
        self.user_id: str | None = None
        self.connected_since: float | None = None
        self.connections = 0
        self._last_problem: str | None = None
        self._handshake_at: float | None = None
        self._close_requested = trio.Event()

    # -- what the owner calls -------------------------------------------------

    @property
    def status(self) -> TunnelStatus:
        """The current status (``state`` holds the same value, to wait on)."""
        return self.state.value

    @property
    def url(self) -> str | None:
        return None if self._creds is None else self._creds.url

    @property
    def token(self) -> Secret | None:
        """The token in use, for other links to the same cloud (the ASR uplink)."""
        return None if self._creds is None else self._creds.token

    def activate(self, token: str | Secret, url: str) -> None:
        """Use these credentials from now on, reconnecting if connected.

        Raises:
            ValueError: ``url`` is not a usable ws:// or wss:// URL.
        """
        parse_ws_url(url)
        secret = token if isinstance(token, Secret) else Secret(token)
        self._creds = _Credentials(url, secret)
        self._close_requested = trio.Event()
        self._restart()

    def disconnect(self) -> None:
        """Drop the connection and forget the credentials; results stay in the outbox."""
        self._creds = None
        self._restart()

    def accepted(self, request_id: str | int, tool: str) -> None:
        """A tool call was accepted for running: journaled until its result is."""
        self.journal.accept(request_id, tool)

    def send_result(self, request_id: str | int, result: Mapping[str, Any]) -> None:
        """Queue a tool result; it is journaled, then sent now or after the next handshake.

        A result JSON cannot carry becomes an error result saying why.
        """
        self.journal.put_result(request_id, encode_result(request_id, result))

    def send_progress(
        self, request_id: str | int, done: float, total: float | None, message: str | None
    ) -> None:
        """Tell the cloud how a call is getting on; dropped when not connected or swamped."""
        if self.status is TunnelStatus.CONNECTED and self.outbox.urgent_backlog() < MAX_PROGRESS:
            frame = partial(progress_notification, request_id, done, total, message)
            self.outbox.put_urgent_frame(f"progress of call {request_id!r}", frame)

    def announce(self) -> None:
        """Send a fresh capability report on the live connection (tools changed)."""
        if self.status is TunnelStatus.CONNECTED:
            self.outbox.put_urgent_frame("capability report", self._hooks.capability_report)

    async def drain(self) -> None:
        """Return once every result is journaled, sent, and confirmed (bound the wait yourself).

        The confirming ping goes out at once, without the usual coalescing delay.
        """
        await self.journal.wait_released()
        await self.outbox.wait_sent()
        self._confirm_now.set()
        try:
            await self.outbox.wait_confirmed()
        finally:
            self._confirm_now = trio.Event()

    def info(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "reason": self.reason,
            "url": self.url,
            "userId": self.user_id,
            "connectedSince": self.connected_since,
            "connections": self.connections,
            "outbox": len(self.journal),
            "droppedResults": self.outbox.dropped,
            "resent": self.outbox.resent,
            "journal": "store" if self.journal.durable else "memory",
        }

    # -- the service ------------------------------------------------------------

    def _restart(self) -> None:
        if self._session_scope is not None:
            self._session_scope.cancel()
        self._creds_changed.set()

    def _set_status(self, status: TunnelStatus, reason: str | None = None) -> None:
        if status is self.status and reason == self.reason:
            return
        self.reason = reason
        if status is not TunnelStatus.CONNECTED:
            self.connected_since = None
        self.state.value = status
        self._hooks.on_status(status, reason)

    async def run(self, *, task_status: trio.TaskStatus[Tunnel] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.journal.run)
                task_status.started(self)
                await self._serve()
        finally:
            self._set_status(TunnelStatus.DISCONNECTED, "stopped")
            await self.journal.close()

    async def _serve(self) -> None:
        while True:
            creds = self._creds
            if creds is None:
                self._set_status(TunnelStatus.DISCONNECTED, None)
                await self._wait_for_credentials()
                continue
            with trio.CancelScope() as scope:
                self._session_scope = scope
                await self._session(creds)
                # _session returns only when the token was refused or edge closed.
                await self._wait_for_credentials()
            self._session_scope = None

    async def _wait_for_credentials(self) -> None:
        if self._creds_changed.is_set():
            self._creds_changed = trio.Event()
        await self._creds_changed.wait()

    async def _session(self, creds: _Credentials) -> None:
        self._creds_changed = trio.Event()
        self._backoff.failures = 0
        while True:
            self._set_status(TunnelStatus.CONNECTING, self.reason)
            self._handshake_at = None
            try:
                await self._attempt(creds)
            except BaseException as exc:
                kind, message = classify(exc)
                if self._close_requested.is_set():
                    log.info("tunnel: closed")
                    self._set_status(TunnelStatus.DISCONNECTED, "closed by edge")
                    return
                if kind == "unauthorized":
                    log.warning(
                        "tunnel: the cloud refused the token (%s); waiting for a new one", message
                    )
                    self._set_status(TunnelStatus.UNAUTHORIZED, message)
                    return
                if kind == "bug":
                    log.error("tunnel: unexpected error, reconnecting", exc_info=exc)
                self._note_problem(message)
                self._set_status(TunnelStatus.CONNECTING, message)
            if self._was_stable():
                self._backoff.reset()
            delay = self._backoff.next_delay()
            if delay > 0:
                log.debug("tunnel: next attempt in %.1f s", delay)
            await trio.sleep(delay)

    def _was_stable(self) -> bool:
        """Whether the last attempt completed its handshake and stayed up ``STABLE_AFTER``."""
        at = self._handshake_at
        return at is not None and trio.current_time() - at >= STABLE_AFTER

    def _note_problem(self, message: str) -> None:
        if message != self._last_problem:
            log.warning("tunnel: %s; retrying with backoff", message)
            self._last_problem = message
        else:
            log.debug("tunnel: %s (again)", message)

    async def _attempt(self, creds: _Credentials) -> None:
        """One connection, from the upgrade until it breaks (it always ends in an exception).

        However it ends (a drop, a refusal, ``activate``/``disconnect`` cancelling
        it), unconfirmed results go back to the outbox and its urgent frames go.
        """
        try:
            await self._connect(creds)
        finally:
            self.outbox.connection_lost()

    async def _connect(self, creds: _Credentials) -> None:
        try:
            await self._connection(creds)
        except* trio_websocket.ConnectionRejected as group:
            status = getattr(first_leaf(group), "status_code", None)
            if status in (401, 403):
                raise Unauthorized(f"HTTP {status} on the WebSocket upgrade") from None
            raise

    async def _connection(self, creds: _Credentials) -> None:
        headers = [(b"Authorization", b"Bearer " + creds.token.reveal().encode())]
        async with open_ws(
            creds.url,
            headers=headers,
            connect_timeout=CONNECT_TIMEOUT,
            # Twice the protocol limit: a frame between the two gets a clear error
            # result from parse_frame; only a larger one closes the socket (1009).
            max_message_size=2 * MAX_FRAME_CHARS,
        ) as ws:
            await self._handshake(ws)
            self._handshake_at = trio.current_time()
            self.connections += 1
            self._last_problem = None
            self._set_status(TunnelStatus.CONNECTED, None)
            self.connected_since = trio.current_time()
            log.info("tunnel: connected to %s as user %s", creds.url, self.user_id or "?")
            async with trio.open_nursery() as conn:
                conn.start_soon(self._reader, ws)
                conn.start_soon(self._writer, ws)
                conn.start_soon(self._heartbeat, ws)
                conn.start_soon(self._close_when_asked, ws)

    async def _handshake(self, ws: trio_websocket.WebSocketConnection) -> None:
        limit = self._handshake_timeout
        with trio.move_on_after(limit) as waiting:
            while not isinstance(frame := parse_frame(await ws.get_message()), Connected):
                if isinstance(frame, ProtocolError):
                    raise HandshakeFailed(f"bad first frame from the cloud: {frame.message}")
                self._dispatch(frame)
            self.user_id = frame.user_id or None
            self._hooks.on_frame(frame)
        if waiting.cancelled_caught:
            raise HandshakeFailed(f"the cloud sent no 'connected' within {limit:g} s")
        await ws.send_message(encode(self._hooks.capability_report()))
        with trio.move_on_after(limit) as waiting:
            while not isinstance(frame := parse_frame(await ws.get_message()), ApprovedTools):
                self._dispatch(frame)
            self._dispatch(frame)
        if waiting.cancelled_caught:
            raise HandshakeFailed(f"the cloud sent no 'approved_tools' within {limit:g} s")

    def _dispatch(self, frame: Frame) -> None:
        if isinstance(frame, Ping):
            self.outbox.put_urgent(encode(pong()))
        elif isinstance(frame, ProtocolError):
            log.warning("tunnel: %s", frame.message)
            if frame.id is not None:
                self.send_result(frame.id, {"error": frame.message})
            else:
                self.outbox.put_urgent(encode(invalid_request(frame.message)))
        else:
            self._hooks.on_frame(frame)

    async def _reader(self, ws: trio_websocket.WebSocketConnection) -> None:
        while True:
            try:
                message = await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                raise closed(exc) from None
            self._dispatch(parse_frame(message))

    async def _writer(self, ws: trio_websocket.WebSocketConnection) -> None:
        while True:
            is_result, text = await self.outbox.get()
            try:
                await ws.send_message(text)
            except BaseException:
                self.outbox.unsent(is_result, text)
                raise
            self.outbox.sent(is_result, text)

    async def _close_when_asked(self, ws: trio_websocket.WebSocketConnection) -> None:
        await self._close_requested.wait()
        # The reader keeps running, so the cloud's close reply is read and the
        # socket is shut down cleanly; the reader then ends the connection.
        await ws.aclose(1001, "edge is shutting down")

    async def close(self) -> None:
        """Close the live connection politely (code 1001); bound the wait yourself."""
        self._close_requested.set()
        await self.state.wait_for(lambda status: status is not TunnelStatus.CONNECTED)

    async def _heartbeat(self, ws: trio_websocket.WebSocketConnection) -> None:
        while True:
            with trio.move_on_after(self._heartbeat_interval):
                await self.outbox.wait_unconfirmed()
                with trio.move_on_after(self._confirm_delay):
                    await self._confirm_now.wait()
            mark = self.outbox.mark()
            with trio.move_on_after(self._heartbeat_timeout) as scope:
                await ws.ping()
            if scope.cancelled_caught:
                raise ConnectionLost(f"heartbeat unanswered for {self._heartbeat_timeout:g} s")
            self.outbox.confirm(mark)


async def serve_tunnel(
    hooks: TunnelHooks,
    options: TunnelOptions | None = None,
    *,
    journal: Journal | None = None,
    task_status: trio.TaskStatus[Tunnel] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a tunnel until cancelled; ``await nursery.start(serve_tunnel, hooks)`` gives its handle.

    It starts disconnected: ``activate(token, url)`` on the handle connects it.
    ``journal`` (recovered by the caller) keeps results across restarts; without
    one they are kept in memory.
    """
    tunnel = Tunnel(hooks, options, journal=journal)
    await tunnel.run(task_status=task_status)

