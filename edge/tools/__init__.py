"""Tools edge runs for the cloud, and the rules they run under.

Modules:
    policy    -- the local policy: which tools, which directories
    registry  -- one registry for every kind of tool (built-ins now; MCP sessions,
                 plugin runners and runtimes register the same way)
    execute   -- the one path every call takes: lookup, policy, approval, schema,
                 timeout, result mapping, truncation
    process   -- subprocesses in their own process group, torn down as a group
    builtin   -- terminal, code, file_read, file_write, file_ops, grep
"""
