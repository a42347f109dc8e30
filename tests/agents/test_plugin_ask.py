"""A plugin that declares the ``agents`` capability asks another edge for work through the
cloud (``ctx.ask_agent``); one that does not declare it is refused."""

from __future__ import annotations

from pathlib import Path

import trio

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud

from ..conftest import CONNECT_WITHIN, TOKEN, fast_tunnel, make_config, until
from ..plugins.kit import write_plugin

SOON = 30.0

CODE = '''
@plugin.tool
async def fetch(ctx: Context, agent: str, path: str) -> dict:
    """Read a file on another edge."""
    result = await ctx.ask_agent(agent, "file_read", {"path": path}, within=20)
    return {"output": "there: " + result.get("output", result.get("error", "?"))}
'''


async def test_a_plugin_asks_another_edge_only_with_the_capability(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    cloud = await nursery.start(FakeCloud([TOKEN]).serve)
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "asker", CODE, capabilities=["agents"])
    write_plugin(plugins, "mute", CODE, capabilities=["log"])
    daemons: list[Daemon] = []
    for name in ("a", "b"):
        workspace = tmp_path / name / "ws"
        workspace.mkdir(parents=True)
        (workspace / "note.txt").write_text(f"note of {name}\n")
        extra = {"plugin_dirs": (plugins,)} if name == "a" else {}
        cfg = make_config(workspace, cloud, state_dir=tmp_path / name / "state",
                          agent_name=name, **extra)  # fmt: skip
        daemons.append(await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run))
    a, b = daemons
    with trio.fail_after(CONNECT_WITHIN + SOON):
        await cloud.wait_agent(a.agents.agent_id)
        await cloud.wait_agent(b.agents.agent_id)
        await until(lambda: len(a.agents.peers()) == 1)
        await until(lambda: {"asker__fetch", "mute__fetch", "agent_ask"} <= a.gate.approved)
    with trio.fail_after(SOON):
        result = await a.executor.call(
            "asker__fetch", {"agent": "b", "path": "note.txt"}, approved=a.gate.approved
        )
    assert result.get("output") == "there: note of b\n", result
    with trio.fail_after(SOON):
        refused = await a.executor.call(
            "mute__fetch", {"agent": "b", "path": "note.txt"}, approved=a.gate.approved
        )
    assert "error" in refused, refused
    assert "agents" in refused["error"], refused
    for daemon in daemons:
        await daemon.stop()
