"""One capture: a handle whose lifetime is its own nursery.

::

    capture nursery
    └── reader (source.receive) ─┬─ ASR uplink   (AsrUplink.feed: sends live audio itself,
                                 │                 the rest through its connection task)
                                 ├─ recording    (Recorder.feed → writes off the loop)
                                 └─ level meter  (computed inline, shown by status())

Start it with ``await nursery.start(Capture(request).run)`` or ``async with
open_capture(request)``; ``stop()`` ends it and returns the summary. Sinks never
block the reader: each has a bounded buffer and counts what it had to drop.

Given a ``FramePump`` (``edge.capture.pump``), a native capture opens its
source through it (sharing the device with the pump's other captures) and the
pump's one task reads it, instead of a reader of its own; given a
``RecordingWriter``, its recording is written with the writer's others.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import trio

from ..errors import CaptureError, SourceEnded
from ..protocol.asr import Transcript
from .pump import FramePump
from .recording import Recorder, RecordingWriter
from .sources import (
    AudioFormat,
    AudioSource,
    Chunk,
    NativeSource,
    SourceSpec,
    open_source,
    silence_may_mean_no_permission,
    zero_audio_warning,
)
from .uplink import AsrTarget, AsrUplink, UplinkOptions

log = logging.getLogger(__name__)

#: Chat ids: what the cloud's web page uses to name a capture.
CHAT_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
#: Final transcript segments kept per capture for its summary.
MAX_SEGMENTS: Final = 10_000


def check_chat_id(chat_id: object) -> str:
    if not isinstance(chat_id, str) or not CHAT_ID.match(chat_id):
        raise CaptureError(
            "chatId must be 1-128 characters: letters, digits and . _ : @ - "
            "(starting with a letter or digit)"
        )
    return chat_id


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    """What to capture and where it goes."""

    chat_id: str
    source: SourceSpec
    fmt: AudioFormat = field(default_factory=AudioFormat)
    out_dir: Path | None = None
    container: str = "flac"
    asr: AsrTarget | None = None

    def __post_init__(self) -> None:
        check_chat_id(self.chat_id)


@dataclass(frozen=True, slots=True)
class CaptureStarted:
    chat_id: str
    status: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": "capture_started", **self.status}


@dataclass(frozen=True, slots=True)
class TranscriptEvent:
    chat_id: str
    source: str
    transcript: Transcript

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "transcript",
            "chatId": self.chat_id,
            "source": self.source,
            **self.transcript.to_json(),
        }


@dataclass(frozen=True, slots=True)
class CaptureEnded:
    chat_id: str
    summary: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": "capture_ended", "chatId": self.chat_id, "summary": self.summary}


CaptureEvent = CaptureStarted | TranscriptEvent | CaptureEnded


def _db(value: float) -> float | None:
    return None if value <= 0 else round(20 * math.log10(value), 1)


class Capture:
    """Handle on one capture; ``run`` is its lifetime."""

    def __init__(
        self,
        request: CaptureRequest,
        *,
        on_event: Callable[[CaptureEvent], None] = lambda event: None,
        uplink_options: UplinkOptions | None = None,
        pump: FramePump | None = None,
        writer: RecordingWriter | None = None,
    ) -> None:
        self.request = request
        self.chat_id = request.chat_id
        self._on_event = on_event
        self._uplink_options = uplink_options
        self._pump = pump
        self._writer = writer
        self._source: AudioSource | None = None
        self.recorder: Recorder | None = None
        self.uplink: AsrUplink | None = None
        self._reader_scope = trio.CancelScope()
        self._done = trio.Event()
        self.state = "starting"
        self.started_at: float | None = None  # wall clock
        self._t0: float | None = None
        self._t_end: float | None = None
        self.frames = 0
        self._last_pcm = b""
        self._zero_frames = 0
        self.error: str | None = None
        self.segments: list[dict[str, Any]] = []
        self.summary: dict[str, Any] | None = None

    # -- lifetime -----------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[Capture] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Open the source and sinks, report started, capture until ``stop()``.

        Raises ``CaptureError`` before ``started`` when the source or the
        recording cannot be opened.
        """
        req = self.request
        opener = open_source if self._pump is None else self._pump.open_source
        source = self._source = await opener(req.source, req.fmt)
        try:
            if req.out_dir is not None:
                self.recorder = Recorder(self._recording_path(req.out_dir), req.fmt, req.container)
                await trio.to_thread.run_sync(self.recorder.open)
            if req.asr is not None:
                self.uplink = AsrUplink(
                    req.asr,
                    chat_id=self.chat_id,
                    source=str(req.source),
                    fmt=req.fmt,
                    on_transcript=self._transcript,
                    options=self._uplink_options,
                )
            async with trio.open_nursery() as nursery:
                if self.recorder is not None:
                    nursery.start_soon(self.recorder.run, self._writer)
                if self.uplink is not None:
                    nursery.start_soon(self.uplink.run)
                self.started_at = time.time()
                self._t0 = trio.current_time()
                self.state = "running"
                log.info("capture %s: recording %s", self.chat_id, req.source)
                task_status.started(self)
                with self._reader_scope:
                    try:
                        await self._read(source)
                    except SourceEnded:
                        pass
                    except CaptureError as exc:
                        self.error = str(exc)
                        log.error("capture %s stopped: %s", self.chat_id, exc)
                self._t_end = trio.current_time()
                self.state = "stopping"
                await source.aclose()
                if self.recorder is not None:
                    self.recorder.finish()
                if self.uplink is not None:
                    self.uplink.finish()
        finally:
            await source.aclose()
            if self._t_end is None and self._t0 is not None:
                self._t_end = trio.current_time()
            self.state = "ended"
            self.summary = self._summarise()
            self._done.set()
            if self._t0 is not None:
                self._on_event(CaptureEnded(self.chat_id, self.summary))

    async def stop(self) -> dict[str, Any]:
        """Stop capturing, let the sinks finish, and return the summary."""
        self._reader_scope.cancel()
        await self._done.wait()
        assert self.summary is not None
        return self.summary

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    # -- the reader ----------------------------------------------------------------------

    async def _read(self, source: AudioSource) -> None:
        take = self._taker()
        if self._pump is not None and isinstance(source, NativeSource):
            await self._pump.drive(source, take)  # until the source ends (raises)
        else:
            while True:
                take(await source.receive())

    def _taker(self) -> Callable[[Chunk], None]:
        """What each chunk goes through: the hot path, synchronous (the pump calls it too).

        A few attribute stores per chunk, and the uplink's send. The level meter
        is computed from the last chunk only when status() is read; silence is
        watched for only where it may mean something.
        """
        recorder, uplink = self.recorder, self.uplink
        watch_silence = silence_may_mean_no_permission(self.request.source)

        def take(chunk: Chunk) -> None:
            pcm = chunk.pcm
            frames = chunk.frames
            self.frames += frames
            self._last_pcm = pcm
            if watch_silence:
                self._zero_frames = self._zero_frames + frames if pcm.count(0) == len(pcm) else 0
            if recorder is not None:
                recorder.feed(pcm, frames)
            if uplink is not None:
                uplink.feed(pcm, frames, chunk.t_ready)

        return take

    def level(self) -> tuple[float, float]:
        """Peak and RMS of the last chunk read, as shares of full scale."""
        import numpy as np

        if not self._last_pcm:
            return 0.0, 0.0
        samples = np.frombuffer(self._last_pcm, dtype="<i2")
        peak = max(int(samples.max()), -int(samples.min())) / 32768
        rms = math.sqrt(float(np.dot(samples, samples.astype(np.float64))) / len(samples)) / 32768
        return peak, rms

    def _transcript(self, transcript: Transcript) -> None:
        if transcript.final and len(self.segments) < MAX_SEGMENTS:
            self.segments.append(transcript.to_json())
        self._on_event(TranscriptEvent(self.chat_id, str(self.request.source), transcript))

    def _recording_path(self, out_dir: Path) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", self.chat_id)
        base = out_dir / f"{stamp}-{name}"
        path, n = base, 1
        while any(path.with_suffix(s).exists() for s in (".flac", ".wav", ".partial.wav")):
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return path

    # -- views ---------------------------------------------------------------------------

    def _seconds(self) -> float:
        return self.request.fmt.seconds(self.frames * self.request.fmt.frame_samples)

    def dropped(self) -> dict[str, int]:
        source_dropped = self._source.counters()[1] if self._source is not None else 0
        return {
            "source": source_dropped,
            "recording": self.recorder.stats.frames_dropped if self.recorder else 0,
        }

    def warning(self) -> str | None:
        zero_seconds = self._zero_frames * self.request.fmt.frame_ms / 1000
        return zero_audio_warning(self.request.source, zero_seconds)

    def status(self) -> dict[str, Any]:
        fmt = self.request.fmt
        peak, rms = self.level()
        return {
            "chatId": self.chat_id,
            "source": str(self.request.source),
            "state": self.state,
            "startedAt": self.started_at,
            "seconds": round(self._seconds(), 3),
            "sampleRate": fmt.sample_rate,
            "channels": fmt.channels,
            "frames": self.frames,
            "droppedFrames": self.dropped(),
            "level": {"peakDb": _db(peak), "rmsDb": _db(rms)},
            "file": str(self.recorder.path) if self.recorder else None,
            "asr": self.uplink.info() if self.uplink else None,
            "segments": len(self.segments),
            "warning": self.warning(),
            "error": self.error,
        }

    def _summarise(self) -> dict[str, Any]:
        summary = self.status()
        summary.pop("level")
        summary["state"] = "ended"
        summary["transcript"] = list(self.segments)
        return summary


async def start_capture(
    nursery: trio.Nursery,
    request: CaptureRequest,
    *,
    on_event: Callable[[CaptureEvent], None] = lambda event: None,
    uplink_options: UplinkOptions | None = None,
) -> Capture:
    """Start a capture in ``nursery``; returns its handle once audio is flowing."""
    capture = Capture(request, on_event=on_event, uplink_options=uplink_options)
    started: Capture = await nursery.start(capture.run)
    return started


@asynccontextmanager
async def open_capture(
    request: CaptureRequest,
    *,
    on_event: Callable[[CaptureEvent], None] = lambda event: None,
    uplink_options: UplinkOptions | None = None,
) -> AsyncIterator[Capture]:
    """``async with open_capture(req) as cap``: the capture stops when the block ends."""
    async with trio.open_nursery() as nursery:
        capture = await start_capture(
            nursery, request, on_event=on_event, uplink_options=uplink_options
        )
        try:
            yield capture
        finally:
            with trio.CancelScope(shield=True):
                await capture.stop()
