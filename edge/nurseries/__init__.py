"""The long-lived handles the daemon's root nursery supervises.

Each is started with ``await nursery.start(...)`` and lives exactly as long as
its cancel scope; each reports to its owner through callbacks and never imports
it.

Modules:
    backoff  -- reconnect delays (plain code, no I/O)
    outbox   -- what the tunnel has to send, kept across reconnects
    tunnel   -- the WebSocket tunnel to the cloud
    workers  -- the tool-call workers
    control  -- the control API on loopback (hypercorn)
"""
