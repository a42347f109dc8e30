"""The fake cloud, shipped because ``edge dev-cloud`` is a user command.

Modules:
    cloud    -- a real trio-websocket server that plays the cloud (tunnel and ASR endpoint)
    asr      -- the fake cloud's speech recognition: names the tones in each second
    gateway  -- a scripted OpenAI-compatible chat endpoint (the model gateway) over HTTP
"""

__all__ = ["asr", "cloud", "gateway"]
