"""The frame pump: one task reading many captures' rings, and one sound-server capture per device.

The pattern source is a running sample counter, so any frame the pump loses,
repeats or reorders shows; ``system`` through a real PulseAudio server shows
the sharing: one backend thread for every capture of the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pytest
import trio

from edge.capture.capture import CaptureRequest
from edge.capture.pump import FramePump, serve_frame_pump
from edge.capture.sources import AudioFormat, Chunk, NativeSource, SourceSpec
from edge.errors import CaptureError
from edge.nurseries.captures import serve_captures

from ..conftest import open_fds, until
from .conftest import Player, PulseServer, audio_threads, non_trio_threads

#: Seconds for frames a real-time source owes, or for an end to be noticed (a bound on failure).
WITHIN: Final = 30.0
FMT = AudioFormat(16000, 1, 20)


class Collected:
    """What a driven source delivered, and how it ended."""

    def __init__(self) -> None:
        self.pcm: list[bytes] = []
        self.frames = 0
        self.error: BaseException | None = None

    def take(self, chunk: Chunk) -> None:
        self.pcm.append(chunk.pcm)
        self.frames += chunk.frames

    def samples(self) -> np.ndarray:  # type: ignore[type-arg]
        return np.frombuffer(b"".join(self.pcm), dtype="<u2")


def drive(
    nursery: trio.Nursery, pump: FramePump, source: NativeSource
) -> tuple[Collected, trio.CancelScope]:
    """Drive ``source`` on ``pump`` until the scope is cancelled or the source ends."""
    got = Collected()
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            try:
                await pump.drive(source, got.take)
            except CaptureError as exc:
                got.error = exc

    nursery.start_soon(run)
    return got, scope


def counting_up(samples: np.ndarray) -> bool:  # type: ignore[type-arg]
    """The pattern's running counter, from wherever it started: nothing lost or repeated."""
    return bool(np.array_equal(samples, (samples[0] + np.arange(len(samples))) % 65536))


async def test_one_pump_delivers_every_frame_of_each_source_in_order(
    nursery: trio.Nursery,
) -> None:
    pump: FramePump = await nursery.start(serve_frame_pump)
    sources = [await NativeSource.open(SourceSpec("pattern"), FMT) for _ in range(3)]
    try:
        with trio.fail_after(WITHIN):
            # One source (the pump waits on its pipe), then three (on its selector),
            # then two: nothing is lost across the changes.
            first, first_scope = drive(nursery, pump, sources[0])
            await until(lambda: first.frames >= 10, poll=0.01)
            others = [drive(nursery, pump, s) for s in sources[1:]]
            await until(lambda: all(got.frames >= 10 for got, _ in others), poll=0.01)
            first_scope.cancel()
            await trio.testing.wait_all_tasks_blocked()  # it has let go of the pump
            still = first.frames
            marks = [(got, got.frames) for got, _ in others]
            await until(lambda: all(got.frames >= mark + 10 for got, mark in marks))
            assert first.frames == still  # no longer driven: nothing more for it
            for _, scope in others:
                scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for source in sources:
                await source.aclose()
    for got in [first] + [got for got, _ in others]:
        samples = got.samples()
        assert samples[0] == 0 and counting_up(samples)  # from the very first frame
        assert got.error is None


async def test_a_tap_gets_the_same_frames_from_the_moment_it_is_opened() -> None:
    before = open_fds()
    source = await NativeSource.open(SourceSpec("pattern"), FMT)
    try:
        with trio.fail_after(WITHIN):
            first = [(await source.receive()).pcm for _ in range(3)]
            tap = source.tap()
            assert audio_threads() == ["edge-audio"]  # no second backend
            tapped = [(await tap.receive()).pcm for _ in range(5)]
            more = [(await source.receive()).pcm for _ in range(10)]
    finally:
        with trio.CancelScope(shield=True):
            await source.aclose()
    try:
        # The backend runs on for the tap, its last handle.
        assert audio_threads() == ["edge-audio"]
        with trio.fail_after(WITHIN):
            after = [(await tap.receive()).pcm for _ in range(3)]
    finally:
        with trio.CancelScope(shield=True):
            await tap.aclose()
    assert audio_threads() == []
    assert open_fds() == before
    whole = np.frombuffer(b"".join(first + more), dtype="<u2")
    tap_samples = np.frombuffer(b"".join(tapped + after), dtype="<u2")
    assert counting_up(whole) and whole[0] == 0
    assert counting_up(tap_samples)
    # The tap's frames are the source's: the same counter, from a later frame on.
    start = int(tap_samples[0])
    assert start % FMT.frame_samples == 0 and start >= 3 * FMT.frame_samples
    overlap = tap_samples[: len(whole) - start]
    assert np.array_equal(overlap, whole[start : start + len(overlap)])


