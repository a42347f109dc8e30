"""Connecting to an MCP server: open a session, list its tools, probe it, say why it failed.

``open_session`` is the one place edge enters the SDK's transports and
``ClientSession``; the supervised server handle (``edge.mcp.server``) and the
one-off probe (``probe_server``, behind ``edge mcp test``, ``edge doctor`` and the
control API's test route) both go through it.

Failure texts (``describe_failure``) go to statuses, logs and the terminal, so a
server's URL in them is shown without what may be a secret: its userinfo and its
query (``redact_url``; hosted servers often take their key as ``?token=...``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TextIO, cast

import trio

from ..errors import ConfigError, first_leaf
from ..net.errors import describe_error
from .config import McpServerConfig
from .sdk import McpSession, create_http_client
from .timing import INIT_TIMEOUT

if TYPE_CHECKING:
    from mcp_types import InitializeResult

__all__ = [
    "ToolList", "describe_failure", "fetch_tools", "open_session", "probe_server", "redact_url",
    "redact_urls",
]  # fmt: skip

#: The log of MCP servers: the server handle, its sessions, its supervision and its
#: stderr all write here, so one logger name selects a server's whole story.
log = logging.getLogger(__name__)

#: Pages of ``tools/list`` followed at most.
MAX_TOOL_PAGES: Final = 50
#: Tools kept of one server at most.
MAX_TOOLS: Final = 2000
#: A URL in a text: a scheme, ``://``, then up to a space, a quote or an angle bracket.
URL_IN_TEXT: Final = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
#: What stands for a redacted part of a URL.
REDACTED: Final = "***"


@contextlib.asynccontextmanager
async def open_session(
    config: McpServerConfig,
    *,
    errlog: TextIO | None = None,
    message_handler: Callable[[Any], Awaitable[None]] | None = None,
    init_timeout: float = INIT_TIMEOUT,
) -> AsyncIterator[tuple[McpSession, InitializeResult]]:
    """Connect and initialize; yields ``(session, InitializeResult)``.

    Enter and leave it in the same task. A stdio server's stderr goes to
    ``errlog`` (a file with a descriptor), else to /dev/null.

    Raises:
        trio.TooSlowError: no answer to ``initialize`` within ``init_timeout``.
        ConfigError: a stdio server's working directory (``cwd``) cannot be entered.
    """
    from mcp.client.session import ClientSession

    async with contextlib.AsyncExitStack() as stack:
        if config.transport == "stdio":
            from mcp.client.stdio import StdioServerParameters, stdio_client

            assert config.command is not None
            if errlog is None:
                errlog = stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115, ASYNC230
            params = StdioServerParameters(
                command=config.command, args=list(config.args), env=config.child_env(),
                cwd=config.cwd,
            )  # fmt: skip
            try:
                read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
            except OSError as exc:
                # The child's chdir failing names the directory (Popen), not the command.
                if config.cwd is None or exc.filename is None:
                    raise
                if os.fspath(exc.filename) != os.fspath(config.cwd):
                    raise
                why = exc.strerror or type(exc).__name__
                raise ConfigError(f"working directory {config.cwd}: {why}") from exc
        elif config.transport == "sse":
            from mcp.client.sse import sse_client

            assert config.url is not None
            read, write = await stack.enter_async_context(
                sse_client(config.url, headers=dict(config.headers), timeout=init_timeout)
            )
        else:
            from mcp.client.streamable_http import streamable_http_client

            assert config.url is not None
            client = await stack.enter_async_context(create_http_client(config.headers))
            read, write = await stack.enter_async_context(
                streamable_http_client(config.url, http_client=client)
            )
        session = await stack.enter_async_context(
            ClientSession(read, write, message_handler=cast(Any, message_handler))
        )
        with trio.fail_after(init_timeout):
            init = await session.initialize()
        yield session, init


async def fetch_tools(session: McpSession) -> list[dict[str, Any]]:
    """Every tool the server lists, following pagination (bounded), as JSON dicts."""
    from mcp_types import PaginatedRequestParams

    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in page.tools
        )
        cursor = page.next_cursor
        if not cursor or len(tools) >= MAX_TOOLS:
            break
    else:
        log.warning("stopped listing tools after %d pages", MAX_TOOL_PAGES)
    return tools[:MAX_TOOLS]


class ToolList:
    """A server's tools as last listed, kept across its sessions."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.tools: list[dict[str, Any]] = []
        #: When they were last listed (trio clock); ``None``: never.
        self.fetched_at: float | None = None
        self._on_change = on_change

    async def fetch(self, session: McpSession) -> None:
        """List the tools again; ``on_change`` is called if they differ."""
        tools = await fetch_tools(session)
        self.fetched_at = trio.current_time()
        if tools != self.tools:
            self.tools = tools
            self._on_change()


