"""The recording: a WAV readable while it is written, and one writer for many recordings."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Final

import numpy as np
import soundfile
import trio

from edge.capture.recording import (
    WAV_HEADER_BYTES,
    Recorder,
    RecordingWriter,
    serve_recording_writer,
    wav_header,
)
from edge.capture.sources import AudioFormat

from ..conftest import until

#: Seconds a recording scenario may take on a busy machine (a bound on failure, not a speed).
WITHIN: Final = 30.0


def audio(fmt: AudioFormat, seconds: float, seed: int) -> np.ndarray:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32767, int(seconds * fmt.sample_rate) * fmt.channels, "<i2")


def feed(recorder: Recorder, samples: np.ndarray) -> None:  # type: ignore[type-arg]
    """``samples`` in 20 ms frames, as a capture feeds them."""
    frame = recorder.fmt.frame_samples * recorder.fmt.channels
    for i in range(0, len(samples), frame):
        recorder.feed(samples[i : i + frame].tobytes(), 1)


def test_the_header_is_the_one_libsndfile_writes(tmp_path: Path) -> None:
    for rate, channels in ((16000, 1), (48000, 2)):
        path = tmp_path / f"{rate}-{channels}.wav"
        samples = np.arange(1000 * channels, dtype="<i2")
        soundfile.write(path, samples.reshape(-1, channels), rate, subtype="PCM_16")
        assert path.read_bytes()[:WAV_HEADER_BYTES] == wav_header(rate, channels, 2000 * channels)


async def test_a_recording_is_readable_up_to_its_last_write_while_it_runs(
    tmp_path: Path,
) -> None:
    fmt = AudioFormat(16000, 2, 20)
    recorder = Recorder(tmp_path / "live", fmt, "flac")
    samples = audio(fmt, 2.5, seed=1)
    with trio.fail_after(WITHIN):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(recorder.run)
            feed(recorder, samples)
            # Whole seconds are written as they come; the header follows each write.
            await until(lambda: recorder.stats.frames_written == 2 * fmt.sample_rate, poll=0.01)
            partial = tmp_path / "live.partial.wav"
            # Read as its header says (the wave module trusts it; libsndfile would
            # also read a header that says nothing).
            with wave.open(str(partial)) as wav:
                assert wav.getframerate() == 16000 and wav.getnchannels() == 2
                assert wav.getnframes() == 2 * fmt.sample_rate
                data = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
            assert np.array_equal(data, samples[: data.size])
            recorder.finish()
    data, _ = soundfile.read(tmp_path / "live.flac", dtype="int16")
    assert np.array_equal(data.reshape(-1), samples)
    assert not partial.exists()


async def test_one_writer_writes_every_recording_it_is_given(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    writer: RecordingWriter = await nursery.start(serve_recording_writer)
    fmt = AudioFormat(16000, 1, 20)
    recorders = [Recorder(tmp_path / f"r{i}", fmt, "wav") for i in range(5)]
    fed = [audio(fmt, 1.5 + i / 10, seed=i) for i in range(5)]
    with trio.fail_after(WITHIN):
        async with trio.open_nursery() as recording:
            for recorder, samples in zip(recorders, fed, strict=True):
                recording.start_soon(recorder.run, writer)
                feed(recorder, samples)
            # The writer's second comes for all of them at once.
            await until(lambda: all(r.stats.frames_written for r in recorders), poll=0.01)
            assert {r.stats.frames_written for r in recorders} == {fmt.sample_rate}
            for recorder in recorders:
                recorder.finish()
    for recorder, samples in zip(recorders, fed, strict=True):
        data, _ = soundfile.read(recorder.path, dtype="int16")
        assert np.array_equal(data, samples)  # the rest written when it finished
        assert recorder.stats.frames_dropped == 0
