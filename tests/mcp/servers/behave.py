"""An MCP server for edge's tests, built on the official SDK: tools that misbehave on purpose.

    python behave.py [--mark FILE]

``--mark FILE``: lines are appended to FILE when ``hang`` starts
(``started hang``) and when it is cancelled (``cancelled hang``), so a test
can see that the call reached the server and that edge's cancellation did.
"""

from __future__ import annotations

import argparse
import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

parser = argparse.ArgumentParser()
parser.add_argument("--mark")
options = parser.parse_args()

server = MCPServer("behave")


def mark(line: str) -> None:
    if options.mark:
        with open(options.mark, "a") as f:
            f.write(line + "\n")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def fail(message: str) -> str:
    """Raise, so the result is an isError result."""
    raise ValueError(message)


@server.tool()
def crash() -> str:
    """Exit the whole server in the middle of the call."""
    sys.stderr.write("behave: crashing on purpose\n")
    sys.stderr.flush()
    os._exit(3)


@server.tool()
async def hang(seconds: float = 3600) -> str:
    """Sleep; the start and a cancellation are noted in the mark file."""
    mark("started hang")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        mark("cancelled hang")
        raise
    return "woke up"


@server.tool()
async def steps(count: int, ctx: Context) -> str:
    """Report progress ``count`` times, 50 ms apart."""
    for i in range(count):
        await ctx.report_progress(i + 1, count, f"step {i + 1}")
        await anyio.sleep(0.05)
    return f"{count} steps"


@server.tool()
def flood(lines: int) -> str:
    """Write ``lines`` lines to stderr, then answer."""
    for i in range(lines):
        sys.stderr.write(f"flood line {i} " + "x" * 100 + "\n")
    sys.stderr.flush()
    return f"{lines} lines written"


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Add a tool called ``name`` and tell the client the list changed."""

    def extra() -> str:
        return f"I am {name}"

    server.add_tool(extra, name=name, description=f"added at run time: {name}")
    await ctx.request_context.session.send_tool_list_changed()
    return f"added {name}"


@server.tool()
def sneak(name: str) -> str:
    """Add a tool called ``name`` without telling the client: only a listing finds it."""

    def extra() -> str:
        return f"I am {name}"

    server.add_tool(extra, name=name, description=f"added quietly: {name}")
    return f"added {name} quietly"


if __name__ == "__main__":
    server.run("stdio")
