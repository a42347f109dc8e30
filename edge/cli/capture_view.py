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
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final, TextIO

import trio

from ..capture.capture import CaptureEnded, CaptureEvent, CaptureRequest, TranscriptEvent
from ..errors import CaptureError
from ..nurseries.captures import Captures, serve_captures
from .common import plural

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
        f"{summary['source']}: {summary['seconds']:.1f} s, {plural(summary['frames'], 'frame')}, "
        f"dropped {dropped['source']} at the source and {dropped['recording']} at the recorder",
        f"  file: {summary['file'] or '(not recorded)'}",
    ]
    asr = summary.get("asr")
    if asr is not None:
        state = "complete" if asr["complete"] else f"incomplete ({asr['lastError']})"
        lines.append(
            f"  transcript: {plural(len(summary['transcript']), 'segment')}, {state}; "
            f"{asr['backfilledSeconds']:.1f} s backfilled, {asr['lostSeconds']:.1f} s lost"
        )
    if summary.get("error"):
        lines.append(f"  stopped early: {summary['error']}")
    return lines


class _Screen:
    """The terminal: status lines redrawn in place on a tty, lines printed above them."""

    def __init__(self, out: TextIO, *, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json
        self.tty = out.isatty() and not as_json
        self.partials: dict[str, str] = {}
        self._drawn = 0

    def _erase(self) -> None:
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def draw(self, captures: list[dict[str, Any]]) -> None:
        self._erase()
        for status in captures:
            self.out.write(status_line(status, self.partials.get(status["chatId"])) + "\n")
        self._drawn = len(captures)
        self.out.flush()

    def show(self, line: str, captures: list[dict[str, Any]]) -> None:
        if self.tty:
            self._erase()
        if not self.as_json:
            self.out.write(line + "\n")
        if self.tty:
            self.draw(captures)
        self.out.flush()

    def finish(self, summaries: list[dict[str, Any]]) -> None:
        if self.tty:
            self._erase()
        if self.as_json:
            self.out.write(json.dumps(summaries, indent=2) + "\n")
        else:
            for summary in summaries:
                self.out.write("\n".join(summary_lines(summary)) + "\n")
        self.out.flush()


async def _keep_showing(screen: _Screen, captures: Captures) -> None:
    """Redraw the status lines on a tty; elsewhere, print them every PROGRESS seconds."""
    while True:
        if screen.tty:
            screen.draw(captures.status())
            await trio.sleep(REDRAW)
        else:
            await trio.sleep(PROGRESS)
            for status in captures.status():
                screen.show(status_line(status), [])


async def _stop_when(
    captures: Captures, signals: AsyncIterator[int], duration: float | None
) -> None:
    """Stop every capture at the first signal, or once ``duration`` has passed."""
    with trio.move_on_after(float("inf") if duration is None else duration):
        async for _ in signals:
            break
    await captures.stop_all()


async def _start_all(
    captures: Captures, requests: Sequence[CaptureRequest]
) -> list[tuple[CaptureRequest, CaptureError]]:
    """Start every request at once; the ones that could not start, in request order."""
    failed: dict[int, CaptureError] = {}

    async def start_one(i: int, request: CaptureRequest) -> None:
        try:
            await captures.start(request)
        except CaptureError as exc:
            failed[i] = exc

    async with trio.open_nursery() as nursery:
        for i, request in enumerate(requests):
            nursery.start_soon(start_one, i, request)
    return [(requests[i], failed[i]) for i in sorted(failed)]


def failure_message(failures: Sequence[tuple[CaptureRequest, CaptureError]]) -> str:
    """One line for every source that could not start: sources that failed alike share
    their reason (``mic and system: no PulseAudio server reachable (...)``)."""
    reasons: dict[str, list[str | None]] = {}
    for request, exc in failures:
        text, source = str(exc), str(request.source)
        if text.startswith(f"{source}: "):
            reasons.setdefault(text[len(source) + 2 :], []).append(source)
        else:
            reasons.setdefault(text, []).append(None)
    parts = []
    for reason, sources in reasons.items():
        if None in sources:  # the reason does not name its source (a recording error)
            parts.append(reason)
        else:
            names = list(dict.fromkeys(str(s) for s in sources))
            listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
            parts.append(f"{listed}: {reason}")
    if len(failures) == 1:
        return parts[0]
    return f"{plural(len(failures), 'source')} could not start: " + "; ".join(parts)


async def run_captures(
    requests: Sequence[CaptureRequest],
    *,
    duration: float | None = None,
    out: TextIO = sys.stdout,
    as_json: bool = False,
) -> list[dict[str, Any]]:
    """Run ``requests`` side by side until the duration, a signal, or every source ends.

    Every source is started at once; if any cannot start, the others are stopped (their
    files removed) and one ``CaptureError`` names every source that failed, and why.
    """
    screen = _Screen(out, as_json=as_json)
    send, receive = trio.open_memory_channel[CaptureEvent](1024)
    summaries: list[dict[str, Any]] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            captures: Captures = await nursery.start(serve_captures, send.send_nowait)
            try:
                failures = await _start_all(captures, requests)
                if failures:
                    # Stopped before it began, for another source's sake: it leaves no file.
                    for summary in await captures.stop_all():
                        if summary.get("file"):
                            await trio.Path(summary["file"]).unlink(missing_ok=True)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await captures.stop_all()
                raise
            if not failures:
                nursery.start_soon(_stop_when, captures, signals, duration)
                nursery.start_soon(_keep_showing, screen, captures)
                await _show_until_ended(screen, captures, receive, len(requests), summaries)
            nursery.cancel_scope.cancel()
    if failures:
        # Raised out here, not inside the nursery, so it is no exception group.
        raise CaptureError(failure_message(failures))
    screen.finish(summaries)
    return summaries


async def _show_until_ended(
    screen: _Screen,
    captures: Captures,
    receive: trio.MemoryReceiveChannel[CaptureEvent],
    count: int,
    summaries: list[dict[str, Any]],
) -> None:
    """Show transcript lines as they come; return once ``count`` captures have ended
    (their summaries appended to ``summaries``)."""
    async with receive:
        async for event in receive:
            if isinstance(event, TranscriptEvent):
                if event.transcript.final:
                    screen.partials.pop(event.chat_id, None)
                    screen.show(transcript_line(event), captures.status())
                else:
                    screen.partials[event.chat_id] = event.transcript.text
            elif isinstance(event, CaptureEnded):
                summaries.append(event.summary)
                if len(summaries) == count:
                    return
