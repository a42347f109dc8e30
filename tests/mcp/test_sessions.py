"""MCP sessions against real servers: supervision, crashes, hangs, floods, transports, no orphans."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Final

import pytest
import trio

from edge.errors import McpCallError
from edge.mcp import McpServer, probe_server
from edge.mcp.config import McpServerConfig, parse_server
from edge.mcp.sdk import connection_already_closed
from edge.nurseries.mcp import McpServers
from edge.tools.registry import ToolRegistry

from ..conftest import _processes, child_processes, processes_in_group, until
from .conftest import FAST, NO_PATIENCE, STARTUP, UP, behave, silent, start_mcp, time_server

#: Seconds for what follows a step at once on a busy machine (a bound on failure).
SOON: Final = 30.0


@pytest.fixture
async def mcp(nursery: trio.Nursery) -> AsyncIterator[tuple[McpServers, ToolRegistry, list[dict]]]:
    registry = ToolRegistry()
    events: list[dict] = []
    servers = await start_mcp(nursery, registry, events, FAST)
    yield servers, registry, events


async def wait_status(server: McpServer, *statuses: str, within: float = UP) -> None:
    with trio.fail_after(within):
        await until(lambda: server.status in statuses, poll=0.01)


def server_groups(before: set[int]) -> set[int]:
    """Process groups of the children started since ``before`` (each stdio server leads its own)."""
    new = set(child_processes()) - before
    return {group for pid, _, _, group in _processes() if pid in new} - {os.getpgrp()}


async def test_the_published_time_server_over_stdio(mcp: tuple[McpServers, ToolRegistry, list[dict]]) -> None:
    servers, registry, events = mcp
    server = await servers.add(time_server())
    await wait_status(server, "active")
    assert {"time__get_current_time", "time__convert_time"} <= registry.names()
    spec = registry.get("time__get_current_time")
    assert spec is not None and spec.source == "mcp:time" and spec.input_schema["required"] == ["timezone"]
    raw = await server.call_tool("get_current_time", {"timezone": "UTC"})
    assert raw["structuredContent"]["timezone"] == "UTC" and not raw["isError"]
    bad = await server.call_tool("get_current_time", {"timezone": "Nowhere/Else"})
    assert bad["isError"] and "Nowhere/Else" in bad["content"][0]["text"]
    info = server.info()
    assert info["toolMetrics"]["get_current_time"]["calls"] == 2
    assert info["toolMetrics"]["get_current_time"]["failures"] == 1
    assert info["errors"] == 0  # an isError answer is the tool's failure, not the server's
    [active] = [e for e in events if e["type"] == "mcp_status" and e["status"] == "active"]
    assert (active["server"], active["oldStatus"], active["lastError"]) == ("time", "inactive", None)
    assert active["reason"] == "connected, answering" and active["at"][:4].isdigit()


async def test_a_crash_mid_call_is_an_error_then_the_server_is_back(
    mcp: tuple[McpServers, ToolRegistry, list[dict]],
) -> None:
    servers, _, _ = mcp
    before = set(child_processes())
    server = await servers.add(behave())
    await wait_status(server, "active")
    groups = server_groups(before)
    assert groups
    with pytest.raises(McpCallError, match="closed the connection during the call.*crashing on purpose"):
        await server.call_tool("crash", {})
    with trio.fail_after(UP):
        while True:
            try:
                result = await server.call_tool("echo", {"text": "again"})
                break
            except McpCallError:
                await trio.sleep(0.05)
    assert result["content"][0]["text"] == "again"
    assert server.info()["restarts"] == 1
    for group in groups:  # the crashed server's process group is gone, nothing orphaned
        assert processes_in_group(group) == []


async def test_a_hanging_call_times_out_and_the_server_hears_the_cancellation(
    mcp: tuple[McpServers, ToolRegistry, list[dict]], tmp_path: Path
) -> None:
    servers, _, _ = mcp
    mark = tmp_path / "mark"
    server = await servers.add(behave(mark=mark))
    await wait_status(server, "active")

    async def time_out_once_started(scope: trio.CancelScope) -> None:
        # The caller's 0.5 s run from when the server has the call, however slow it was to get it.
        with trio.fail_after(SOON):
            await until(lambda: "started hang" in marks(mark), poll=0.02)
        scope.deadline = trio.current_time() + 0.5

    with trio.CancelScope() as waited:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(time_out_once_started, waited)
            await server.call_tool("hang", {})
    assert waited.cancelled_caught
    with trio.fail_after(SOON):
        await until(lambda: "cancelled hang" in marks(mark), poll=0.02)
    assert (await server.call_tool("add", {"a": 2, "b": 40}))["structuredContent"] == {"result": 42}


async def test_a_stderr_flood_is_logged_within_limits_and_calls_still_work(
    mcp: tuple[McpServers, ToolRegistry, list[dict]], caplog: pytest.LogCaptureFixture
) -> None:
    servers, _, _ = mcp
    server = await servers.add(behave())
    await wait_status(server, "active")
    with caplog.at_level(logging.INFO, logger="edge.mcp.session"):
        started = trio.current_time()
        result = await server.call_tool("flood", {"lines": 20000})
        assert result["content"][0]["text"] == "20000 lines written"
        assert (await server.call_tool("echo", {"text": "still here"}))["content"][0]["text"] == "still here"
        with trio.fail_after(SOON):
            await until(lambda: server.stderr_suppressed > 19000, poll=0.02)
        elapsed = trio.current_time() - started
    logged = [r for r in caplog.records if "stderr:" in r.getMessage()]
    # 20 lines a second at most, however long a busy machine took to read the flood.
    assert 0 < len(logged) <= 20 * (int(elapsed) + 2), (len(logged), elapsed)


async def test_progress_is_passed_through(mcp: tuple[McpServers, ToolRegistry, list[dict]]) -> None:
    servers, _, _ = mcp
    server = await servers.add(behave())
    await wait_status(server, "active")
    seen: list[tuple[float, float | None, str | None]] = []
    result = await server.call_tool("steps", {"count": 3}, progress=lambda *p: seen.append(p))
    assert result["content"][0]["text"] == "3 steps"
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


async def test_list_changed_re_registers_the_tools(mcp: tuple[McpServers, ToolRegistry, list[dict]]) -> None:
    servers, registry, _ = mcp
    server = await servers.add(behave())
    await wait_status(server, "active")
    changes: list[None] = []
    registry.subscribe(lambda: changes.append(None))
    await server.call_tool("grow", {"name": "newcomer"})
    with trio.fail_after(SOON):
        await until(lambda: "behave__newcomer" in registry, poll=0.01)
    assert changes
    spec = registry.get("behave__newcomer")
    assert spec is not None and spec.description == "[behave] added at run time: newcomer"


async def test_a_server_that_never_initializes_is_parked_and_others_keep_working(
    mcp: tuple[McpServers, ToolRegistry, list[dict]], nursery: trio.Nursery
) -> None:
    servers, registry, events = mcp
    # The stuck server's own nursery, with a short init timeout (the good one may start slowly).
    impatient = await start_mcp(nursery, registry, events, NO_PATIENCE)
    good = await servers.add(behave("good"))
    stuck = await impatient.add(silent("stuck"))
    await wait_status(good, "active")
    await wait_status(stuck, "error")
    with trio.fail_after(UP):
        await until(lambda: stuck.parked_until is not None, poll=0.02)
    info = stuck.info()
    assert info["status"] == "error" and info["parkedFor"] is not None
    assert "failed 3 times" in info["lastError"] and "no answer in time" in info["lastError"]
    with pytest.raises(McpCallError, match="parked after repeated failures"):
        await stuck.call_tool("anything", {})
    assert (await good.call_tool("echo", {"text": "fine"}))["content"][0]["text"] == "fine"
    assert not any(name.startswith("stuck__") for name in registry.names())
    assert any(e["server"] == "stuck" and e["status"] == "error" for e in events)
    # The park ends and the server is tried again (and fails again, counted anew).
    with trio.fail_after(SOON):
        await until(lambda: stuck.parked_until is None, poll=0.02)


async def test_a_missing_command_is_a_clear_error(mcp: tuple[McpServers, ToolRegistry, list[dict]]) -> None:
    servers, _, _ = mcp
    server = await servers.add(parse_server("ghost", {"command": "/no/such/mcp-server"}))
    await wait_status(server, "error")
    assert "/no/such/mcp-server" in (server.metrics.last_error or "")
    report = await probe_server(server.config)
    assert report["ok"] is False and "/no/such/mcp-server" in report["error"]


async def test_a_server_that_exits_at_once_counts_as_a_crash_loop(
    mcp: tuple[McpServers, ToolRegistry, list[dict]],
) -> None:
    servers, _, _ = mcp
    server = await servers.add(parse_server("quitter", {"command": sys.executable, "args": ["-c", "pass"]}))
    with trio.fail_after(UP):
        await until(lambda: server.parked_until is not None, poll=0.02)
    window = f"failed 3 times within {FAST.crash_loop_window:g} s"
    assert window in (server.metrics.last_error or "")


async def test_removing_a_server_stops_its_process_and_unregisters_its_tools(
    mcp: tuple[McpServers, ToolRegistry, list[dict]],
) -> None:
    servers, registry, _ = mcp
    before = set(child_processes())
    server = await servers.add(behave())
    await wait_status(server, "active")
    groups = server_groups(before)
    assert groups and "behave__echo" in registry
    assert await servers.remove("behave")
    assert "behave__echo" not in registry and servers.get("behave") is None
    assert set(child_processes()) - before == set()
    for group in groups:
        assert processes_in_group(group) == []


# -- the reference server, over each transport -----------------------------------------


async def start_everything(nursery: trio.Nursery, command: str, transport: str, port: int) -> trio.Process:
    mode = {"http": "streamableHttp", "sse": "sse"}[transport]
    process = await nursery.start(
        lambda task_status: trio.run_process(
            [command, mode],
            env={**os.environ, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            task_status=task_status,
        )
    )
    return process


async def until_it_answers(config: McpServerConfig) -> None:
    """Wait until the HTTP server just started answers a probe."""
    with trio.fail_after(UP):
        while not (await probe_server(config, within=STARTUP))["ok"]:  # noqa: ASYNC110
            await trio.sleep(0.2)


def marks(path: Path) -> str:
    """What the behave server wrote to its mark file so far."""
    return path.read_text() if path.exists() else ""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("transport", ["stdio", "http", "sse"])
async def test_the_reference_everything_server(
    mcp: tuple[McpServers, ToolRegistry, list[dict]], nursery: trio.Nursery, transport: str,
    monkeypatch: pytest.MonkeyPatch, everything: str,
) -> None:
    servers, registry, _ = mcp
    if transport == "stdio":
        monkeypatch.setenv("EDGE_KEEP", "passed")
        monkeypatch.setenv("EDGE_TOKEN", "must-not-leak")
        config = parse_server("ev", {"command": everything, "envPassthrough": ["EDGE_KEEP"]})
    else:
        port = free_port()
        process = await start_everything(nursery, everything, transport, port)
        path = "/mcp" if transport == "http" else "/sse"
        config = parse_server("ev", {"url": f"http://127.0.0.1:{port}{path}", "transport": transport})
        await until_it_answers(config)
    server = await servers.add(config)
    await wait_status(server, "active")
    assert {"ev__echo", "ev__get-sum", "ev__get-tiny-image"} <= registry.names()
    echo = await server.call_tool("echo", {"message": "hello"})
    assert echo["content"][0]["text"] == "Echo: hello"
    total = await server.call_tool("get-sum", {"a": 2, "b": 3})
    assert "5" in total["content"][0]["text"]
    image = await server.call_tool("get-tiny-image", {})
    images = [c for c in image["content"] if c["type"] == "image"]
    assert images and images[0]["mimeType"] == "image/png" and len(images[0]["data"]) > 20
    seen: list[tuple] = []
    await server.call_tool(
        "trigger-long-running-operation", {"duration": 0.3, "steps": 3}, progress=lambda *p: seen.append(p)
    )
    assert [p[0] for p in seen] == [1, 2, 3]
    if transport == "stdio":
        env = json.loads((await server.call_tool("get-env", {}))["content"][0]["text"])
        assert env.get("EDGE_KEEP") == "passed" and "EDGE_TOKEN" not in env
    else:
        process.kill()


async def test_an_idle_http_session_closes_and_reconnects_on_demand(
    mcp: tuple[McpServers, ToolRegistry, list[dict]], nursery: trio.Nursery, everything: str
) -> None:
    servers, registry, _ = mcp
    port = free_port()
    process = await start_everything(nursery, everything, "http", port)
    config = parse_server("ev", {"url": f"http://127.0.0.1:{port}/mcp", "idleTimeout": 0.5})
    await until_it_answers(config)
    server = await servers.add(config)
    await wait_status(server, "active")
    await wait_status(server, "inactive", within=SOON)  # idle: session closed
    assert "ev__echo" in registry  # its tools stay offered
    echo = await server.call_tool("echo", {"message": "wake"})
    assert echo["content"][0]["text"] == "Echo: wake"
    assert server.status == "active"
    process.kill()


async def test_a_server_gone_while_idle_is_reconnected_transparently(nursery: trio.Nursery) -> None:
    # No pings, so only the request can find the connection closed.
    servers = await start_mcp(nursery, ToolRegistry(), [], replace(FAST, ping_interval=10 * UP))
    before = set(child_processes())
    server = await servers.add(behave())
    await wait_status(server, "active")
    [pid] = set(child_processes()) - before
    session = server._session  # the SDK's session, to see when it has noticed
    assert session is not None
    os.kill(pid, 9)
    with trio.fail_after(SOON):  # the SDK sees the pipe close; no request is in flight
        await until(lambda: connection_already_closed(session), poll=0.01)
    # The request meets a closed connection before it is sent: it goes out on the next one.
    result = await server.call_tool("echo", {"text": "no error for me"})
    assert result["content"][0]["text"] == "no error for me"
    assert server.info()["restarts"] == 1 and server.metrics.errors == 0


class PagedSession:
    """Stands in for the SDK session in a test of the pagination bound only."""

    def __init__(self, pages: int, per_page: int) -> None:
        self.pages, self.per_page, self.calls = pages, per_page, 0

    async def list_tools(self, *, params: object = None) -> object:
        from mcp_types import ListToolsResult, Tool

        page = self.calls
        self.calls += 1
        tools = [Tool(name=f"t{page}_{i}", input_schema={"type": "object"}) for i in range(self.per_page)]
        more = page + 1 < self.pages
        return ListToolsResult(tools=tools, next_cursor=f"c{page + 1}" if more else None)


async def test_tool_pages_are_followed_to_the_end_and_bounded() -> None:
    from edge.mcp.session import MAX_TOOL_PAGES, fetch_tools

    session = PagedSession(pages=3, per_page=2)
    assert [t["name"] for t in await fetch_tools(session)] == ["t0_0", "t0_1", "t1_0", "t1_1", "t2_0", "t2_1"]
    endless = PagedSession(pages=10**6, per_page=1)
    assert len(await fetch_tools(endless)) == MAX_TOOL_PAGES and endless.calls == MAX_TOOL_PAGES


async def serve_401(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """An HTTP server on loopback refusing every request with 401."""

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                request += chunk
            await stream.send_all(
                b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


@pytest.mark.parametrize("transport", ["sse", "http"])
async def test_a_failure_shows_the_url_without_its_userinfo_and_query(
    nursery: trio.Nursery, transport: str
) -> None:
    port = await nursery.start(serve_401)
    url = f"http://someone:pa55word@127.0.0.1:{port}/mcp?token=SEKRIT-9"
    server = parse_server("hosted", {"url": url, "transport": transport})
    with trio.fail_after(SOON):
        report = await probe_server(server, within=SOON)
    assert report["ok"] is False
    error = report["error"]
    assert "SEKRIT-9" not in error and "pa55word" not in error and "someone" not in error
    if transport == "sse":  # the SDK's http transport says no more than "an error response"
        assert error == f"HTTP 401 Unauthorized from http://***@127.0.0.1:{port}/mcp?***"


def test_redact_url_keeps_scheme_host_port_and_path() -> None:
    from edge.mcp.session import redact_url, redact_urls

    assert redact_url("https://u:p@h.example:8443/a/b?key=1&x=2#frag") == "https://***@h.example:8443/a/b?***"
    assert redact_url("https://h.example/sse#k=1") == "https://h.example/sse#***"
    assert redact_url("http://h.example?token=1") == "http://h.example?***"
    assert redact_url("http://[::1]:9/mcp") == "http://[::1]:9/mcp"
    assert redact_url("not a url") == "not a url"
    text = "for url 'https://a@h/x?t=1' and <http://h2/y?s=2>, not ftp-less words"
    assert redact_urls(text) == "for url 'https://***@h/x?***' and <http://h2/y?***>, not ftp-less words"


async def test_a_missing_working_directory_is_named_not_the_command(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    report = await probe_server(parse_server("cw", {"command": sys.executable, "cwd": str(missing)}))
    assert report["ok"] is False
    assert report["error"] == f"working directory {missing}: No such file or directory"
    a_file = tmp_path / "file"
    a_file.write_text("")
    report = await probe_server(parse_server("cw", {"command": sys.executable, "cwd": str(a_file)}))
    assert report["error"] == f"working directory {a_file}: Not a directory"
    ghost = await probe_server(parse_server("ghost", {"command": "/no/such/mcp-server", "cwd": str(tmp_path)}))
    assert ghost["error"] == "command not found: /no/such/mcp-server"


async def test_a_probe_reports_an_answer_before_the_server_is_stopped() -> None:
    # ``on_answer`` comes while the connection is still open: the server runs then.
    before = set(child_processes())
    seen: list[tuple[dict, set[int]]] = []

    def answered(report: dict) -> None:
        seen.append((report, set(child_processes()) - before))

    with trio.fail_after(UP):
        report = await probe_server(behave(), within=STARTUP, on_answer=answered)
    assert report["ok"] is True, report
    [(early, running)] = seen
    assert early is report and len(running) == 1
    assert set(child_processes()) - before == set()
