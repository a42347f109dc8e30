"""MCP test servers: edge's own misbehaving ones, the published mcp-server-time, server-everything.

``@modelcontextprotocol/server-everything`` (npm) is looked for in
``.ci/node/node_modules`` (``.ci/run`` installs it there) or on PATH. Without
it those tests skip with the command that installs it, except under
``CI=true``, where that is a failure (the ``everything`` fixture looks, before
the test starts).

Timings: a server process may take many seconds to start on a busy machine
(Python importing the SDK, three at once), so ``FAST`` gives ``initialize``
and pings ``STARTUP`` seconds and keeps only the restart delays short. Where
the init timeout is the thing tested (a server that never answers), a
``NO_PATIENCE`` timing of its own is used.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Final

import pytest
import trio

from edge.mcp import Timing
from edge.mcp.config import McpServerConfig, parse_server
from edge.nurseries.mcp import McpServers, serve_mcp
from edge.tools.registry import ToolRegistry

SERVERS = Path(__file__).parent / "servers"
REPO = Path(__file__).parents[2]
EVERYTHING_PACKAGE = "@modelcontextprotocol/server-everything"
EVERYTHING_INSTALL = f"npm install --prefix .ci/node {EVERYTHING_PACKAGE}"

#: Seconds a server process may take to start and answer (a bound on failure, not a speed).
STARTUP: Final = 60.0
#: Seconds a test waits for servers to come up (more than one attempt may be needed).
UP: Final = STARTUP + 30

#: Short restart delays, so supervision tests run in seconds; patient with slow starts.
FAST = Timing(
    init_timeout=STARTUP,
    ping_interval=0.5,
    ping_timeout=STARTUP,
    crash_loop_failures=3,
    crash_loop_window=60.0,
    stable_after=5.0,
    park_seconds=2.0,
    backoff_first=0.05,
    backoff_cap=0.2,
)
#: For a server that never answers ``initialize``: that timeout is what is tested.
NO_PATIENCE = Timing(
    init_timeout=1.0,
    crash_loop_failures=3,
    crash_loop_window=STARTUP,
    stable_after=5.0,
    park_seconds=5.0,
    backoff_first=0.05,
    backoff_cap=0.2,
)


async def start_mcp(
    nursery: trio.Nursery, registry: ToolRegistry, events: list[dict], timing: Timing
) -> McpServers:
    """An MCP nursery in ``nursery`` registering into ``registry``, its events into ``events``."""
    servers: McpServers = await nursery.start(
        lambda task_status: serve_mcp(
            registry, on_event=events.append, timing=timing, task_status=task_status
        )
    )
    return servers


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


def ghost(name: str = "ghost") -> McpServerConfig:
    """A server whose command does not exist: it fails at once, every time."""
    return parse_server(name, {"command": "/no/such/mcp-server"})


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


@pytest.fixture
def everything() -> str:
    """The reference server's command (skips, or fails under ``CI=true``, without it)."""
    return everything_command()
