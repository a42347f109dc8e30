"""Source specs, formats and the pure-Python sources (no sound server needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import trio

from edge.capture.sources import (
    AudioFormat,
    SourceSpec,
    open_source,
    parse_source,
    zero_audio_warning,
)
from edge.cli.capture_view import meter, status_line
from edge.dev.asr import describe_tones
from edge.errors import CaptureError, SourceEnded

from .conftest import write_tone


def test_specs() -> None:
    assert parse_source("mic") == SourceSpec("mic")
    assert parse_source("system:alsa_output.pci") == SourceSpec("system", "alsa_output.pci")
    assert parse_source(" tone:440 ") == SourceSpec("tone", "440")
    assert parse_source("file:/a:b.wav") == SourceSpec("file", "/a:b.wav")
    assert str(parse_source("mic:usb")) == "mic:usb"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "a source is needed"),
        ("speakers", "unknown source 'speakers'"),
        ("tone:", "tone: needs an argument"),
        ("tone:abc", "the frequency must be a number"),
        ("tone:-5", "between 0 and 24000 Hz"),
        ("tone:nan", "between 0 and 24000 Hz"),
        ("pattern:3", "takes no argument"),
        ("mic:", "the device name is empty"),
        ("file:", "file: needs an argument"),
    ],
)
def test_bad_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CaptureError, match=message):
        parse_source(text)


def test_formats() -> None:
    fmt = AudioFormat(16000, 2, 20)
    assert fmt.frame_samples == 320 and fmt.frame_bytes == 1280
    for kwargs, message in (
        ({"sample_rate": 12345}, "unsupported sample rate 12345"),
        ({"channels": 0}, "unsupported channel count 0"),
        ({"frame_ms": 1}, "unsupported frame length"),
        ({"sample_rate": 11025, "frame_ms": 20}, "unsupported frame length"),
    ):
        with pytest.raises(CaptureError, match=message):
            AudioFormat(**kwargs)  # type: ignore[arg-type]


async def collect(spec: str, seconds: float, fmt: AudioFormat) -> bytes:
    source = await open_source(parse_source(spec), fmt)
    chunks = []
    try:
        with trio.move_on_after(seconds):
            while True:
                chunks.append((await source.receive()).pcm)
    finally:
        await source.aclose()
    return b"".join(chunks)


async def test_tone_source_is_paced_in_real_time_and_exact(autojump_clock: trio.abc.Clock) -> None:
    pcm = await collect("tone:1000", 2.0, AudioFormat())
    samples = np.frombuffer(pcm, "<i2")
    assert len(samples) == 2 * 16000 - 320  # the frame due exactly at 2.0 s is not yet out
    assert describe_tones(samples[:16000], 16000) == "tone 1000 Hz"


async def test_file_source_converts_rate_and_channels_and_ends(tmp_path: Path) -> None:
    path = tmp_path / "stereo48k.wav"
    t = np.arange(48000) / 48000
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 660 * t)] * 2, axis=1)
    soundfile.write(path, stereo, 48000)
    source = await open_source(parse_source(f"file:{path}"), AudioFormat())
    chunks = []
    with pytest.raises(SourceEnded):
        while True:
            chunks.append((await source.receive()).pcm)
    await source.aclose()
    samples = np.frombuffer(b"".join(chunks), "<i2")
    assert len(samples) == 16000
    assert describe_tones(samples, 16000) == "tone 660 Hz"


async def test_file_source_errors(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot read"):
        await open_source(parse_source(f"file:{tmp_path}/missing.wav"), AudioFormat())
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(CaptureError, match="cannot read"):
        await open_source(parse_source(f"file:{junk}"), AudioFormat())
    write_tone(tmp_path / "ok.wav", 440, seconds=0.1)


def test_silence_is_a_permission_hint_only_where_it_means_one() -> None:
    mic = SourceSpec("mic")
    assert zero_audio_warning(mic, 5, platform="linux") is None
    assert zero_audio_warning(mic, 1, platform="darwin") is None
    warning = zero_audio_warning(SourceSpec("system"), 4, platform="darwin")
    assert warning is not None and "Screen & System Audio Recording" in warning
    assert zero_audio_warning(SourceSpec("tone", "440"), 9, platform="darwin") is None


def test_live_view_lines() -> None:
    assert meter(None) == " " * 20 and meter(0.0) == "█" * 20 and meter(-30.0).startswith("█" * 10)
    status = {
        "chatId": "c",
        "source": "mic",
        "seconds": 65.2,
        "level": {"peakDb": -6.0},
        "droppedFrames": {"source": 1, "recording": 2},
        "asr": {"connected": False, "backlogSeconds": 3.0},
    }
    line = status_line(status, "hello")
    assert line.startswith("mic ") and "01:05" in line and "3 dropped" in line
    assert "asr reconnecting (3 s waiting)" in line and line.endswith("… hello")
