"""The C shim: the ring buffer, the pipe wake-up and thread lifecycle, without a sound server."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import trio
from hypothesis import given, settings, strategies as st

from edge.capture.sources import AudioFormat, NativeSource, SourceSpec, native_module
from edge.errors import CaptureError

from .conftest import audio_threads

FRAME = 8  # bytes per frame in the ring tests


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


async def test_pattern_source_delivers_every_sample_in_order_across_the_thread() -> None:
    """The native test pattern is a running counter: any lost or reordered frame shows."""
    fmt = AudioFormat(16000, 1, 20)
    source = await NativeSource.open(SourceSpec("pattern"), fmt)
    received = []
    try:
        with trio.move_on_after(1.0):
            while True:
                chunk = await source.receive()
                assert len(chunk.pcm) == chunk.frames * fmt.frame_bytes
                assert chunk.t_ready <= trio.current_time()
                received.append(chunk.pcm)
        produced, dropped = source.counters()
    finally:
        await source.aclose()
    samples = np.frombuffer(b"".join(received), dtype="<u2")
    assert len(samples) >= 40 * fmt.frame_samples
    expected = (np.arange(len(samples)) % 65536).astype("<u2")
    assert np.array_equal(samples, expected)
    assert dropped == 0
    assert produced >= len(samples) // fmt.frame_samples


async def test_closing_joins_the_thread_and_closes_the_pipe() -> None:
    before_fds = set(os.listdir("/proc/self/fd"))
    sources = [await NativeSource.open(SourceSpec("pattern"), AudioFormat()) for _ in range(4)]
    assert audio_threads().count("edge-audio") == 4
    await sources[0].receive()
    for source in sources:
        await source.aclose()
    assert audio_threads() == []
    assert set(os.listdir("/proc/self/fd")) == before_fds


async def test_a_full_ring_drops_and_counts_instead_of_blocking_the_backend() -> None:
    source = await NativeSource.open(SourceSpec("pattern"), AudioFormat(16000, 1, 5))
    try:
        await trio.sleep(1.0)  # 200 frames of 5 ms into a ring of 100, nobody reading
        produced, dropped = source.counters()
        assert dropped > 0
        got = 0
        with trio.move_on_after(0.05):
            while True:
                got += (await source.receive()).frames
        assert got >= 100 - 1
    finally:
        await source.aclose()


async def test_no_sound_server_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/nothing-here")
    for kind in ("mic", "system"):
        with pytest.raises(CaptureError, match=rf"^{kind}: cannot record from .*"):
            await NativeSource.open(SourceSpec(kind), AudioFormat())
    assert audio_threads() == []


async def test_bad_format_is_refused_by_the_shim_too() -> None:
    mod = native_module()
    err = mod.ffi.new("char[256]")
    handle = mod.lib.edge_audio_open(2, mod.ffi.NULL, 1000, 1, 320, 10, err, 256)
    assert handle == mod.ffi.NULL
    assert mod.ffi.string(err) == b"unsupported sample rate"


async def test_counters_stay_readable_after_close() -> None:
    source = await NativeSource.open(SourceSpec("pattern"), AudioFormat(16000, 1, 5))
    await trio.sleep(0.8)  # overflow the ring so the counters are not all zero
    before = source.counters()
    await source.aclose()
    after = source.counters()
    assert after[1] >= before[1] > 0
    assert after[0] >= before[0] and after[0] < 1000
