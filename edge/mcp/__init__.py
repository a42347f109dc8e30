"""MCP servers as edge tools.

Modules:
    config      -- ``mcp.json``: which servers, how to reach them (no I/O beyond the file)
    names       -- (server, tool) ↔ OpenAI-valid edge tool names, by lookup
    results     -- MCP results as edge results; OpenAI function-calling conversion
    metrics     -- per-tool and per-server figures; the status thresholds
    timing      -- every delay a server's supervision uses (``Timing``, overridable in tests)
    sdk         -- the SDK session's shape (``McpSession``); the SDK's private names, here only
    session     -- connecting: ``open_session``, the tool list, ``probe_server``, failure texts
    requests    -- a request to a server, and the queue its sessions take requests from
    connection  -- one connected session: a task per request, the pinger, idle close
    server      -- ``McpServer``: a server's handle; its sessions under ``edge.supervise``

The MCP nursery that runs the servers and registers their tools is
``edge.nurseries.mcp``; the restart supervision is ``edge.supervise``.
"""

from __future__ import annotations

from .config import (
    McpServerConfig as McpServerConfig,
    load_servers as load_servers,
    parse_server as parse_server,
    remove_server as remove_server,
    save_server as save_server,
)
from .names import ToolNames as ToolNames
from .results import map_call_result as map_call_result
from .sdk import McpSession as McpSession
from .server import McpServer as McpServer, Progress as Progress, Status as Status
from .session import (
    describe_failure as describe_failure,
    fetch_tools as fetch_tools,
    open_session as open_session,
    probe_server as probe_server,
)
from .timing import Timing as Timing

__all__ = [
    "McpServer",
    "McpServerConfig",
    "McpSession",
    "Progress",
    "Status",
    "Timing",
    "ToolNames",
    "describe_failure",
    "fetch_tools",
    "load_servers",
    "map_call_result",
    "open_session",
    "parse_server",
    "probe_server",
    "remove_server",
    "save_server",
]
