"""Plugins inside the daemon: offered to the cloud, called and cancelled through the tunnel,
listed, reloaded and configured through the control API, announced on /events."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud

from ..conftest import CONNECT_WITHIN, fast_tunnel, make_config
from .kit import alive, write_plugin

SOON: Final = 30.0

CODE = '''
        @plugin.tool
        def add(a: int, b: int = 1) -> dict:
            """Add two numbers."""
            return {"sum": a + b}

        @plugin.tool
        async def nap(ctx: Context, seconds: float) -> dict:
            try:
                await trio.sleep(seconds)
            finally:
                open(os.path.join(ctx.config["marks"], "nap-ended"), "w").close()
            return {"slept": seconds}

        @plugin.tool
        def units(ctx: Context) -> dict:
            return {"units": ctx.config["units"]}
'''


@pytest.fixture
def runtime_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="edge-t-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def cloud(nursery: trio.Nursery) -> FakeCloud:
    from ..conftest import TOKEN

    return await nursery.start(FakeCloud([TOKEN]).serve)


@pytest.fixture
async def daemon(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, tmp_path: Path, runtime_base: Path
) -> AsyncIterator[Daemon]:
    plugins = tmp_path / "plugins"
    marks = tmp_path / "marks"
    marks.mkdir()
    write_plugin(plugins, "calc", CODE, config={"units": "metric", "marks": str(marks)})
    cfg = make_config(workspace, cloud, plugin_dirs=(plugins,), control=("127.0.0.1", 0))
    daemon: Daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
    yield daemon
    await daemon.stop()


def _offered(cloud: FakeCloud) -> list[str]:
    report = cloud.report
    return [t["name"] for t in report["tools"]] if report else []


async def test_plugin_tools_through_the_tunnel(
    daemon: Daemon, cloud: FakeCloud, tmp_path: Path
) -> None:
    running = {"name": "calc", "status": "running", "tools": 3, "lastError": None}
    with trio.fail_after(SOON):  # re-announced as the plugin came up
        await cloud.wait_for(lambda: cloud.report and running in cloud.report["plugins"])
    assert {"calc__add", "calc__nap", "calc__units"} <= set(_offered(cloud))
    first = cloud.reports[0]["plugins"]  # the handshake goes before the runners start
    assert not first or first[0]["status"] == "starting"
    # the capability report was re-announced and approved: the call goes through
    assert (await cloud.call("calc__add", {"a": 20, "b": 22}))["sum"] == 42
    bad = await cloud.call("calc__add", {"a": "x"})
    assert "error" in bad

    call_id = await cloud.start_call("calc__nap", {"seconds": 60})
    await trio.sleep(0.5)
    await cloud.cancel(call_id)
    with trio.fail_after(SOON):
        result = await cloud.result(call_id)
    assert "error" in result
    with trio.fail_after(SOON):
        while not (tmp_path / "marks" / "nap-ended").exists():
            await trio.sleep(0.02)

    await cloud.approve_tools(["file_read"])
    refused = await cloud.call("calc__add", {"a": 1})
    assert "not approved by the cloud" in refused["error"]


async def test_plugins_through_the_control_api(
    daemon: Daemon, cloud: FakeCloud, tmp_path: Path
) -> None:
    assert daemon.control_url is not None
    with daemon.events.subscribe() as events:
        async with httpx.AsyncClient(base_url=daemon.control_url, timeout=SOON) as client:
            with trio.fail_after(SOON):
                while (await client.get("/plugins")).json()["plugins"][0]["status"] != "running":
                    await trio.sleep(0.05)
            (info,) = (await client.get("/plugins")).json()["plugins"]
            assert info["id"] == "calc" and alive(info["pid"]) and info["pid"] != os.getpid()
            assert sorted(info["tools"]) == ["calc__add", "calc__nap", "calc__units"]
            assert (await client.get("/health")).json()["plugins"] == 1

            answer = await client.post("/plugins/calc/config", json={"values": {"units": "imperial"}})
            assert answer.status_code == 200, answer.text
            assert answer.json()["config"]["units"] == "imperial"
            assert (await cloud.call("calc__units", {}))["units"] == "imperial"
            wrong = await client.post("/plugins/calc/config", json={"values": {"colour": 1}})
            assert wrong.status_code == 400 and "no config key `colour`" in wrong.json()["error"]

            reloaded = await client.post("/plugins/calc/reload")
            assert reloaded.status_code == 200, reloaded.text
            with trio.fail_after(SOON):
                while (await client.get("/plugins")).json()["plugins"][0]["status"] != "running":
                    await trio.sleep(0.05)
            (after,) = (await client.get("/plugins")).json()["plugins"]
            assert after["pid"] != info["pid"]
            with trio.fail_after(SOON):
                while alive(info["pid"]):
                    await trio.sleep(0.02)
            missing = await client.post("/plugins/nope/reload")
            assert missing.status_code == 404
        statuses = []
        with trio.move_on_after(1):
            async for event in events.receive:
                if event.get("type") == "plugin_status":
                    statuses.append(event["status"])
                    if statuses.count("running") >= 2:
                        break
    assert statuses.count("running") >= 2 and "stopped" in statuses


async def test_the_daemon_stops_its_runners(
    nursery: trio.Nursery, workspace: Path, tmp_path: Path, runtime_base: Path
) -> None:
    plugins = tmp_path / "plugins"
    (tmp_path / "marks").mkdir()
    write_plugin(plugins, "calc", CODE, config={"units": "metric", "marks": str(tmp_path / "marks")})
    cfg = make_config(workspace, plugin_dirs=(plugins,))
    daemon: Daemon = await nursery.start(Daemon(cfg).run)
    with trio.fail_after(SOON):
        while daemon.plugins.info()[0]["status"] != "running":
            await trio.sleep(0.02)
    pid = daemon.plugins.info()[0]["pid"]
    results: list[dict[str, Any]] = []

    async def call() -> None:
        results.append(await daemon.executor.call("calc__nap", {"seconds": 60}, approved=None))

    nursery.start_soon(call)
    await trio.sleep(0.3)
    with trio.fail_after(10):
        await daemon.stop()
        while alive(pid) or list(runtime_base.glob("edge-plugins-*")):  # its directory goes too
            await trio.sleep(0.02)
    assert results and "error" in results[0]


async def test_allow_tools_names_a_plugins_tools_without_a_warning(
    nursery: trio.Nursery,
    workspace: Path,
    tmp_path: Path,
    runtime_base: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugins = tmp_path / "plugins"
    (tmp_path / "marks").mkdir()
    write_plugin(plugins, "calc", CODE, config={"units": "metric", "marks": str(tmp_path / "marks")})
    allowed = frozenset({"calc__*", "file_read", "nosuch_tool"})
    cfg = make_config(workspace, plugin_dirs=(plugins,), allow_tools=allowed)
    daemon: Daemon = await nursery.start(Daemon(cfg).run)
    try:
        warned = [r.getMessage() for r in caplog.records if "it allows nothing" in r.getMessage()]
        assert len(warned) == 1 and "'nosuch_tool'" in warned[0]
    finally:
        await daemon.stop()
