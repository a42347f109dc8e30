"""The MCP SDK private names edge relies on (edge.mcp.sdk): a failure here says which moved."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio
from mcp.shared.exceptions import MCPError

import edge
from edge.mcp.sdk import connection_already_closed, create_http_client
from edge.mcp.session import open_session

from ..conftest import until
from .conftest import STARTUP, UP, behave

#: Where edge names private parts of the SDK: a ``_dispatcher`` or an ``mcp.<...>._module``.
PRIVATE = re.compile(r"\b_dispatcher\b|\bmcp(?:\.\w+)*\._\w+")


async def test_the_dispatchers_closed_flag_exists_and_flips_when_the_server_goes() -> None:
    renamed = (
        "the MCP SDK no longer has ClientSession._dispatcher._closed; "
        "edge.mcp.sdk.connection_already_closed must read its new name"
    )
    with trio.fail_after(UP):
        async with open_session(behave(), init_timeout=STARTUP) as (session, _):
            dispatcher = getattr(session, "_dispatcher", None)
            assert dispatcher is not None, renamed
            assert isinstance(getattr(dispatcher, "_closed", None), bool), renamed
            assert connection_already_closed(session) is False, "closed while connected"
            with pytest.raises(MCPError):
                await session.call_tool("crash", {})  # the server exits mid-call
            await until(lambda: connection_already_closed(session), poll=0.01)
        assert connection_already_closed(session) is True, renamed


async def test_the_sdks_http_client_factory_is_there() -> None:
    try:
        client = create_http_client({"X-Edge-Test": "1"})
    except ImportError as exc:
        pytest.fail(
            "the MCP SDK no longer has mcp.shared._httpx_utils.create_mcp_http_client "
            f"({exc}); edge.mcp.sdk.create_http_client must follow it"
        )
    async with client:
        assert client.headers["X-Edge-Test"] == "1"


def test_only_the_adapter_names_private_parts_of_the_sdk() -> None:
    root = Path(edge.__file__).parent
    offenders = [
        f"{path.relative_to(root)}: {match.group(0)}"
        for path in sorted(root.rglob("*.py"))
        if path != root / "mcp" / "sdk.py"
        for match in PRIVATE.finditer(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "only edge/mcp/sdk.py may use the MCP SDK's private names"
