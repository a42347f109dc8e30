"""mcp.json followed at run time: the reload's diff, the watcher, and ``edge mcp add/remove``
telling a real ``edge run``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio
import trio.testing

from edge.errors import ConfigError
from edge.nurseries.mcp import MISSING_GRACE, McpServers, file_signature, serve_mcp
from edge.tools.execute import Executor
from edge.tools.policy import Policy
from edge.tools.registry import ToolRegistry

from ..conftest import EdgeProcess, child_processes, edge_cmd, start_edge, until
from ..test_cli import free_port
from .conftest import FAST, SERVERS, UP, behave

pytestmark = pytest.mark.usefixtures("no_child_left")

#: Seconds for what follows a step at once on a busy machine (a bound on failure).
SOON: Final = 30.0
GHOST: Final = {"command": "/no/such/mcp-server"}
#: An entry that runs nothing: for the watcher's tests on the autojump clock.
OFF: Final = {**GHOST, "disabled": True}


def write(path: Path, **servers: Any) -> None:
    """Write ``path`` as a new file (a new inode: the watcher sees it whatever the clock)."""
    entries = {name: e.to_json() if hasattr(e, "to_json") else e for name, e in servers.items()}
    staged = path.with_suffix(".new")
    staged.write_text(json.dumps({"mcpServers": entries}))
    os.replace(staged, path)


def config_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "mcp_config"]


async def settled(predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate()`` holds, on the autojump clock: the failure bound is
    ``SOON`` seconds of real time, for the trio clock runs ahead while a worker thread
    looks at the file (the watcher's timing stays exact: it is all trio time)."""
    give_up = time.monotonic() + SOON
    while not predicate():
        assert time.monotonic() < give_up, "the watcher did not act"
        await trio.sleep(0.05)


async def start(
    nursery: trio.Nursery, path: Path, events: list[dict[str, Any]], **options: Any
) -> tuple[McpServers, ToolRegistry]:
    registry = ToolRegistry()
    servers: McpServers = await nursery.start(
        partial(serve_mcp, registry, path=path, on_event=events.append, timing=FAST, **options)
    )
    return servers, registry


