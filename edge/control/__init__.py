"""The control API: a small HTTP API on loopback for the cloud's web page and the CLI.

Served by hypercorn on trio. Routes (see README "Control API")::

    GET  /                  the dashboard page (its files under GET /static/NAME)
    GET  /health            version, uptime, tunnel status, effective tool count
    GET  /tunnel/status     the tunnel's state (never the token)
    POST /tunnel/activate   {"jwt": ..., "tunnelUrl": ...}: connect with these credentials
    POST /tunnel/disconnect
    POST /record/start      {"chatId", "source", "asr"?, "sampleRate"?, "channels"?, "format"?}
    POST /record/stop       ?chatId=ID stops one capture; without it, all
    GET  /record/status     every live capture
    GET  /record/events     server-sent events: transcripts, captures started and ended
    GET  /events            the same stream (MCP server status changes included)
    GET  /mcp/servers       every MCP server: status, metrics, per-tool figures
    POST /mcp/servers/NAME/test   connect on a fresh connection, list tools, time it
                                  (?timeout=SECONDS, default 10)
    POST /mcp/reload        {"file"?}: read mcp.json again, start/stop/restart what changed
                            (400 with the reason when it does not load: the servers stay)
    GET  /tools             every tool: source, allowed, approved, effective; and what cannot
                            run, with the reason
    GET  /tools/openai      the effective tools in OpenAI function-calling form
    POST /tools/batch       {"toolCalls": [OpenAI tool calls], "concurrency"?}: run them
                            under the cloud's approval and the local policy
    POST /tools/call        {"name", "args"?}: one call under the local policy alone, on the
                            workers (needs the local key: ``edge tools call``)
    GET  /calls             the tool calls in flight and the last finished (?limit=N), newest
                            first: id, tool, start, duration, outcome, size; never args or output
    GET  /plugins           every plugin: status, runner PID, tools, restarts, last error
    POST /plugins/ID/reload restart one plugin's runner, its manifest read again
    POST /plugins/ID/config {"values": {KEY: VALUE}}: into its config.toml, pushed to it
    POST /ask               {"messages", "model"?}: the cloud's model gateway, with the tools,
                            answered as a stream of NDJSON events
    GET  /update            versions, last check, how this edge updates
    POST /update            {"to"?, "allowDowngrade"?, "now"?}: verify, drain, install, restart
    POST /stop              a clean stop, as on SIGTERM (needs the local key: ``edge stop``)
    GET  /.well-known/agent-card.json   the A2A agent card: this edge, its tools as skills
    POST /a2a               A2A v1.0 JSON-RPC: send, stream, get, list, cancel, subscribe to
                            tasks (needs ``Authorization: Bearer`` the A2A token)
    GET  /agents            the agent id, the remote agents, tasks in flight and recent
    GET  /schedule          the scheduled tasks (each with its last run) and the scheduler's state
    POST /schedule          {"at"|"every"|"cron", "tz"?, "tool", "args"?, "name"?, "missed"?}:
                            a new task (needs the local key, as every /schedule change does)
    POST /schedule/ID/run   run a task now; also /pause, /resume, /remove
    GET  /schedule/history  ?task=ID&limit=N: runs, missed and skipped slots, newest first

Who may call, in ``BrowserGuard`` in front of everything: on Linux only
processes of the user edge runs as (or root), the owner of the peer's socket
found by the kernel (``peer``; another user's request gets 403, and so does one
whose connection is closed before it is checked). Then browser safety: the
Host header must be a loopback name (a DNS-rebinding page arrives with its own
host name), and a request carrying an Origin must come from a configured
origin, preflights included. Starlette's CORS middleware answers the allowed
preflights; the guard adds ``Access-Control-Allow-Private-Network`` for
browsers that ask before a public page may call a loopback address. The
dashboard is of the API's own origin (``http://`` and the Host it was reached
at); what it POSTs must carry this run's CSRF token (``X-Edge-CSRF``), and what
a browser loads for another site's page is refused.

Modules:
    app     -- ControlTargets, build_app (guard, routes, error answers) and serve_control
    guard   -- BrowserGuard (the peer's uid, Host and Origin checks, the dashboard's CSRF
               token, private-network header) and CORS
    peer    -- the owner uid of a loopback connection's peer socket (netlink, /proc/net/tcp)
    body    -- reading requests: size-limited JSON objects, query parameters
    key     -- LocalKey: the per-run key in the state directory that CLI-only routes need
    tunnel  -- /tunnel/*: status, activate, disconnect (TunnelControl)
    record  -- /record/*: start, stop, status of captures (RecordControl)
    events  -- GET /events and GET /record/events: the EventHub as server-sent events
    mcp     -- /mcp/*: server status, a timed test, a reload of mcp.json (McpControl)
    tools   -- /tools/*: every tool, the OpenAI list, batch and local calls (ToolsControl)
    plugins -- /plugins/*: status, reload and config of plugins (PluginsControl)
    ask     -- POST /ask: a question to the model gateway as an event stream (AskControl)
    update  -- GET and POST /update: what the daemon knows of updates, an update (UpdateControl)
    calls   -- GET /calls: the tool calls in flight and the last finished (CallsControl)
    lifecycle -- POST /stop: the daemon's clean stop, the reply sent first (local key only)
    schedule -- /schedule/*: tasks, a new one, run, pause, resume, remove, history
               (ScheduleControl; state changes need the local key)
    agents  -- the local A2A endpoint, its agent card, GET /agents (AgentsControl)
    dashboard -- GET / and /static/NAME: the dashboard page, its CSRF token, strict headers
"""

from __future__ import annotations

from .agents import AgentsControl as AgentsControl
from .app import (
    ControlTargets as ControlTargets,
    build_app as build_app,
    serve_control as serve_control,
)
from .ask import AskControl as AskControl
from .calls import CallsControl as CallsControl
from .mcp import McpControl as McpControl
from .plugins import PluginsControl as PluginsControl
from .record import RecordControl as RecordControl
from .schedule import ScheduleControl as ScheduleControl
from .tools import ToolsControl as ToolsControl
from .tunnel import TunnelControl as TunnelControl
from .update import UpdateControl as UpdateControl

__all__ = [
    "AgentsControl",
    "AskControl",
    "CallsControl",
    "ControlTargets",
    "McpControl",
    "PluginsControl",
    "RecordControl",
    "ScheduleControl",
    "ToolsControl",
    "TunnelControl",
    "UpdateControl",
    "build_app",
    "serve_control",
]
