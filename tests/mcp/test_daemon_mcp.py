"""MCP tools through the daemon: offered, approved and called through the tunnel; the control API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud

from ..conftest import CONNECT_WITHIN, child_processes, fast_tunnel, make_config, until
from .conftest import FAST, STARTUP, UP, behave, ghost, silent, time_server

#: Seconds for what follows a step at once on a busy machine (a bound on failure).
SOON: Final = 30.0
#: Seconds ``behave`` calls may take through the daemon (its ``hang`` is cut at this).
CALL_TIMEOUT: Final = 5.0


def write_servers(path: Path, *configs: Any) -> Path:
    path.write_text(json.dumps({"mcpServers": {c.name: c.to_json() for c in configs}}))
    return path


@pytest.fixture
async def daemon(
    nursery: trio.Nursery, workspace: Path, cloud: FakeCloud, tmp_path: Path
) -> AsyncIterator[Daemon]:
    mcp_file = write_servers(
        tmp_path / "mcp.json",
        time_server(),
        behave(mark=tmp_path / "mark", timeout=CALL_TIMEOUT),
        silent("stuck"),
        ghost(),
    )
    cfg = make_config(workspace, cloud, control=("127.0.0.1", 0), mcp_file=mcp_file)
    d: Daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel(), mcp_timing=FAST).run)
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
    yield d


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    assert daemon.control_url is not None
    async with httpx.AsyncClient(base_url=daemon.control_url, timeout=UP) as c:
        yield c


def marked(path: Path, line: str = "cancelled hang") -> bool:
    return path.exists() and line in path.read_text()


def offered(cloud: FakeCloud) -> set[str]:
    report = cloud.report
    return {t["name"] for t in report["tools"]} if report else set()


async def test_mcp_tools_are_offered_approved_and_called_through_the_tunnel(
    daemon: Daemon, cloud: FakeCloud, tmp_path: Path
) -> None:
    with trio.fail_after(UP):
        await cloud.wait_for(lambda: {"time__get_current_time", "behave__echo"} <= offered(cloud))
        await until(lambda: "time__get_current_time" in daemon.effective_tools(), poll=0.01)
    schema = next(t for t in cloud.report["tools"] if t["name"] == "time__get_current_time")
    assert schema["input_schema"]["required"] == ["timezone"]
    result = await cloud.call("time__get_current_time", {"timezone": "UTC"})
    assert result["structured"]["timezone"] == "UTC" and '"timezone": "UTC"' in result["output"]
    bad = await cloud.call("time__get_current_time", {"timezone": "Mars/Olympus"})
    assert "Mars/Olympus" in bad["error"]
    # Arguments are checked against the server's schema before anything is sent.
    wrong = await cloud.call("time__get_current_time", {"timezone": 5})
    assert wrong["error"].startswith('invalid args for time__get_current_time: "timezone"')
    # The server's own timeout; the cancellation reaches the server.
    slow = await cloud.call("behave__hang", {})
    assert slow.get("timed_out") is True and f"timed out after {CALL_TIMEOUT:g} s" in slow["error"]
    with trio.fail_after(SOON):
        await until(lambda: marked(tmp_path / "mark"), poll=0.02)
    # Progress goes to the cloud as notifications.
    done = await cloud.call("behave__steps", {"count": 2})
    assert done["output"] == "2 steps"
    call_ids = [f["params"]["id"] for f in cloud.frames if isinstance(f, dict) and f.get("method") == "progress"]
    assert len(call_ids) == 2


async def test_the_cloud_cancels_an_mcp_call(daemon: Daemon, cloud: FakeCloud, tmp_path: Path) -> None:
    with trio.fail_after(UP):
        await until(lambda: "behave__hang" in daemon.effective_tools(), poll=0.01)
    call_id = await cloud.start_call("behave__hang", {"seconds": 30})
    with trio.fail_after(SOON):  # the server has the call
        await until(lambda: marked(tmp_path / "mark", "started hang"), poll=0.02)
    await cloud.cancel(call_id)
    result = await cloud.result(call_id)
    assert result.get("cancelled") is True
    with trio.fail_after(SOON):
        await until(lambda: marked(tmp_path / "mark"), poll=0.02)


async def test_the_local_policy_still_decides(nursery: trio.Nursery, workspace: Path, cloud: FakeCloud, tmp_path: Path) -> None:
    mcp_file = write_servers(tmp_path / "mcp.json", behave())
    cfg = make_config(
        workspace, cloud, mcp_file=mcp_file, allow_tools=frozenset({"behave__e*", "file_read"})
    )
    d: Daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel(), mcp_timing=FAST).run)
    with trio.fail_after(UP):
        await until(lambda: "behave__echo" in d.effective_tools(), poll=0.01)
    assert "behave__add" not in offered(cloud)
    assert (await cloud.call("behave__echo", {"text": "ok"}))["output"] == "ok"
    refused = await cloud.call("behave__add", {"a": 1, "b": 2})
    assert refused["error"] == "tool 'behave__add' is not allowed by the local policy"


async def test_control_api_servers_test_openai_and_batch(daemon: Daemon, client: httpx.AsyncClient) -> None:
    with trio.fail_after(UP):
        await until(lambda: "behave__add" in daemon.effective_tools(), poll=0.01)
        await until(lambda: daemon.mcp.get("ghost") is not None and daemon.mcp.get("ghost").status == "error", poll=0.02)  # type: ignore[union-attr]
    servers = {s["name"]: s for s in (await client.get("/mcp/servers")).json()["servers"]}
    assert servers["behave"]["status"] == "active" and "behave__add" in servers["behave"]["toolNames"]
    assert servers["ghost"]["status"] == "error"
    assert "command not found: /no/such/mcp-server" in servers["ghost"]["lastError"]
    assert servers["time"]["command"][1:] == ["-m", "mcp_server_time"]

    # The probe starts a server of its own: it may be slow to start here, not to fail.
    tested = await client.post("/mcp/servers/behave/test", params={"timeout": STARTUP})
    assert tested.status_code == 200
    report = tested.json()
    assert report["ok"] and "echo" in report["tools"] and report["connectMs"] > 0
    broken = await client.post("/mcp/servers/stuck/test", params={"timeout": 1})
    assert broken.status_code == 502 and broken.json()["ok"] is False
    assert broken.json()["error"] == "no answer in time"
    missing = await client.post("/mcp/servers/nobody/test")
    assert missing.status_code == 404 and "nobody" in missing.json()["error"]
    silly = await client.post("/mcp/servers/behave/test", params={"timeout": "soon"})
    assert silly.status_code == 400

    tools = (await client.get("/tools/openai")).json()["tools"]
    add = next(t for t in tools if t["function"]["name"] == "behave__add")
    assert add["type"] == "function" and add["function"]["parameters"]["required"] == ["a", "b"]

    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": "behave__add", "arguments": json.dumps({"a": i, "b": 1})}}
        for i in range(10)
    ]
    calls.append({"id": "bad", "type": "function", "function": {"name": "no_such_tool", "arguments": "{}"}})
    answer = (await client.post("/tools/batch", json={"toolCalls": calls, "concurrency": 3})).json()
    assert [r.get("structured") for r in answer["results"][:10]] == [{"result": i + 1} for i in range(10)]
    assert answer["results"][10] == {"error": "unknown tool 'no_such_tool'"}
    assert answer["messages"][0] == {"role": "tool", "tool_call_id": "c0", "content": "1"}
    assert answer["messages"][10]["content"] == "Error: unknown tool 'no_such_tool'"
    bad = await client.post("/tools/batch", json={"toolCalls": [{"type": "function"}]})
    assert bad.status_code == 200 and "toolCalls[0]" in bad.json()["results"][0]["error"]

    health = (await client.get("/health")).json()
    assert health["mcpServers"] == 4


async def test_stopping_the_daemon_leaves_no_server_process(
    nursery: trio.Nursery, workspace: Path, cloud: FakeCloud, tmp_path: Path
) -> None:
    before = set(child_processes())
    mcp_file = write_servers(tmp_path / "mcp.json", behave("one"), behave("two"), time_server())
    cfg = make_config(workspace, cloud, mcp_file=mcp_file)
    d: Daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel(), mcp_timing=FAST).run)
    with trio.fail_after(UP):
        await until(lambda: {"one__echo", "two__echo", "time__convert_time"} <= d.effective_tools(), poll=0.01)
    assert len(set(child_processes()) - before) == 3
    with trio.fail_after(SOON):
        await d.stop()
        await until(lambda: set(child_processes()) - before == set(), poll=0.02)


async def test_a_broken_servers_file_leaves_the_daemon_running(
    nursery: trio.Nursery, workspace: Path, cloud: FakeCloud, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "mcp.json"
    bad.write_text('{"mcpServers": {"x": {"comand": "typo"}}}')
    cfg = make_config(workspace, cloud, mcp_file=bad)
    d: Daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
    assert len(d.mcp) == 0
    assert any("no MCP servers" in r.getMessage() and "comand" in r.getMessage() for r in caplog.records)
    assert (await cloud.call("file_ops", {"op": "list", "path": "."}))["output"] == ""


async def test_server_statuses_reach_the_cloud_in_the_capability_report(daemon: Daemon, cloud: FakeCloud) -> None:
    def statuses() -> dict[str, str]:
        report = cloud.report or {}
        return {m["name"]: m["status"] for m in report.get("mcpServers", [])}

    with trio.fail_after(UP):
        await cloud.wait_for(lambda: statuses().get("behave") == "active" and statuses().get("ghost") == "error")
    assert "stuck" in statuses()  # listed while it has not answered yet
    failing = next(m for m in cloud.report["mcpServers"] if m["name"] == "ghost")
    assert failing["tools"] == 0 and "command not found: /no/such/mcp-server" in failing["lastError"]


async def test_the_reference_server_through_the_tunnel(
    nursery: trio.Nursery, workspace: Path, cloud: FakeCloud, tmp_path: Path, everything: str
) -> None:
    from edge.mcp.config import parse_server

    mcp_file = write_servers(tmp_path / "mcp.json", parse_server("ev", {"command": everything}))
    cfg = make_config(workspace, cloud, mcp_file=mcp_file)
    d: Daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel(), mcp_timing=FAST).run)
    with trio.fail_after(UP):
        await until(lambda: "ev__get-tiny-image" in d.effective_tools(), poll=0.01)
    image = await cloud.call("ev__get-tiny-image", {})
    assert image["images"][0]["mimeType"] == "image/png" and len(image["images"][0]["data"]) > 20
    structured = await cloud.call("ev__get-structured-content", {"location": "New York"})
    assert "temperature" in structured["structured"]
    total = await cloud.call("ev__get-sum", {"a": 20, "b": 22})
    assert "42" in total["output"]
