"""The PulseAudio backend against a server that goes away mid-capture."""

from __future__ import annotations

import pytest
import trio

from edge.capture.capture import CaptureRequest, open_capture
from edge.capture.sources import AudioFormat, parse_source

from .conftest import PulseServer, audio_threads


async def test_a_dying_sound_server_ends_the_capture_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = PulseServer()
    try:
        monkeypatch.setenv("PULSE_SERVER", server.server)
        request = CaptureRequest("doomed", parse_source("system"), AudioFormat())
        async with open_capture(request) as capture:
            with trio.fail_after(5):
                while capture.frames < 10:  # the null sink's monitor delivers silence
                    await trio.sleep(0.02)
            assert audio_threads() == ["edge-audio"]  # one native thread per capture
            server.process.kill()
            with trio.fail_after(5):
                while capture.running:
                    await trio.sleep(0.02)
            summary = capture.summary
        assert summary is not None
        assert summary["error"].startswith("system: the sound server"), summary["error"]
        assert summary["frames"] >= 10
        assert audio_threads() == []
    finally:
        server.close()
