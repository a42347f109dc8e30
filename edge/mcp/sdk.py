"""The MCP SDK as edge uses it: the session's shape, and the SDK's private names, here only.

Edge reaches past the SDK's public API in two places, both in this module:

- ``ClientSession._dispatcher._closed``: whether the SDK already knows the
  connection is gone, so a request that has not been sent can go out on the
  next session instead of failing (``connection_already_closed``);
- ``mcp.shared._httpx_utils.create_mcp_http_client``: the HTTP client with the
  SDK's own timeouts, for the streamable HTTP transport (``create_http_client``).

``tests/mcp/test_sdk.py`` fails, saying which, when an SDK update renames them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import httpx2
    from mcp.shared.dispatcher import ProgressFnT
    from mcp_types import (
        CallToolResult,
        EmptyResult,
        InitializeResult,
        ListToolsResult,
        PaginatedRequestParams,
    )

__all__ = ["McpSession", "connection_already_closed", "create_http_client"]


class McpSession(Protocol):
    """An initialized SDK ``ClientSession``, as far as edge calls it."""

    async def initialize(self) -> InitializeResult: ...

    async def list_tools(
        self, *, params: PaginatedRequestParams | None = None
    ) -> ListToolsResult: ...

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        read_timeout_seconds: float | None = None,
        progress_callback: ProgressFnT | None = None,
    ) -> CallToolResult: ...

    async def send_ping(self) -> EmptyResult: ...


def connection_already_closed(session: McpSession) -> bool:
    """Whether the SDK already knows the connection is gone (nothing more will be sent).

    Reads the dispatcher's closed flag; if a later SDK renames it, this says
    False and such requests simply fail instead of being carried over.
    """
    return bool(getattr(getattr(session, "_dispatcher", None), "_closed", False))


def create_http_client(headers: Mapping[str, str]) -> httpx2.AsyncClient:
    """The SDK's HTTP client (its default timeouts) sending ``headers`` on every request."""
    from mcp.shared._httpx_utils import create_mcp_http_client

    return create_mcp_http_client(headers=dict(headers))
