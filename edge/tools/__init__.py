"""Tools edge runs for the cloud, and the rules they run under.

Modules:
    policy    -- the local policy: which tools, which directories
    registry  -- one registry for every kind of tool (built-ins, MCP tools, and later plugins
                 and runtimes register the same way)
    execute   -- the one path every call takes: lookup, policy, approval, schema, timeout,
                 result mapping, truncation
    gate      -- the cloud's approval for the live connection, applied with the policy
    batch     -- a batch of calls, a bounded number at once, results in order
    process   -- subprocesses in their own process group, torn down as a group
    builtin   -- terminal, code, file_read, file_write, file_ops, grep
"""

__all__ = ["batch", "builtin", "execute", "gate", "policy", "process", "registry"]
