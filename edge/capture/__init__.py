"""Audio capture: sources through the native shim or in Python, recording, the ASR uplink.

Modules:
    sources    -- parse a source name; the native shim (PulseAudio, macOS), tone, file, pattern
    capture    -- ``Capture``: one capture, a handle whose lifetime is its own nursery
    recording  -- the recording: WAV while recording (readable after a crash), FLAC at the end
    uplink     -- the speech-recognition uplink: one WebSocket per capture, backfill after outages
"""

__all__ = ["capture", "recording", "sources", "uplink"]
