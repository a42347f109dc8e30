"""The C shim: the ring buffer, the pipe wake-up and thread lifecycle, without a sound server."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final

import numpy as np
import pytest
import trio
from hypothesis import given, settings, strategies as st

from edge.capture.sources import RING_FRAMES, AudioFormat, NativeSource, SourceSpec, native_module
from edge.errors import CaptureError

from ..conftest import until
from .conftest import audio_threads

FRAME = 8  # bytes per frame in the ring tests
#: Seconds to wait for frames a real-time source owes (a bound on failure, not a speed).
WITHIN: Final = 30.0


def frame_bytes(n: int) -> bytes:
    return n.to_bytes(4, "little") * (FRAME // 4)


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 16),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=60),
)
def test_ring_loses_nothing_and_never_returns_part_of_a_frame(
    capacity: int, ops: list[tuple[bool, int]]
) -> None:
    mod = native_module()
    ffi, lib = mod.ffi, mod.lib
    ring = lib.edge_ring_new(FRAME, capacity)
    buf = ffi.new("char[]", FRAME * 32)
    stamp = ffi.new("int64_t *")
    model: list[int] = []
    accepted = dropped = 0
    next_id = 0
    try:
        for is_push, count in ops:
            if is_push:
                for _ in range(count):
                    stored = lib.edge_ring_push(ring, frame_bytes(next_id), next_id * 10)
                    assert stored == (len(model) < capacity)
                    if stored:
                        model.append(next_id)
                        accepted += 1
                    else:
                        dropped += 1
                    next_id += 1
            else:
                n = lib.edge_ring_pop(ring, buf, count, stamp)
                assert n == min(count, len(model))
                data = ffi.buffer(buf, n * FRAME)[:]
                got = [data[i * FRAME : (i + 1) * FRAME] for i in range(n)]
                assert got == [frame_bytes(i) for i in model[:n]]
                if n:
                    assert stamp[0] == model[0] * 10
                del model[:n]
            assert lib.edge_ring_count(ring) == len(model)
        assert accepted + dropped == next_id
    finally:
        lib.edge_ring_free(ring)


@pytest.fixture
async def open_pattern() -> AsyncIterator[Callable[[AudioFormat], Awaitable[NativeSource]]]:
    """Opens pattern sources; every one is closed after the test, failed or not."""
    opened: list[NativeSource] = []

    async def open_one(fmt: AudioFormat) -> NativeSource:
        source = await NativeSource.open(SourceSpec("pattern"), fmt)
        opened.append(source)
        return source

    try:
        yield open_one
    finally:
        with trio.CancelScope(shield=True):
            for source in opened:
                await source.aclose()  # closing twice is a no-op


async def receive_frames(source: NativeSource, frames: int) -> list[bytes]:
    """PCM of at least ``frames`` frames, in the order received."""
    received: list[bytes] = []
    got = 0
    with trio.fail_after(WITHIN):
        while got < frames:
            chunk = await source.receive()
            assert len(chunk.pcm) == chunk.frames * source.fmt.frame_bytes
            assert chunk.t_ready <= trio.current_time()
            received.append(chunk.pcm)
            got += chunk.frames
    return received


async def until_dropping(source: NativeSource) -> None:
    """Wait until the backend has had to drop a frame (nobody reading: the ring is full)."""
    with trio.fail_after(WITHIN):
        await until(lambda: source.counters()[1] > 0, poll=0.05)


async def test_pattern_source_delivers_every_sample_in_order_across_the_thread(
    open_pattern: Callable[[AudioFormat], Awaitable[NativeSource]],
) -> None:
    """The native test pattern is a running counter: any lost or reordered frame shows."""
    fmt = AudioFormat(16000, 1, 20)
    source = await open_pattern(fmt)
    received = await receive_frames(source, 50)  # a second of 20 ms frames
    produced, dropped = source.counters()
    await source.aclose()
    samples = np.frombuffer(b"".join(received), dtype="<u2")
    assert len(samples) >= 50 * fmt.frame_samples
    expected = (np.arange(len(samples)) % 65536).astype("<u2")
    assert np.array_equal(samples, expected)
    assert dropped == 0
    assert produced >= len(samples) // fmt.frame_samples


async def test_closing_joins_the_thread_and_closes_the_pipe(
    open_pattern: Callable[[AudioFormat], Awaitable[NativeSource]],
) -> None:
    before_fds = set(os.listdir("/proc/self/fd"))
    sources = [await open_pattern(AudioFormat()) for _ in range(4)]
    assert audio_threads().count("edge-audio") == 4
    await sources[0].receive()
    for source in sources:
        await source.aclose()
    assert audio_threads() == []
    assert set(os.listdir("/proc/self/fd")) == before_fds


async def test_a_full_ring_drops_and_counts_instead_of_blocking_the_backend(
    open_pattern: Callable[[AudioFormat], Awaitable[NativeSource]],
) -> None:
    fmt = AudioFormat(16000, 1, 5)
    source = await open_pattern(fmt)
    await until_dropping(source)  # 5 ms frames into a ring of RING_FRAMES, nobody reading
    # The ring kept the oldest frames whole, and the backend went on producing.
    received = await receive_frames(source, RING_FRAMES)
    samples = np.frombuffer(b"".join(received), dtype="<u2")[: RING_FRAMES * fmt.frame_samples]
    assert np.array_equal(samples, np.arange(len(samples), dtype="<u2"))
    produced, dropped = source.counters()
    assert dropped > 0
    assert produced >= RING_FRAMES + dropped


async def test_no_sound_server_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/nothing-here")
    for kind in ("mic", "system"):
        with pytest.raises(CaptureError, match=rf"^{kind}: no PulseAudio server reachable at .*"):
            await NativeSource.open(SourceSpec(kind), AudioFormat())
    assert audio_threads() == []


async def test_bad_format_is_refused_by_the_shim_too() -> None:
    mod = native_module()
    err = mod.ffi.new("char[256]")
    handle = mod.lib.edge_audio_open(2, mod.ffi.NULL, 1000, 1, 320, 10, err, 256)
    assert handle == mod.ffi.NULL
    assert mod.ffi.string(err) == b"unsupported sample rate"


async def test_counters_stay_readable_after_close(
    open_pattern: Callable[[AudioFormat], Awaitable[NativeSource]],
) -> None:
    opened = time.monotonic()
    source = await open_pattern(AudioFormat(16000, 1, 5))
    await until_dropping(source)  # so the counters are not all zero
    before = source.counters()
    await source.aclose()
    closed = time.monotonic() - opened
    after = source.counters()
    assert after[1] >= before[1] > 0
    # Real counts, not freed memory: no more 5 ms frames than the source was open for.
    assert before[0] <= after[0] <= closed / 0.005 + 1
    assert source.counters() == after
