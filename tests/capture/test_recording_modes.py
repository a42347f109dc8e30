"""Recordings are private: files mode 0600, the directories edge creates for them 0700,
whatever the umask; a directory the user made keeps the mode the user gave it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import soundfile
import trio

from edge.capture.recording import WAV_HEADER_BYTES
from edge.daemon import Daemon

from ..conftest import make_config, until

EDGE = [sys.executable, "-m", "edge"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _holds_audio(out: Path) -> bool:
    partials = list(out.glob("*.partial.wav"))
    return bool(partials) and partials[0].stat().st_size > WAV_HEADER_BYTES


def capture(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """``edge capture`` as a user with umask 000 would run it: nothing narrows the modes."""
    return subprocess.Popen(
        [*EDGE, "capture", "--source", "pattern", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
        umask=0,
    )


def test_a_recording_and_the_directories_made_for_it_are_private(tmp_path: Path) -> None:
    out = tmp_path / "new" / "recordings"
    proc = capture(tmp_path, "--out", str(out))
    try:
        deadline = time.monotonic() + 15
        # Until the first second of audio is in the file: a stop before any frame
        # came would leave an empty WAV, FLAC holding no empty stream.
        while not _holds_audio(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        [partial] = out.glob("*.partial.wav")
        assert mode(partial) == 0o600  # private while it is written, not only once done
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    [flac] = out.glob("*.flac")
    assert soundfile.info(str(flac)).frames > 0
    assert mode(flac) == 0o600
    assert mode(out) == 0o700
    assert mode(out.parent) == 0o700


def test_a_directory_the_user_made_keeps_its_mode(tmp_path: Path) -> None:
    out = tmp_path / "shared"
    out.mkdir()
    out.chmod(0o755)
    proc = capture(tmp_path, "--out", str(out), "--duration", "0.5", "--format", "wav")
    _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    [wav] = out.glob("*.wav")
    assert mode(wav) == 0o600
    assert mode(out) == 0o755


async def test_the_daemon_records_privately_into_the_workspace(
    nursery: trio.Nursery, workspace: Path
) -> None:
    daemon: Daemon = await nursery.start(Daemon(make_config(workspace)).run)
    with trio.fail_after(20):
        await daemon.targets.record.record_start("c", "pattern", asr=False)
        await until(lambda: daemon.captures.get("c").frames > 10)
        [summary] = await daemon.targets.record.record_stop("c")
        await daemon.stop()
    recordings = workspace / "recordings"
    [flac] = recordings.iterdir()
    assert summary["file"] == str(flac)
    assert mode(flac) == 0o600
    assert mode(recordings) == 0o700
