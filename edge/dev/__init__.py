"""The fake cloud, shipped because ``edge dev-cloud`` is a user command.

Modules:
    cloud    -- a real trio-websocket server that plays the cloud (tunnel and ASR endpoint)
    asr      -- the fake cloud's speech recognition: names the tones in each second
    gateway  -- a scripted OpenAI-compatible chat endpoint (the model gateway) over HTTP
    console  -- ``edge dev-cloud`` at the terminal: the commands typed on stdin, run side by side
    commands -- the stdin command table, from which ``--help`` and ``help`` are written (no trio)
"""

__all__ = ["asr", "cloud", "gateway"]
