"""``edge capture`` as a real process: summaries on Ctrl-C, readable files after a kill."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import numpy as np
import soundfile

from edge.dev.asr import describe_tones

EDGE = [sys.executable, "-m", "edge"]
#: Seconds an ``edge capture`` process may take to start, write or stop (a bound on failure).
WITHIN: Final = 60.0
#: What ``--duration 1`` prints for the pattern source.
DURATION_LINE: Final = re.compile(
    r"pattern: (\d+\.\d) s, (\d+) frames, dropped 0 at the source and 0 at the recorder\n"
)


def start(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "HOME": str(tmp_path)}
    return subprocess.Popen(
        [*EDGE, "capture", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wait_for_file(directory: Path, pattern: str, min_bytes: int) -> Path:
    deadline = time.monotonic() + WITHIN
    while time.monotonic() < deadline:
        for path in directory.glob(pattern):
            if path.stat().st_size >= min_bytes:
                return path
        time.sleep(0.05)
    raise AssertionError(f"no {pattern} of {min_bytes} bytes in {directory}")


def test_a_killed_capture_leaves_a_readable_recording(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    proc = start(["--source", "tone:440", "--out", str(out)], tmp_path)
    try:
        wait_for_file(out, "*.partial.wav", 2 * 32000)  # two seconds written
    finally:
        proc.kill()
        proc.communicate()
    [partial] = out.glob("*.partial.wav")
    data, rate = soundfile.read(partial, dtype="int16")
    assert rate == 16000 and len(data) >= 2 * 16000 and len(data) % 16000 == 0
    assert describe_tones(data[:16000], rate) == "tone 440 Hz"


def test_sigint_stops_every_capture_and_prints_summaries(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    proc = start(["--source", "tone:440", "--source", "tone:880", "--out", str(out), "--json"], tmp_path)
    wait_for_file(out, "*-tone2.partial.wav", 32000)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=WITHIN)
    assert proc.returncode == 0, stderr
    summaries = json.loads(stdout)
    assert [s["chatId"] for s in sorted(summaries, key=lambda s: s["chatId"])] == [
        "capture-tone1",
        "capture-tone2",
    ]
    for summary, freq in zip(sorted(summaries, key=lambda s: s["chatId"]), (440, 880), strict=True):
        assert summary["file"].endswith(".flac") and summary["seconds"] >= 1
        data, _ = soundfile.read(summary["file"], dtype="int16")
        assert len(data) == summary["frames"] * 320
        assert describe_tones(data[-16000:], 16000) == f"tone {freq} Hz"
    assert not list(out.glob("*.partial.wav"))


def test_duration_and_wav(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = start(["--source", "pattern", "--duration", "1", "--format", "wav", "--out", str(tmp_path)], tmp_path)
    stdout, stderr = proc.communicate(timeout=WITHIN)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, stderr
    line = DURATION_LINE.match(stdout)
    assert line, stdout
    seconds, frames = line.group(1), int(line.group(2))
    assert seconds == f"{frames * 0.02:.1f}"
    # The timer starts once the source is open and the pattern is paced in real time:
    # about 50 frames of 20 ms, never more than the process lived, whatever the load.
    assert 40 <= frames <= elapsed / 0.02, (frames, elapsed)
    [wav] = tmp_path.glob("*.wav")
    samples = soundfile.read(wav, dtype="int16")[0].astype(np.uint16)
    assert len(samples) == frames * 320
    assert np.array_equal(samples, np.arange(len(samples), dtype=np.uint16))


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    for args, message in (
        ([], "nothing to capture"),
        (["--source", "speaker"], "unknown source 'speaker'"),
        (["--source", "tone:440", "--rate", "1234"], "unsupported sample rate 1234"),
        (["--source", "tone:440", "--asr", "http://x"], "--asr:"),
        (["--source", "tone:440", "--duration", "0"], "--duration must be positive"),
    ):
        proc = start(args, tmp_path)
        stdout, stderr = proc.communicate(timeout=WITHIN)
        assert proc.returncode == 2, (args, stderr)
        assert stderr.startswith("edge: error: ") and message in stderr, (args, stderr)
        assert "Traceback" not in stderr


def test_a_source_that_cannot_start_stops_the_others_and_leaves_no_file(
    tmp_path: Path, pulse: str
) -> None:
    out = tmp_path / "rec"
    sources = ["--source", "mic", "--source", "system:no_such_sink"]
    proc = start([*sources, "--duration", "30", "--out", str(out)], tmp_path)
    stdout, stderr = proc.communicate(timeout=WITHIN)
    assert proc.returncode == 2, stderr
    assert stderr.startswith("edge: error: system:no_such_sink: cannot record from"), stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert "mic" not in stderr.split(":", 2)[2]  # the microphone started: only one source failed
    assert stdout == ""  # no summary of a capture that never ran
    assert list(out.iterdir()) == []
