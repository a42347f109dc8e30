"""The model gateway: ``edge ask`` and ``edge chat`` against an OpenAI-compatible model.

When connected, questions go to the cloud's model gateway under the tunnel's
token, through the daemon (the token never leaves it); with ``--offline``, to a
model server on this machine. Either way the same loop runs, and the model's
tool calls take the path every tool call takes.

Modules:
    client  -- GatewayClient: one chat/completions endpoint over httpx, streamed, every
               failure a GatewayError
    loop    -- converse: turns and their tool calls (run at once) until the model answers,
               told as events
    desk    -- AskDesk: the daemon's side of POST /ask (the tunnel's token, the cloud's
               tools), GatewayClients: one open client per gateway and token
"""

from __future__ import annotations

from .client import GatewayClient
from .loop import Answer, converse, short_args

__all__ = ["Answer", "GatewayClient", "converse", "short_args"]