async def test_captures_of_one_device_share_one_capture_of_it(
    nursery: trio.Nursery, pulse: str, player: Player
) -> None:
    await player.play(440, "sys_out")
    pump: FramePump = await nursery.start(serve_frame_pump)
    before = open_fds()
    system = SourceSpec("system")
    first = await pump.open_source(system, FMT)
    second = await pump.open_source(system, FMT)
    other_format = await pump.open_source(system, AudioFormat(48000, 2, 20))
    assert isinstance(first, NativeSource) and isinstance(second, NativeSource)
    assert isinstance(other_format, NativeSource)
    try:
        # One connection to the sound server per device and format, not per capture.
        assert audio_threads() == ["edge-audio", "edge-audio"]
        got_first, stop_first = drive(nursery, pump, first)
        got_second, stop_second = drive(nursery, pump, second)
        with trio.fail_after(WITHIN):
            await until(lambda: got_second.frames >= 25, poll=0.01)
            stop_first.cancel()
            await first.aclose()
            # The second runs on, on the capture the first opened.
            mark = got_second.frames
            await until(lambda: got_second.frames >= mark + 10, poll=0.01)
            stop_second.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for source in (first, second, other_format):
                await source.aclose()
    assert audio_threads() == []
    assert open_fds() == before
    one, two = (b"".join(g.pcm) for g in (got_first, got_second))
    assert np.frombuffer(one, "<i2").std() > 1000  # the tone, not silence
    # The second's audio is the first's, from where it joined.
    assert two[: len(two) // 4] in one


async def test_a_dying_sound_server_ends_every_capture_sharing_it(
    private_pulse: PulseServer, monkeypatch: pytest.MonkeyPatch, nursery: trio.Nursery
) -> None:
    monkeypatch.setenv("PULSE_SERVER", private_pulse.server)
    captures = await nursery.start(serve_captures, lambda event: None)
    with trio.fail_after(WITHIN):
        async with trio.open_nursery() as starting:  # started together: one open, shared
            for i in range(3):
                request = CaptureRequest(f"doomed-{i}", SourceSpec("system"), FMT)
                starting.start_soon(captures.start, request)
        started = [captures.get(f"doomed-{i}") for i in range(3)]
        await until(lambda: all(c.frames >= 10 for c in started), poll=0.02)
        assert audio_threads() == ["edge-audio"]
        private_pulse.process.kill()
        await until(lambda: not any(c.running for c in started), poll=0.02)
    for capture in started:
        assert capture.summary is not None
        assert capture.summary["error"].startswith("system: the sound server")
    assert audio_threads() == []


async def test_stopped_captures_leave_no_task_thread_or_descriptor(
    pulse: str, tmp_path: Path
) -> None:
    before_fds, before_threads = open_fds(), non_trio_threads()
    async with trio.open_nursery() as nursery:
        captures = await nursery.start(serve_captures, lambda event: None)
        for i, kind in enumerate(["system", "system", "system", "pattern", "pattern", "mic"]):
            request = CaptureRequest(f"c-{i}", SourceSpec(kind), FMT, tmp_path, "wav")
            await captures.start(request)
        with trio.fail_after(WITHIN):
            await until(lambda: all(s["frames"] >= 5 for s in captures.status()), poll=0.02)
        assert sorted(audio_threads()) == ["edge-audio"] * 4  # system shared; mic; 2 patterns
        summaries = await captures.stop_all()
        assert len(captures) == 0
        nursery.cancel_scope.cancel()
    assert all(s["state"] == "ended" and s["error"] is None for s in summaries)
    assert audio_threads() == []
    assert open_fds() == before_fds
    assert non_trio_threads() == before_threads
    assert all(Path(s["file"]).suffix == ".wav" and Path(s["file"]).exists() for s in summaries)
    assert len(summaries) == 6
