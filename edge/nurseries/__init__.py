"""The long-lived handles the daemon's root nursery supervises.

Each is started with ``await nursery.start(...)`` and lives exactly as long as
its cancel scope; each reports to its owner through callbacks and never imports
it. Modules below this package never import it (a test checks).

Modules:
    tunnel     -- the WebSocket tunnel to the cloud: the handle, one task per attempt, backoff
    connection -- one connection of the tunnel: handshake, then reader, writer, heartbeat
    failures   -- what ended a tunnel attempt: a refused token, a problem to retry, a bug
    outbox     -- what the tunnel has to send, kept across reconnects until confirmed
    journal    -- calls running and results unconfirmed, in the store: nothing lost to kill -9
    workers    -- the tool-call workers: one task per call, bounded, cancellable by id
    captures   -- ``{chat_id: capture}``, each capture its own nursery; the /record operations
    mcp        -- one supervised session task per MCP server, their tools in the registry
    plugins    -- one supervised runner process per plugin (or one for all), their tools
                  in the registry, config pushes, reloads, the spare runner
    updates    -- the daily update check, and the verified install the daemon stops for
"""

__all__ = [
    "captures", "connection", "failures", "journal", "mcp", "outbox", "plugins", "tunnel",
    "updates", "workers",
]  # fmt: skip
