"""The captures nursery: ``{chat_id: Capture}``, each capture its own child nursery.

No singleton and no "already recording" lock: every start makes an independent
capture; the only rule is that a chat id names one live capture at a time.
The nursery's captures share two tasks: one frame pump (``edge.capture.pump``:
one task reads every native capture's ring, one sound-server capture per
device) and one recording writer (every recording's second written in one
thread job), so that many captures cost one wake-up per frame, not one each.

``record_start``/``record_stop``/``record_status`` are what the control API's
``/record/*`` routes drive; where a capture streams is the owner's call
(``asr_for``), since the owner knows the cloud's endpoint and token.

Live levels: given ``on_levels``, one ticker task in the nursery (one for all
captures, ended with the nursery) reports every live capture's level as a
``{"type": "capture_levels", "captures": [{"chatId", "source", "peakDb",
"rmsDb"}]}`` event every ``LEVELS_PERIOD`` seconds while at least one capture
runs and ``listening()`` says someone reads them (the dashboard's meters). It
sleeps on an event while no capture runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, cast

import trio

from ..capture.capture import Capture, CaptureEnded, CaptureEvent, CaptureRequest, CaptureStarted
from ..capture.pump import FramePump, serve_frame_pump
from ..capture.recording import RecordingWriter, serve_recording_writer
from ..capture.sources import AudioFormat, parse_source
from ..capture.uplink import AsrTarget, UplinkOptions
from ..errors import CaptureConflict, NoSuchCapture

log = logging.getLogger(__name__)

#: Seconds between two ``capture_levels`` events.
LEVELS_PERIOD: Final = 0.25


def level_db(share: float) -> float | None:
    """A level (share of full scale) in dBFS to 0.01 dB (``None``: silence).

    Finer than the status's 0.1 dB, so that a meter shows a steady tone still moving.
    """
    return None if share <= 0 else round(20 * math.log10(share), 2)


@dataclass(frozen=True, slots=True)
class RecordingDefaults:
    """What ``record_start`` fills in: where files go and where audio streams."""

    recordings_dir: Path | None = None
    #: ``asr`` as asked for (a URL, ``False``, or ``None`` for the cloud's) → the target.
    asr_for: Callable[[str | bool | None], AsrTarget | None] = lambda asr: None


class Captures:
    """Handle on the captures nursery; made by ``serve_captures``."""

    def __init__(
        self,
        nursery: trio.Nursery,
        on_event: Callable[[CaptureEvent], None],
        uplink_options: UplinkOptions | None = None,
        defaults: RecordingDefaults | None = None,
        pump: FramePump | None = None,
        writer: RecordingWriter | None = None,
    ) -> None:
        self._nursery = nursery
        self._pump = pump
        self._writer = writer
        self._on_event = on_event
        self._uplink_options = uplink_options
        self._defaults = defaults or RecordingDefaults()
        self._live: dict[str, Capture | None] = {}  # None: starting
        self._idle = trio.Event()
        self._idle.set()
        self._busy = trio.Event()  # set while a capture is live or starting
        self._refusal: str | None = None

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, chat_id: object) -> bool:
        return chat_id in self._live

    async def start(self, request: CaptureRequest) -> Capture:
        """Start a capture.

        Raises:
            CaptureConflict: the chat id already names a live capture.
            CaptureError: bad chat id, or the source or recording cannot be opened.
        """
        chat_id = request.chat_id
        if self._refusal is not None:
            raise CaptureConflict(self._refusal)
        if chat_id in self._live:
            raise CaptureConflict(f"chat {chat_id!r} is already recording: stop it first")
        self._live[chat_id] = None
        if self._idle.is_set():
            self._idle = trio.Event()
        self._busy.set()
        capture = Capture(
            request,
            on_event=partial(self._event, chat_id),
            uplink_options=self._uplink_options,
            pump=self._pump,
            writer=self._writer,
        )
        try:
            started: Capture = await self._nursery.start(capture.run)
        except BaseException:
            self._forget(chat_id)
            raise
        if capture.running:
            self._live[chat_id] = started
        else:
            self._forget(chat_id)
        return started

    def _forget(self, chat_id: str) -> None:
        self._live.pop(chat_id, None)
        if not self._live:
            self._idle.set()
            self._busy = trio.Event()

    def refuse_new(self, reason: str | None) -> None:
        """Refuse new captures with ``reason`` (``CaptureConflict``); ``None``: take them again."""
        self._refusal = reason

    async def wait_idle(self) -> None:
        """Return once no capture is live (or starting)."""
        await self._idle.wait()

    def _event(self, chat_id: str, event: CaptureEvent) -> None:
        if isinstance(event, CaptureEnded) and chat_id in self._live:
            self._forget(chat_id)
        self._on_event(event)

    def get(self, chat_id: str) -> Capture:
        capture = self._live.get(chat_id)
        if capture is None:
            raise NoSuchCapture(f"no capture is recording chat {chat_id!r}")
        return capture

    async def stop(self, chat_id: str) -> dict[str, Any]:
        """Stop one capture and return its summary."""
        return await self.get(chat_id).stop()

    async def stop_all(self) -> list[dict[str, Any]]:
        """Stop every capture at once and return their summaries."""
        captures = [c for c in self._live.values() if c is not None]
        summaries: dict[str, dict[str, Any]] = {}

        async def stop_one(capture: Capture) -> None:
            summaries[capture.chat_id] = await capture.stop()

        async with trio.open_nursery() as nursery:
            for capture in captures:
                nursery.start_soon(stop_one, capture)
        return [summaries[c.chat_id] for c in captures]

    def status(self) -> list[dict[str, Any]]:
        return [c.status() for c in self._live.values() if c is not None]

    def levels(self) -> list[dict[str, Any]]:
        """Every live capture's level now: chat id, source, peak and RMS in dBFS."""
        out = []
        for capture in self._live.values():
            if capture is None:
                continue
            peak, rms = capture.level()
            out.append(
                {
                    "chatId": capture.chat_id,
                    "source": str(capture.request.source),
                    "peakDb": level_db(peak),
                    "rmsDb": level_db(rms),
                }
            )
        return out

    async def tick_levels(
        self, publish: Callable[[dict[str, Any]], None], listening: Callable[[], bool]
    ) -> None:
        """Publish ``capture_levels`` every ``LEVELS_PERIOD`` s while a capture runs and
        ``listening()``; sleeps while no capture runs. Runs until cancelled."""
        while True:
            await self._busy.wait()
            if listening():
                levels = self.levels()
                if levels:
                    publish({"type": "capture_levels", "captures": levels})
            await trio.sleep(LEVELS_PERIOD)

    # -- the control API's /record routes -------------------------------------------

    async def record_start(
        self,
        chat_id: object,
        source: str,
        *,
        asr: str | bool | None = None,
        sample_rate: int = 16000,
        channels: int = 1,
        container: str = "flac",
    ) -> dict[str, Any]:
        """Start recording ``source`` for ``chat_id``; returns the capture's status.

        Raises:
            CaptureError: a bad chat id, source, format or ASR target, or the
                source cannot be opened (``CaptureConflict``: already recording).
        """
        request = CaptureRequest(
            chat_id=cast(str, chat_id),  # CaptureRequest checks it, whatever its type
            source=parse_source(source),
            fmt=AudioFormat(sample_rate, channels),
            out_dir=self._defaults.recordings_dir,
            container=container,
            asr=self._defaults.asr_for(asr),
        )
        capture = await self.start(request)
        status = capture.status()
        self._on_event(CaptureStarted(capture.chat_id, status))
        return status

    async def record_stop(self, chat_id: str | None) -> list[dict[str, Any]]:
        """Stop one capture (``NoSuchCapture`` if unknown), or all of them."""
        if chat_id is None:
            return await self.stop_all()
        return [await self.stop(chat_id)]

    def record_status(self) -> list[dict[str, Any]]:
        return self.status()


async def serve_captures(
    on_event: Callable[[CaptureEvent], None],
    *,
    uplink_options: UplinkOptions | None = None,
    defaults: RecordingDefaults | None = None,
    on_levels: Callable[[dict[str, Any]], None] | None = None,
    listening: Callable[[], bool] = lambda: True,
    task_status: trio.TaskStatus[Captures] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the captures nursery until cancelled; ``nursery.start`` gives its handle.

    ``on_levels`` gets the ``capture_levels`` events (see the module's docstring)
    while ``listening()``; without it, no levels are reported.
    """
    async with trio.open_nursery() as nursery:
        pump: FramePump = await nursery.start(serve_frame_pump)
        writer: RecordingWriter = await nursery.start(serve_recording_writer)
        captures = Captures(nursery, on_event, uplink_options, defaults, pump, writer)
        if on_levels is not None:
            nursery.start_soon(captures.tick_levels, on_levels, listening)
        task_status.started(captures)
        await trio.sleep_forever()
