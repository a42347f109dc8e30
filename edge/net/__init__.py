"""Network helpers shared by every link edge opens (tunnel, ASR uplinks, MCP sessions).

Modules:
    wsclient  -- a client WebSocket over a stream edge owns (every exit closes the socket)
    wslink    -- the tunnel's lean client WebSocket: wsproto read and written in the caller's task
    backoff   -- reconnect delays: exponential, capped, jittered (plain code, no I/O)
    errors    -- one line of text for whatever ended a connection
"""

__all__ = ["backoff", "errors", "wsclient", "wslink"]
