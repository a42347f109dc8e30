"""``edge capture``: captures in the foreground with a live terminal view.

Each source is its own capture (its own chat id, file and ASR stream). On a
terminal the view redraws one line per source (level meter, time, drops, ASR
state) under the transcript lines as they arrive; piped, it prints the
transcript lines and a progress line every few seconds. Ctrl-C, SIGTERM or
``--duration`` stop every capture cleanly, then each summary is printed.
"""

from __future__ import annotations

import json
import math
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final, TextIO

import trio

from ..capture.capture import CaptureEnded, CaptureEvent, CaptureRequest, TranscriptEvent
from ..nurseries.captures import serve_captures

#: Seconds between redraws of the live view on a terminal.
REDRAW: Final = 0.2
#: Seconds between progress lines when the output is not a terminal.
PROGRESS: Final = 5.0
METER_WIDTH: Final = 20
BARS: Final = " ▁▂▃▄▅▆▇█"


def meter(peak_db: float | None, width: int = METER_WIDTH) -> str:
    """A bar for a level in dBFS: empty at -60 dB and below, full at 0 dB."""
    share = 0.0 if peak_db is None else min(1.0, max(0.0, (peak_db + 60) / 60))
    cells = share * width
    full = math.floor(cells)
    bar = "█" * full
    if full < width:
        bar += BARS[math.floor((cells - full) * (len(BARS) - 1))]
    return bar.ljust(width)


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


def status_line(status: dict[str, Any], partial: str | None = None) -> str:
    level = status.get("level") or {}
    peak = level.get("peakDb")
    dropped = sum(status["droppedFrames"].values())
    asr = status.get("asr")
    if asr is None:
        link = "local only"
    elif asr["connected"]:
        link = "asr live"
    else:
        link = f"asr reconnecting ({asr['backlogSeconds']:.0f} s waiting)"
    db = "  -inf" if peak is None else f"{peak:6.1f}"
    line = (
        f"{status['source'][:14]:<14} {meter(peak)} {db} dB  {clock(status['seconds'])}  "
        f"{dropped} dropped  {link}"
    )
    if status.get("warning"):
        line += f"  ! {status['warning']}"
    if partial:
        line += f"  … {partial}"
    return line


def transcript_line(event: TranscriptEvent) -> str:
    t = event.transcript
    mark = " (backfill)" if t.backfill else ""
    return f"[{event.source} {t.start:6.1f}-{t.end:6.1f} s] {t.text}{mark}"


def summary_lines(summary: dict[str, Any]) -> list[str]:
    dropped = summary["droppedFrames"]
    lines = [
        f"{summary['source']}: {summary['seconds']:.1f} s, {summary['frames']} frames, "
        f"dropped {dropped['source']} at the source and {dropped['recording']} at the recorder",
        f"  file: {summary['file'] or '(not recorded)'}",
    ]
    asr = summary.get("asr")
    if asr is not None:
        state = "complete" if asr["complete"] else f"incomplete ({asr['lastError']})"
        lines.append(
            f"  transcript: {len(summary['transcript'])} segments, {state}; "
            f"{asr['backfilledSeconds']:.1f} s backfilled, {asr['lostSeconds']:.1f} s lost"
        )
    if summary.get("error"):
        lines.append(f"  stopped early: {summary['error']}")
    return lines


async def run_captures(
    requests: Sequence[CaptureRequest],
    *,
    duration: float | None = None,
    out: TextIO = sys.stdout,
    as_json: bool = False,
) -> list[dict[str, Any]]:
    """Run ``requests`` side by side until the duration, a signal, or every source ends."""
    tty = out.isatty() and not as_json
    send, receive = trio.open_memory_channel[CaptureEvent](1024)
    partials: dict[str, str] = {}
    summaries: list[dict[str, Any]] = []
    drawn = 0

    def draw(captures: list[dict[str, Any]]) -> None:
        nonlocal drawn
        if drawn:
            out.write(f"\x1b[{drawn}F\x1b[J")
        for status in captures:
            out.write(status_line(status, partials.get(status["chatId"])) + "\n")
        drawn = len(captures)
        out.flush()

    def show(line: str, captures: list[dict[str, Any]]) -> None:
        nonlocal drawn
        if tty and drawn:
            out.write(f"\x1b[{drawn}F\x1b[J")
            drawn = 0
        if not as_json:
            out.write(line + "\n")
        if tty:
            draw(captures)
        out.flush()

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            captures = await nursery.start(serve_captures, send.send_nowait)
            try:
                for request in requests:
                    await captures.start(request)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await captures.stop_all()
                raise

            async def stop_on_signal() -> None:
                async for _ in signals:
                    break
                await captures.stop_all()

            async def stop_after() -> None:
                assert duration is not None
                await trio.sleep(duration)
                await captures.stop_all()

            async def refresh() -> None:
                while True:
                    if tty:
                        draw(captures.status())
                        await trio.sleep(REDRAW)
                    else:
                        await trio.sleep(PROGRESS)
                        for status in captures.status():
                            show(status_line(status), [])

            helpers = trio.CancelScope()

            async def run_helpers() -> None:
                with helpers:
                    async with trio.open_nursery() as inner:
                        inner.start_soon(stop_on_signal)
                        inner.start_soon(refresh)
                        if duration is not None:
                            inner.start_soon(stop_after)

            nursery.start_soon(run_helpers)
            async with receive:
                remaining = len(requests)
                async for event in receive:
                    if isinstance(event, TranscriptEvent):
                        if event.transcript.final:
                            partials.pop(event.chat_id, None)
                            show(transcript_line(event), captures.status())
                        else:
                            partials[event.chat_id] = event.transcript.text
                    elif isinstance(event, CaptureEnded):
                        summaries.append(event.summary)
                        remaining -= 1
                        if remaining == 0:
                            break
            helpers.cancel()
            nursery.cancel_scope.cancel()
    if tty and drawn:
        out.write(f"\x1b[{drawn}F\x1b[J")
    if as_json:
        out.write(json.dumps(summaries, indent=2) + "\n")
    else:
        for summary in summaries:
            out.write("\n".join(summary_lines(summary)) + "\n")
    out.flush()
    return summaries
