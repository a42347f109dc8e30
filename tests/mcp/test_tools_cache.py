"""The tool-list cache: fetched again after the server's ``toolsTtl``, and at once on a
forced refresh (``edge mcp refresh``), even when the server says nothing."""

from __future__ import annotations

import trio

from edge.tools.registry import ToolRegistry

from .conftest import FAST, UP, behave, start_mcp


async def test_the_ttl_refetches_and_a_refresh_fetches_now(nursery: trio.Nursery) -> None:
    events: list[dict] = []
    registry = ToolRegistry()
    servers = await start_mcp(nursery, registry, events, FAST)
    quick = await servers.add(behave("quick", toolsTtl=0.5))
    slow = await servers.add(behave("slow", toolsTtl=3600))
    with trio.fail_after(UP):
        while quick.status != "active" or slow.status != "active":
            await trio.sleep(0.02)
        # A tool added without list_changed: the short TTL finds it by itself...
        await quick.call_tool("sneak", {"name": "hidden"})
        while "quick__hidden" not in registry:
            await trio.sleep(0.05)
        # ...the long one does not, until a forced refresh.
        await slow.call_tool("sneak", {"name": "hidden"})
        await trio.sleep(1.0)  # two of quick's TTLs: slow's cache is still the old list
        assert "slow__hidden" not in registry
        names = await slow.list_tools_now()
        assert "hidden" in names and "slow__hidden" in registry
