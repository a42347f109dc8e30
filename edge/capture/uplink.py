"""The speech-recognition uplink: one WebSocket per capture, resumable without holes.

``feed`` (never blocks) appends audio to a backlog; the connection task sends it
and the endpoint's acks trim it. Live and caught up, ``feed`` sends the chunk
itself, synchronously (``edge.capture.fastsend``): one write per frame, no wake-up
of the connection task and no schedule point; whenever that cannot be done
(the socket is busy or closing, TLS), the connection task is woken and sends
it the awaited way. When the link drops, audio keeps piling up in
the backlog (bounded: the oldest is dropped and counted); after reconnecting,
the endpoint says how much of this chat it already holds (``ready``) and edge
sends the rest marked as backfill, then goes live again. Messages: see
``edge.protocol.asr`` and docs/protocol.md.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import trio
import trio_websocket

from ..errors import CaptureError, EdgeError
from ..net.backoff import Backoff
from ..net.errors import describe_error
from ..net.wsclient import open_ws
from ..protocol.asr import (
    Ack,
    AsrError,
    Done,
    Ready,
    Transcript,
    backfill_message,
    gap_message,
    live_message,
    parse_asr_message,
    start_message,
    stop_message,
)
from ..secret import Secret
from .fastsend import FastSend
from .sources import AudioFormat

log = logging.getLogger(__name__)

#: Seconds of unacknowledged audio kept for backfill before the oldest is dropped.
MAX_BACKLOG_SECONDS: Final = 300
#: Seconds the endpoint gets to connect and answer ``start``.
CONNECT_TIMEOUT: Final = 10.0
#: Seconds a stopping capture waits for the endpoint's last transcript.
FINISH_TIMEOUT: Final = 5.0
#: Seconds of audio at most in one binary message (backfill after a long gap).
MAX_MESSAGE_SECONDS: Final = 1.0
#: Frame-to-socket latencies kept for the status view and the benchmark.
LATENCY_SAMPLES: Final = 2048


@dataclass(frozen=True, slots=True)
class AsrTarget:
    """Where to stream: a ws:// or wss:// URL and the Bearer token to present."""

    url: str
    token: Secret | None = None


def choose_asr_target(
    asr: str | bool | None, cloud_url: str | None, token: Secret | None
) -> AsrTarget | None:
    """Where a capture streams, as asked for in a start request.

    ``False`` → nowhere (local recording only); a ``ws(s)://`` URL → there, with
    the tunnel's token; ``None`` → the endpoint the cloud named (``asrUrl`` in
    ``connected``) while the tunnel has a token, else nowhere.

    Raises:
        CaptureError: ``asr`` is a string that is not a ws:// or wss:// URL.
    """
    if asr is False:
        return None
    if isinstance(asr, str):
        if not asr.startswith(("ws://", "wss://")):
            raise CaptureError('"asr" must be a ws:// or wss:// URL, or false')
        return AsrTarget(asr, token)
    if cloud_url and token is not None:
        return AsrTarget(cloud_url, token)
    return None


@dataclass(frozen=True, slots=True)
class UplinkOptions:
    """How an uplink paces itself; the defaults are the module constants (tests shorten them)."""

    backoff: Backoff | None = None
    max_backlog_seconds: float = MAX_BACKLOG_SECONDS
    connect_timeout: float = CONNECT_TIMEOUT
    finish_timeout: float = FINISH_TIMEOUT


@dataclass(slots=True)
class UplinkStats:
    connected: bool = False
    connections: int = 0
    frames_sent: int = 0
    frames_acked: int = 0
    frames_backfilled: int = 0
    frames_lost: int = 0
    last_error: str | None = None
    complete: bool = False
    latencies: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_SAMPLES)
    )


#: A backlog entry: (offset, pcm, sample frames, t_ready). A plain tuple of atoms,
#: which the garbage collector stops tracking at its first look: seconds of
#: backlog per capture never reach the old generations that a full (slow)
#: collection walks.
_Chunk = tuple[int, bytes, int, float]


