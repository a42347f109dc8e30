"""edge: a trio daemon that is the cloud brain's pair of hands on this machine.

Subpackages:
    protocol   -- the wire protocols as plain code, no I/O (tunnel frames, results, ASR, OpenAI)
    net        -- the WebSocket client, reconnect backoff, one text for every failure
    tools      -- the one tool registry, the local policy, the executor, the built-in tools
    mcp        -- MCP servers as edge tools (config, names, results, sessions)
    plugins    -- Python plugins in supervised runner processes (manifest, host, runner)
    capture    -- audio capture: sources, recording, the ASR uplink
    gateway    -- the model gateway: edge ask/chat's client and conversation loop
    update     -- edge update: the signed versions manifest, the hash-checked install
    service    -- edge service: the systemd user unit and the launchd agent
    scheduler  -- tool runs on a timetable (once, interval, cron) that survives restarts
    agents     -- work handed between agents: tasks, the tunnel relay, the local A2A endpoint
    nurseries  -- the long-lived handles the root nursery supervises
    control    -- the control API on loopback, one module per route area
    cli        -- the ``edge`` command, one module per command group
    dev        -- the fake cloud behind ``edge dev-cloud`` (and its model gateway)

Modules:
    plugin     -- the SDK plugin authors import: Plugin, Context, tools from type hints
    daemon     -- the root nursery: builds the children, starts them, routes their reports
    supervise  -- restarts with jittered backoff, crash-loop parking, status
    drain      -- a child's stderr into the log at a bounded rate
    threads    -- blocking opens in a thread the caller may abandon, closed whoever comes second
    config     -- configuration from TOML and flags (and where each value came from)
    doctor     -- edge doctor's checks of this machine's set-up, one function each
    settings   -- every key config.toml may hold (type, range), and the strict check
    errors     -- the one exception tree
    exitcodes  -- the exit codes of the edge command, in one place
    build      -- which edge this is: the version and, from a git checkout, the commit
    events     -- fan-out of the daemon's events to the control API's event streams
    fs         -- files and directories edge makes for itself (atomic, 0600 files, 0700 dirs)
    secret     -- the token wrapper that never prints, and the log scrubber
    logs       -- where the log goes and how it looks: levels, text or JSON, the 0600 file
    watch      -- ``Watched``: a value tasks wait on
    store      -- the embedded store: edge.db in the state directory (SQLite, migrations)
"""

from __future__ import annotations

from typing import Final

__version__: Final = "0.1.0"

__all__ = ["__version__"]
