"""The WebSocket tunnel to the cloud: the handle its owner holds.

One task per connection attempt, one attempt at a time; each attempt is a
``Connection`` (``edge.nurseries.connection``: the handshake, then reader,
writer and heartbeat, see there). The handle keeps what outlives a connection:
the credentials, the status and its reason, the backoff between attempts, the
journal with its outbox. It reports its status and every frame through the
hooks its owner gives it. Results go through the journal
(``edge.nurseries.journal``; its writer task runs beside the connections):
committed there before they reach the outbox, kept across reconnects and
restarts until a pong confirms them.

A rejected token (HTTP 401/403 on the upgrade, close code 4401 or 1008) stops
the retries and leaves the tunnel ``unauthorized`` until ``activate()`` brings a
new token.

While the cloud cannot be reached the handle says so without flooding the log:
a warning for the first failure and whenever the reason changes, a line at
INFO for every other failed attempt, each with the time of the next one. Its
``info()`` tells how long the tunnel has been in its state (``since``), how
many attempts failed since the last good connection, when the next one goes,
and the last ``HISTORY`` status changes.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final

import trio

from ..net.backoff import Backoff
from ..net.wsclient import parse_ws_url
from ..protocol import Connected, Frame, encode, progress_notification
from ..secret import Secret
from ..watch import Watched
from .connection import (
    CONFIRM_DELAY,
    HANDSHAKE_TIMEOUT,
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TIMEOUT,
    Connection,
    ConnectionHooks,
    Pacing,
)
from .failures import classify
from .journal import Journal
from .outbox import encode_result

__all__ = [
    "CONFIRM_DELAY",
    "HANDSHAKE_TIMEOUT",
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_TIMEOUT",
    "HISTORY",
    "MAX_PROGRESS",
    "STABLE_AFTER",
    "Tunnel",
    "TunnelHooks",
    "TunnelOptions",
    "TunnelStatus",
    "serve_tunnel",
]

log = logging.getLogger(__name__)

#: Frames waiting to go out above which progress notifications are dropped.
MAX_PROGRESS: Final = 256

#: Seconds a connection must have stayed up for the backoff to start over.
STABLE_AFTER: Final = 5.0

#: Status changes ``Tunnel.info()`` keeps in its ``history``, the newest last.
HISTORY: Final = 50


def wall_clock(after: float = 0.0) -> str:
    """Local wall-clock time (``after`` seconds from now) as ISO 8601 with its UTC offset."""
    now = datetime.now().astimezone()
    return (now + timedelta(seconds=after)).isoformat(timespec="milliseconds")


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
        on_status: every change of status or reason: the status, the reason when
            there is one, and when (``wall_clock``: ISO 8601 with the offset).
    """

    capability_report: Callable[[], Mapping[str, Any]]
    on_frame: Callable[[Frame], None]
    on_status: Callable[[TunnelStatus, str | None, str], None] = lambda status, reason, at: None


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
        self._pacing = Pacing(
            heartbeat_interval=opts.heartbeat_interval,
            heartbeat_timeout=opts.heartbeat_timeout,
            confirm_delay=opts.confirm_delay,
            handshake_timeout=opts.handshake_timeout,
        )
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
        #: When the status last changed (``wall_clock``; a new reason alone does not count).
        self.since = wall_clock()
        #: Failed attempts since the last good connection (or the last new credentials).
        self.attempts = 0
        #: The last ``HISTORY`` changes of status or reason: ``{"status", "reason", "at"}``.
        self.history: deque[dict[str, Any]] = deque(
            [{"status": str(self.status), "reason": None, "at": self.since}], maxlen=HISTORY
        )
        self._retry_at: float | None = None  # trio time of the next attempt, while waiting
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

    def send_durable(self, key: str, frame: Mapping[str, Any]) -> None:
        """Queue any frame the cloud must get (an extension's request, notification or
        answer): journaled under ``key`` (unique per frame), then sent now or after the next
        handshake, as a result is, and kept until a pong confirms it. The receiver must
        tolerate a frame twice (sent, then resent after a drop before the confirmation).

        Raises:
            TypeError, ValueError: ``frame`` holds something JSON cannot carry.
        """
        self.journal.put_result(key, encode(frame))

    def send_now(self, what: str, frame: Mapping[str, Any]) -> bool:
        """Send a frame best effort (``what`` names it in the log): on the live connection
        only, ahead of results; ``False`` (dropped) when not connected or swamped."""
        if self.status is not TunnelStatus.CONNECTED:
            return False
        if self.outbox.urgent_backlog() >= MAX_PROGRESS:
            return False
        self.outbox.put_urgent_frame(what, lambda: frame)
        return True

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

    @property
    def retry_in(self) -> float | None:
        """Seconds until the next attempt while waiting for it, else ``None``."""
        if self._retry_at is None:
            return None
        return max(0.0, self._retry_at - trio.current_time())

    def info(self) -> dict[str, Any]:
        retry_in = self.retry_in
        return {
            "status": str(self.status),
            "reason": self.reason,
            "since": self.since,
            "url": self.url,
            "userId": self.user_id,
            "connectedSince": self.connected_since,
            "connections": self.connections,
            "attempts": self.attempts,
            "retryIn": None if retry_in is None else round(retry_in, 3),
            "nextRetryAt": None if retry_in is None else wall_clock(retry_in),
            "history": list(self.history),
            "outbox": len(self.journal),
            "droppedResults": self.outbox.dropped,
            "resent": self.outbox.resent,
            "journal": "store" if self.journal.durable else "memory",
        }

    # -- the service ------------------------------------------------------------

    def _restart(self) -> None:
        if self._session_scope is not None:
            # Nothing more goes out on the old connection, not even what is queued
            # before its tasks see the cancel (the pump writes synchronously).
            self.outbox.on_queued = None
            self._session_scope.cancel()
        self._creds_changed.set()

    def _set_status(self, status: TunnelStatus, reason: str | None = None) -> None:
        if status is self.status and reason == self.reason:
            return
        at = wall_clock()
        if status is not self.status:
            self.since = at
        self.reason = reason
        if status is not TunnelStatus.CONNECTED:
            self.connected_since = None
        self.history.append({"status": str(status), "reason": reason, "at": at})
        self.state.value = status
        self._hooks.on_status(status, reason, at)

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
        self.attempts = 0
        self._last_problem = None
        # What went wrong with the last attempt of these credentials (another session's
        # failure, a refused token say, is not this one's reason).
        reason: str | None = None
        while True:
            self._set_status(TunnelStatus.CONNECTING, reason)
            self._handshake_at = None
            problem: str | None = None
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
                problem = reason = message
                self._set_status(TunnelStatus.CONNECTING, message)
            if self._was_stable():
                self._backoff.reset()
                self.attempts = 0
            else:
                self.attempts += 1
            delay = self._backoff.next_delay()
            if problem is not None:
                self._note_problem(problem, delay)
            self._retry_at = trio.current_time() + delay
            try:
                await trio.sleep(delay)
            finally:
                self._retry_at = None

    def _was_stable(self) -> bool:
        """Whether the last attempt completed its handshake and stayed up ``STABLE_AFTER``."""
        at = self._handshake_at
        return at is not None and trio.current_time() - at >= STABLE_AFTER

    def _note_problem(self, message: str, delay: float) -> None:
        """Log a failed attempt: a warning when its reason is new, else a line at INFO."""
        when = "at once" if delay <= 0 else f"in {delay:.1f} s, at {wall_clock(delay)[11:19]}"
        if message != self._last_problem:
            log.warning("tunnel: %s; next attempt %s", message, when)
            self._last_problem = message
        else:
            log.info(
                "tunnel: %s (%s in a row); next attempt %s", message, _failed(self.attempts), when
            )

    async def _attempt(self, creds: _Credentials) -> None:
        """One connection, from the upgrade until it breaks (it always ends in an exception).

        However it ends (a drop, a refusal, ``activate``/``disconnect`` cancelling
        it), unconfirmed results go back to the outbox and its urgent frames go.
        """
        hooks = ConnectionHooks(
            capability_report=self._hooks.capability_report,
            on_connected=self._on_connected,
            on_frame=self._hooks.on_frame,
            on_ready=partial(self._on_ready, creds.url),
            send_result=self.send_result,
            confirm_now=lambda: self._confirm_now,
        )
        connection = Connection(self.outbox, hooks, self._pacing, self._close_requested)
        await connection.run(creds.url, creds.token)

    def _on_connected(self, frame: Connected) -> None:
        self.user_id = frame.user_id or None
        self._hooks.on_frame(frame)

    def _on_ready(self, url: str) -> None:
        self._handshake_at = trio.current_time()
        self.connections += 1
        self._last_problem = None
        after = f" after {_failed(self.attempts)}" if self.attempts else ""
        self.attempts = 0
        self._set_status(TunnelStatus.CONNECTED, None)
        self.connected_since = trio.current_time()
        log.info("tunnel: connected to %s as user %s%s", url, self.user_id or "?", after)

    async def close(self) -> None:
        """Close the live connection politely (code 1001); bound the wait yourself."""
        self._close_requested.set()
        await self.state.wait_for(lambda status: status is not TunnelStatus.CONNECTED)


def _failed(attempts: int) -> str:
    return f"{attempts} failed attempt{'' if attempts == 1 else 's'}"


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