async def test_a_reload_starts_stops_and_restarts_what_changed(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mcp.json"
    write(path, a=GHOST, b=GHOST)
    events: list[dict[str, Any]] = []
    servers, _ = await start(nursery, path, events, watch_interval=None)
    assert sorted(s.name for s in servers) == ["a", "b"]
    unchanged = servers.get("a")

    write(path, a=GHOST, b={**GHOST, "timeout": 5}, c=GHOST)
    report = await servers.reload()
    assert report == {
        "ok": True, "file": str(path), "added": ["c"], "removed": [], "restarted": ["b"],
        "servers": ["a", "b", "c"],
    }  # fmt: skip
    assert servers.get("a") is unchanged
    b = servers.get("b")
    assert b is not None and b.config.timeout == 5

    write(path, c=GHOST)
    assert (await servers.reload())["removed"] == ["a", "b"]
    assert [s.name for s in servers] == ["c"]
    assert [e["removed"] for e in config_events(events)] == [[], ["a", "b"]]

    # A broken edit changes nothing, and is told once per version of the file.
    path.write_text('{"mcpServers": {"c": {"comand": "x"}}}')
    caplog.clear()
    for _ in range(2):
        with pytest.raises(ConfigError, match='unknown field "comand"; did you mean "command"'):
            await servers.reload()
    assert [s.name for s in servers] == ["c"]
    told = [e for e in events if e["type"] == "mcp_config" and not e["ok"]]
    assert len(told) == 1 and "comand" in told[0]["error"] and told[0]["file"] == str(path)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "MCP servers kept as they were" in errors[0].getMessage()

    # Mended: nothing to change, but the problem is gone (and said so).
    write(path, c=GHOST)
    assert (await servers.reload())["restarted"] == []
    assert events[-1] == {
        "type": "mcp_config", **report, "added": [], "restarted": [], "servers": ["c"]
    }


async def test_the_watcher_follows_the_file_and_a_removed_servers_calls_fail(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    path = tmp_path / "mcp.json"
    write(path)
    mark = tmp_path / "mark"
    events: list[dict[str, Any]] = []
    servers, registry = await start(nursery, path, events, watch_interval=0.05)
    executor = Executor(registry, Policy.create(tmp_path), env={})
    assert len(servers) == 0

    write(path, behave=behave(mark=mark))
    with trio.fail_after(UP):
        await until(lambda: "behave__hang" in registry, poll=0.02)
    assert config_events(events)[-1]["added"] == ["behave"]

    results: list[dict[str, Any]] = []

    async def hang() -> None:
        results.append(await executor.call("behave__hang", {}, approved=None))

    nursery.start_soon(hang)
    with trio.fail_after(SOON):  # the server has the call
        await until(lambda: mark.exists() and "started hang" in mark.read_text(), poll=0.02)
    write(path)
    with trio.fail_after(SOON):
        await until(lambda: bool(results), poll=0.02)
    assert results == [{"error": "MCP server 'behave' was removed"}]
    assert not [name for name in registry.names() if name.startswith("behave__")]
    with trio.fail_after(SOON):  # the reload ends once the server process has ended
        await until(lambda: config_events(events)[-1]["removed"] == ["behave"], poll=0.02)
    assert len(servers) == 0
    gone = await executor.call("behave__echo", {"text": "x"}, approved=None)
    assert gone == {"error": "unknown tool 'behave__echo'"}


async def test_a_file_gone_for_a_moment_stops_nothing(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    path = tmp_path / "mcp.json"
    write(path, behave=behave())
    events: list[dict[str, Any]] = []
    before = set(child_processes())
    servers, registry = await start(nursery, path, events, watch_interval=0.05, missing_grace=SOON)
    with trio.fail_after(UP):
        await until(lambda: "behave__echo" in registry, poll=0.02)
    server = servers.get("behave")
    [pid] = set(child_processes()) - before

    # An editor's save: the old file renamed away, a new one written a moment later.
    aside = path.with_name("mcp.json~")
    os.rename(path, aside)
    await trio.sleep(1.5)  # some thirty looks find no file
    shutil.copyfile(aside, path)
    with trio.fail_after(SOON):  # the watcher has read the new file (same servers)
        await until(lambda: servers._seen == file_signature(path), poll=0.02)
    assert servers.get("behave") is server and server.metrics.restarts == 0
    assert set(child_processes()) - before == {pid}  # the same process, never restarted
    assert config_events(events) == [] and "behave__echo" in registry


async def test_a_deletion_that_lasts_is_applied_after_the_grace(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "mcp.json"
    write(path, a=OFF)
    events: list[dict[str, Any]] = []
    servers, _ = await start(nursery, path, events)  # looks every second, 3 s grace
    path.unlink()
    await trio.sleep(MISSING_GRACE - 0.5)
    assert [s.name for s in servers] == ["a"] and config_events(events) == []
    await settled(lambda: len(servers) == 0)
    assert config_events(events)[-1]["removed"] == ["a"]

    # Written again: read once settled. Deleted, then an explicit reload: applied at once.
    write(path, a=OFF)
    await settled(lambda: len(servers) == 1)
    path.unlink()
    assert (await servers.reload())["removed"] == ["a"]
    assert len(servers) == 0


async def test_a_file_written_in_two_halves_is_read_once_whole(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "mcp.json"
    write(path)
    events: list[dict[str, Any]] = []
    servers, _ = await start(nursery, path, events)  # looks at 1 s, 2 s, ...
    text = json.dumps({"mcpServers": {"a": OFF}})
    await trio.sleep(0.5)
    path.write_text(text[: len(text) // 2])  # in place (vim's default): truncated, half written
    await trio.sleep(0.9)  # a look (the one at 1 s) finds it half done
    with path.open("a") as f:
        f.write(text[len(text) // 2 :])
    await settled(lambda: len(servers) == 1)
    assert [(e["ok"], e.get("added")) for e in config_events(events)] == [(True, ["a"])]


async def test_a_reload_cut_short_is_retried(nursery: trio.Nursery, tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    write(path, behave=behave())
    events: list[dict[str, Any]] = []
    servers, registry = await start(nursery, path, events, watch_interval=0.05)
    with trio.fail_after(UP):
        await until(lambda: "behave__echo" in registry, poll=0.02)

    write(path, a=OFF)
    reloading = trio.CancelScope()

    def cut_short() -> None:  # while "behave" stops (its tools have just left), before "a"
        if "behave__echo" not in registry:
            reloading.cancel()

    unsubscribe = registry.subscribe(cut_short)
    with reloading:
        await servers.reload()
    unsubscribe()
    assert reloading.cancelled_caught and servers.get("a") is None
    assert servers._seen != file_signature(path)  # left unseen (no checkpoint since)
    with trio.fail_after(SOON):  # the watcher sees the version was never applied
        await until(lambda: [s.name for s in servers] == ["a"], poll=0.02)
    assert config_events(events)[-1]["added"] == ["a"]


# --- edge mcp add / remove against a real edge run -------------------------------------


async def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    with trio.fail_after(UP):
        done = await trio.run_process(
            edge_cmd(*args), env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def stop(edge: EdgeProcess) -> None:
    with trio.CancelScope(shield=True):
        if edge.proc.returncode is None:
            edge.proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(SOON):
                await edge.proc.wait()
        if edge.proc.returncode is None:
            edge.proc.kill()
            await edge.proc.wait()


async def test_edge_mcp_add_and_remove_reach_a_running_edge(
    nursery: trio.Nursery, tmp_path: Path, workspace: Path
) -> None:
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    env.pop("EDGE_TOKEN", None)
    servers = tmp_path / "config" / "edge" / "mcp.json"
    control = f"127.0.0.1:{free_port()}"
    edge = await start_edge(nursery, "--control", control, "--workspace", str(workspace), env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://{control}", timeout=SOON) as client:

            async def tools() -> set[str]:
                return {row["name"] for row in (await client.get("/tools")).json()["tools"]}

            with trio.fail_after(SOON):
                await edge.wait_for_log("control API on")
            added = await cli(
                "mcp", "add", "behave", "--no-test", "--control", control,
                "--", sys.executable, str(SERVERS / "behave.py"), env=env,
            )  # fmt: skip
            assert added.returncode == 0, added.stderr
            # The watcher may have read the file first: then the CLI's reload changed nothing.
            told = ("the running edge: added behave", "the running edge runs behave")
            assert any(line in added.stdout for line in told), added.stdout
            with trio.fail_after(UP):
                while "behave__echo" not in await tools():
                    await trio.sleep(0.05)
            listed = (await client.get("/tools")).json()["tools"]
            echo = next(row for row in listed if row["name"] == "behave__echo")
            assert echo["source"] == "mcp:behave" and echo["allowed"] is True
            assert echo["approved"] is False and echo["effective"] is False  # no cloud here

            # A hand edit that breaks the file: the servers are kept, the CLI says why.
            entries = json.loads(servers.read_text())["mcpServers"]
            write(servers, **entries, typo={"comand": "x"})
            with trio.fail_after(SOON):
                await edge.wait_for_log("MCP servers kept as they were")
            kept = await cli("mcp", "remove", "behave", "--control", control, env=env)
            assert kept.returncode == 1
            assert kept.stderr.startswith("edge: error: the running edge kept its servers: ")
            assert 'unknown field "comand"; did you mean "command"?' in kept.stderr
            assert "behave__echo" in await tools()
            reloaded = await client.post("/mcp/reload")
            assert reloaded.status_code == 400 and "comand" in reloaded.json()["error"]
            assert edge.log.count("MCP servers kept as they were") == 2  # once per version
            other = await client.post("/mcp/reload", json={"file": str(tmp_path / "other.json")})
            assert other.status_code == 409

            mended = await cli("mcp", "remove", "typo", "--control", control, env=env)
            assert mended.returncode == 0, mended.stderr
            # The watcher may have read the mended file first: then the CLI has nothing to say.
            assert "the running edge: removed behave" in mended.stdout or (
                "MCP servers from" in edge.log and "removed behave" in edge.log
            )
            assert not {name for name in await tools() if name.startswith("behave__")}
    finally:
        await stop(edge)
    assert edge.proc.returncode == 0, edge.log