class AsrUplink:
    def __init__(
        self,
        target: AsrTarget,
        *,
        chat_id: str,
        source: str,
        fmt: AudioFormat,
        on_transcript: Callable[[Transcript], None],
        options: UplinkOptions | None = None,
    ) -> None:
        opts = options or UplinkOptions()
        self.target = target
        self.chat_id = chat_id
        self.source = source
        self.fmt = fmt
        self._on_transcript = on_transcript
        self._backoff = opts.backoff or Backoff(first=0.5, cap=15.0)
        self._max_backlog = int(opts.max_backlog_seconds * fmt.sample_rate)
        self._max_message = int(MAX_MESSAGE_SECONDS * fmt.sample_rate)
        self._connect_timeout = opts.connect_timeout
        self._finish_timeout = opts.finish_timeout
        self._frame_bytes_per_sample = 2 * fmt.channels
        self._frame_samples = fmt.frame_samples
        self._backlog: collections.deque[_Chunk] = collections.deque()
        self._backlog_frames = 0
        self._end = 0  # sample frames fed in all
        self._sent = 0  # sample frames sent on the current connection
        self._acked = 0
        #: Set while the connection task waits, live and caught up: ``feed`` sends.
        self._fast: FastSend | None = None
        self._wake = trio.Event()
        self._finished = False
        self._finish_requested = trio.Event()
        self._done = trio.Event()
        self.stats = UplinkStats()

    # -- the capture's side -----------------------------------------------------------

    def feed(self, pcm: bytes, frames: int, t_ready: float) -> None:
        samples = frames * self._frame_samples
        offset = self._end
        self._end = end = offset + samples
        self._backlog.append((offset, pcm, samples, t_ready))
        self._backlog_frames += samples
        if self._backlog_frames > self._max_backlog:
            self._drop_oldest()
        fast = self._fast
        if (
            fast is not None
            and self._sent == offset
            and samples <= self._max_message
            and fast.send_now(pcm)
        ):
            self._sent = end
            stats = self.stats
            stats.frames_sent += samples
            stats.latencies.append(trio.current_time() - t_ready)
        else:
            self._wake.set()

    def _drop_oldest(self) -> None:
        """Keep the backlog within its bound: the oldest chunks go (counted if unacked)."""
        backlog = self._backlog
        while self._backlog_frames > self._max_backlog and len(backlog) > 1:
            old_offset, _, old_frames, _ = backlog.popleft()
            self._backlog_frames -= old_frames
            if old_offset + old_frames > self._acked:
                self.stats.frames_lost += old_frames

    def finish(self) -> None:
        """No more audio: send what is left, then ``stop``, then wait for ``done``."""
        self._finished = True
        self._finish_requested.set()
        self._wake.set()

    @property
    def backlog_seconds(self) -> float:
        return self.fmt.seconds(self._end - self._acked)

    # -- the connection task ----------------------------------------------------------

    async def run(self) -> None:
        """Connect, stream and reconnect until ``finish`` and the endpoint's ``done``.

        After ``finish`` the endpoint gets ``finish_timeout`` seconds in all;
        whatever it has not confirmed by then is reported in the stats.
        """
        finish_scope = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._finish_watch, finish_scope)
            with finish_scope:
                while not self._done.is_set():
                    try:
                        await self._connection()
                    except* _LINK_ERRORS as group:
                        self._problem(describe_error(group, peer="the endpoint"))
                    finally:
                        self.stats.connected = False
                    if not self._done.is_set():
                        await trio.sleep(self._backoff.next_delay())
            nursery.cancel_scope.cancel()
        self.stats.complete = self._done.is_set()

    async def _finish_watch(self, scope: trio.CancelScope) -> None:
        await self._finish_requested.wait()
        await trio.sleep(self._finish_timeout)
        if not self._done.is_set():
            self._problem(f"gave up after {self._finish_timeout} s waiting for the last transcript")
        scope.cancel()

    def _problem(self, message: str) -> None:
        if message != self.stats.last_error:
            log.warning("ASR uplink for %s: %s", self.chat_id, message)
        self.stats.last_error = message

    async def _wait_wake(self) -> None:
        await self._wake.wait()
        self._wake = trio.Event()

    async def _connection(self) -> None:
        headers = []
        if self.target.token is not None:
            headers.append((b"authorization", f"Bearer {self.target.token.reveal()}".encode()))
        async with open_ws(
            self.target.url,
            headers=headers,
            connect_timeout=self._connect_timeout,
            max_message_size=1024 * 1024,
        ) as ws:
            fmt = self.fmt
            await ws.send_message(
                start_message(
                    self.chat_id, self.source, fmt.sample_rate, fmt.channels, fmt.frame_ms
                )
            )
            with trio.fail_after(self._connect_timeout):
                ready = parse_asr_message(await ws.get_message())
            if not isinstance(ready, Ready):
                detail = ready.message if isinstance(ready, AsrError) else type(ready).__name__
                raise _EndpointProblem(f"expected ready, got {detail}")
            self.stats.connections += 1
            self.stats.connected = True
            self._backoff.reset()
            self._ack(ready.received)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receiver, ws, nursery.cancel_scope)
                await self._sender(ws, ready.received, resumed=self.stats.connections > 1)
                await self._done.wait()
                nursery.cancel_scope.cancel()

    async def _sender(
        self, ws: trio_websocket.WebSocketConnection, position: int, *, resumed: bool
    ) -> None:
        position = await self._skip_lost(ws, min(position, self._end))
        if position < self._end and resumed:
            backfill = self._end - position
            await ws.send_message(backfill_message(position, backfill))
            end = self._end
            while position < end:
                position = await self._skip_lost(ws, position)
                if position < end:
                    position = await self._send_upto(ws, position, end, live=False)
            self.stats.frames_backfilled += backfill
        await ws.send_message(live_message(position))
        # From here on ``_sent`` is the position: ``feed`` advances it while this
        # task waits with ``_fast`` set, and only then.
        self._sent = position
        fast = FastSend(ws)
        while True:
            if self._sent < self._end:
                self._sent = await self._skip_lost(ws, self._sent)
                if self._sent < self._end:
                    self._sent = await self._send_upto(ws, self._sent, self._end, live=True)
            elif self._finished:
                await ws.send_message(stop_message(self._end))
                return
            else:
                self._fast = fast
                try:
                    await self._wait_wake()
                finally:
                    self._fast = None

    async def _skip_lost(self, ws: trio_websocket.WebSocketConnection, position: int) -> int:
        """Tell the endpoint about frames the bounded backlog dropped from ``position`` on.

        Checked before every send: the backlog may drop its oldest chunks while a
        message is being sent, and the frames after them must keep their offsets.
        """
        first = self._backlog[0][0] if self._backlog else self._end
        if position < first:
            await ws.send_message(gap_message(position, first - position))
            return first
        return position

    async def _send_upto(
        self, ws: trio_websocket.WebSocketConnection, position: int, end: int, *, live: bool
    ) -> int:
        """Send the backlog from ``position`` towards ``end`` as one binary message.

        A message holds at most ``MAX_MESSAGE_SECONDS``; returns where it stopped.
        Live, the backlog is walked from its newest end: usually one chunk.
        """
        end = min(end, position + self._max_message)
        parts = []
        stamps = []
        per = self._frame_bytes_per_sample
        for offset, pcm, frames, t_ready in reversed(self._backlog):
            if offset >= end:
                continue
            if offset + frames <= position:
                break
            start = max(0, position - offset) * per
            stop = (min(end, offset + frames) - offset) * per
            parts.append(pcm if start == 0 and stop == len(pcm) else pcm[start:stop])
            stamps.append(t_ready)
        if len(parts) == 1:
            data = parts[0]
        else:
            parts.reverse()
            data = b"".join(parts)
        await ws.send_message(data)
        self.stats.frames_sent += end - position
        if live:
            now = trio.current_time()
            self.stats.latencies.extend([now - t for t in stamps])
        return end

    async def _receiver(
        self, ws: trio_websocket.WebSocketConnection, scope: trio.CancelScope
    ) -> None:
        while True:
            message = parse_asr_message(await ws.get_message())
            if isinstance(message, Transcript):
                self._on_transcript(message)
            elif isinstance(message, Ack):
                self._ack(message.received)
            elif isinstance(message, Done):
                self._ack(message.received)
                self._done.set()
                return
            elif isinstance(message, AsrError):
                self._problem(f"endpoint: {message.message}")
            else:
                self._problem("endpoint sent ready twice")

    def _ack(self, received: int) -> None:
        received = min(received, self._end)
        if received <= self._acked:
            return
        self._acked = received
        self.stats.frames_acked = received
        backlog = self._backlog
        while backlog and backlog[0][0] + backlog[0][2] <= received:
            self._backlog_frames -= backlog.popleft()[2]

    def info(self) -> dict[str, Any]:
        s = self.stats
        return {
            "url": self.target.url,
            "connected": s.connected,
            "connections": s.connections,
            "sentSeconds": round(self.fmt.seconds(s.frames_sent), 3),
            "ackedSeconds": round(self.fmt.seconds(s.frames_acked), 3),
            "backlogSeconds": round(self.backlog_seconds, 3),
            "backfilledSeconds": round(self.fmt.seconds(s.frames_backfilled), 3),
            "lostSeconds": round(self.fmt.seconds(s.frames_lost), 3),
            "complete": s.complete,
            "lastError": s.last_error,
        }


class _EndpointProblem(EdgeError):
    """The endpoint answered something edge cannot work with."""


#: What ends one connection attempt of an uplink (it reconnects with backoff).
_LINK_ERRORS: Final = (
    OSError,
    trio_websocket.HandshakeError,
    trio_websocket.ConnectionClosed,
    trio.TooSlowError,
    _EndpointProblem,
)
