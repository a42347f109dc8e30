"""MCP test servers: edge's own misbehaving ones, the published mcp-server-time, server-everything.

``@modelcontextprotocol/server-everything`` (npm) is looked for in
``.ci/node/node_modules`` (``.ci/run`` installs it there) or on PATH. Without
it those tests skip with the command that installs it, except under
``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from edge.mcp import Timing
from edge.mcp.config import McpServerConfig, parse_server

SERVERS = Path(__file__).parent / "servers"
REPO = Path(__file__).parents[2]
EVERYTHING_PACKAGE = "@modelcontextprotocol/server-everything"
EVERYTHING_INSTALL = f"npm install --prefix .ci/node {EVERYTHING_PACKAGE}"

#: Short delays so supervision tests run in seconds.
FAST = Timing(
    init_timeout=2.0,
    ping_interval=0.5,
    ping_timeout=1.0,
    crash_loop_failures=3,
    crash_loop_window=30.0,
    stable_after=5.0,
    park_seconds=2.0,
    backoff_first=0.05,
    backoff_cap=0.2,
)


def behave(name: str = "behave", mark: Path | None = None, **extra: object) -> McpServerConfig:
    args = [str(SERVERS / "behave.py")]
    if mark is not None:
        args += ["--mark", str(mark)]
    return parse_server(name, {"command": sys.executable, "args": args, **extra})


def silent(name: str = "silent") -> McpServerConfig:
    return parse_server(name, {"command": sys.executable, "args": [str(SERVERS / "silent.py")]})


def time_server(name: str = "time") -> McpServerConfig:
    """The published ``mcp-server-time`` (PyPI), a test dependency of edge."""
    return parse_server(name, {"command": sys.executable, "args": ["-m", "mcp_server_time"]})


def everything_command() -> str:
    local = REPO / ".ci" / "node" / "node_modules" / ".bin" / "mcp-server-everything"
    if local.exists():
        return str(local)
    found = shutil.which("mcp-server-everything")
    if found:
        return found
    message = f"{EVERYTHING_PACKAGE} is not installed ({EVERYTHING_INSTALL})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the MCP interop tests: {message}")
    pytest.skip(message)
