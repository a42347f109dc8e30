"""Agents: work handed between this edge, the cloud, other edges and local agents.

Modules:
    tasks    -- the tasks' handle: states, events, cancel, deadlines, the store
    relay    -- the tunnel side: requests in, asks out (``agent_ask``), dedup and resume
    identity -- this edge's stable agent id and its name
    a2a      -- the local A2A endpoint as plain code (JSON-RPC in, A2A JSON out)
    token    -- the A2A bearer token local A2A clients present
"""

from __future__ import annotations

__all__ = ["a2a", "identity", "relay", "tasks", "token"]
