"""The PulseAudio backend against a server that goes away mid-capture."""

from __future__ import annotations

from typing import Final

import pytest
import trio

from edge.capture.capture import CaptureRequest, open_capture
from edge.capture.sources import AudioFormat, parse_source

from ..conftest import until
from .conftest import PulseServer, audio_threads

#: Seconds for the sound server to deliver, or for its death to be noticed (a bound on failure).
WITHIN: Final = 30.0


async def test_a_dying_sound_server_ends_the_capture_with_a_clear_error(
    private_pulse: PulseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULSE_SERVER", private_pulse.server)
    request = CaptureRequest("doomed", parse_source("system"), AudioFormat())
    async with open_capture(request) as capture:
        with trio.fail_after(WITHIN):  # the null sink's monitor delivers silence
            await until(lambda: capture.frames >= 10, poll=0.02)
        assert audio_threads() == ["edge-audio"]  # one native thread per capture
        private_pulse.process.kill()
        with trio.fail_after(WITHIN):
            await until(lambda: not capture.running, poll=0.02)
        summary = capture.summary
    assert summary is not None
    assert summary["error"].startswith("system: the sound server"), summary["error"]
    assert summary["frames"] >= 10
    assert audio_threads() == []