def describe_failure(exc: BaseException) -> str:
    """A one-line reason for a failed connection or call, URLs in it redacted (``redact_urls``).

    The MCP cases here (a protocol error's message, a missing command, an HTTP
    error status, no answer in time); everything else as
    ``edge.net.errors.describe_error`` puts it.
    """
    return redact_urls(_failure_text(first_leaf(exc)))


def _failure_text(leaf: BaseException) -> str:
    from mcp.shared.exceptions import MCPError

    if isinstance(leaf, trio.TooSlowError):
        return "no answer in time"
    if isinstance(leaf, MCPError):
        return leaf.message
    if isinstance(leaf, FileNotFoundError):
        return f"command not found: {leaf.filename or leaf}"
    # httpx's HTTPStatusError, or httpx2's (the SDK's transports): an error status.
    reply, request = getattr(leaf, "response", None), getattr(leaf, "request", None)
    if type(leaf).__name__ == "HTTPStatusError" and reply is not None and request is not None:
        return f"HTTP {reply.status_code} {reply.reason_phrase} from {request.url}"
    return describe_error(leaf)


def redact_url(url: str) -> str:
    """``url`` without what may be a secret in it: its userinfo (``user:password@``) and
    its query or fragment (``?token=...``) each shown as ``***``; scheme, host, port
    and path as they are."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        authority = f"{REDACTED}@{authority.rsplit('@', 1)[1]}"
    cut = min((i for i in (tail.find(c) for c in "?#") if i != -1), default=-1)
    if cut != -1:
        tail = f"{tail[: cut + 1]}{REDACTED}"
    return f"{scheme}://{authority}{tail}"


def redact_urls(text: str) -> str:
    """``text`` with every URL in it redacted (``redact_url``)."""
    return URL_IN_TEXT.sub(lambda found: redact_url(found.group()), text)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


async def probe_server(
    config: McpServerConfig,
    *,
    within: float = 30.0,
    on_answer: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Connect on a connection of its own, list the tools, time both; never raises.

    Args:
        on_answer: called with the report as soon as it is known. For a server
            that answered, that is before its connection is wound down: the SDK
            stops a stdio server on its own clock (stdin closed, then SIGTERM,
            then SIGKILL, seconds apart), which no cancellation cuts short.

    Returns:
        ``{"name", "ok": True, "server", "protocolVersion", "connectMs",
        "listToolsMs", "tools", "ms"}``, or ``{"name", "ok": False, "error", "ms"}``.
    """
    started = time.perf_counter()
    report: dict[str, Any] | None = None
    try:
        with trio.fail_after(within):
            async with open_session(config, init_timeout=within) as (session, init):
                connected = _ms_since(started)
                listing = time.perf_counter()
                tools = await fetch_tools(session)
                listed = _ms_since(listing)
                report = {
                    "name": config.name,
                    "ok": True,
                    "server": {"name": init.server_info.name, "version": init.server_info.version},
                    "protocolVersion": init.protocol_version,
                    "connectMs": connected,
                    "listToolsMs": listed,
                    "tools": [t["name"] for t in tools],
                    "ms": _ms_since(started),
                }
                if on_answer is not None:
                    on_answer(report)
    except Exception as exc:
        if report is not None:  # it answered; only winding the connection down failed
            return report
        report = {
            "name": config.name,
            "ok": False,
            "error": describe_failure(exc),
            "ms": _ms_since(started),
        }
        if on_answer is not None:
            on_answer(report)
    return report
