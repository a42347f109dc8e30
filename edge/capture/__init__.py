"""Audio capture: sources through the native shim or in Python, recording, the ASR uplink.

Modules:
    sources    -- parse a source name; the native shim (PulseAudio, macOS), tone, file, pattern
    capture    -- ``Capture``: one capture, a handle whose lifetime is its own nursery
    pump       -- one task reading many captures' rings; one sound-server capture per device
    recording  -- the recording: WAV while recording (readable after a crash), FLAC at the end
    uplink     -- the speech-recognition uplink: one WebSocket per capture, backfill after outages
    fastsend   -- a binary message written to a trio-websocket connection with no schedule point

``pump`` and ``fastsend`` serve the modules above and are not part of the package's surface.
"""

__all__ = ["capture", "recording", "sources", "uplink"]
