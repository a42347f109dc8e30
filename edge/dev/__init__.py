"""The fake cloud, shipped because ``edge dev-cloud`` is a user command.

Modules:
    cloud  -- a real trio-websocket server that plays the cloud (tunnel and ASR endpoint)
    asr    -- the fake cloud's speech recognition: names the tones in each second
"""

__all__ = ["asr", "cloud"]
