"""Tools edge runs for the cloud, and the rules they run under.

Modules:
    policy    -- the local policy: which tools, which directories
    registry  -- one registry for every kind of tool (built-ins, MCP tools, plugin tools and
                 declared tools register the same way)
    quickcheck -- a fast yes for args that surely fit a simple schema (else jsonschema says)
    execute   -- the one path every call takes: lookup, policy, approval, schema, timeout,
                 result mapping, truncation; one log line and one record per call
    audit     -- CallLog: the calls in flight and the last finished (never args or output)
    gate      -- the cloud's approval for the live connection, applied with the policy
    batch     -- a batch of calls, a bounded number at once, results in order
    process   -- child processes spawned for a call, contained for its lifetime
    contain   -- Containment: the daemon's handle on how calls are contained (cgroup v2,
                 subreaper, process group), and each call's processes
    orphans   -- CallTree: a call's processes as the subreaper sees them, re-parented ones too
    leftovers -- per-call records in the state directory, and the start-up sweep after kill -9
    procfs    -- reading /proc and cgroup2, the cgroup probe, prctl
    beneath   -- file tools' paths opened beneath a root's descriptor (openat2, or a portable walk)
    walk      -- directory trees by descriptor: list, find, copy, move, delete, links never followed
    builtin   -- terminal, code, file_read, file_write, file_ops, grep
    runtimes  -- declared tools (tool.toml) and the node, native and wasm runtimes
"""

__all__ = [
    "audit", "batch", "beneath", "builtin", "contain", "execute", "gate", "leftovers", "orphans",
    "policy", "process", "procfs", "quickcheck", "registry", "runtimes", "walk",
]  # fmt: skip
