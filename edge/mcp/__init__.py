"""MCP servers as edge tools.

Modules:
    config   -- ``mcp.json``: which servers, how to reach them (no I/O beyond the file)
    names    -- (server, tool) ↔ OpenAI-valid edge tool names, by lookup
    results  -- MCP results as edge results; OpenAI function-calling conversion
    metrics  -- per-tool and per-server figures; the status thresholds
    session  -- ``McpServer``: one supervised session task per server

The MCP nursery that runs the servers and registers their tools is
``edge.nurseries.mcp``.
"""
