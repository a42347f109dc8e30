"""While an update drains, the daemon takes no new work (tunnel calls, questions, plugins'
calls, captures) and lets what runs finish, up to a limit; an update that does not install
gives the daemon back its work."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import edge.daemon
from edge.daemon import UPDATING, Daemon
from edge.dev.cloud import FakeCloud
from edge.errors import CaptureConflict

from .conftest import CONNECT_WITHIN, fast_tunnel, make_config, until

HANG = 60.0


@pytest.fixture
async def daemon(nursery: trio.Nursery, cloud: FakeCloud, workspace: Path) -> Daemon:
    started: Daemon = await nursery.start(
        Daemon(make_config(workspace, cloud), tunnel_options=fast_tunnel()).run
    )
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
    return started


async def test_draining_refuses_new_work_and_waits_for_the_running(
    nursery: trio.Nursery, daemon: Daemon, cloud: FakeCloud, workspace: Path
) -> None:
    marker = workspace / "go"
    running = await cloud.start_call(
        "terminal", {"command": f"while [ ! -f {marker} ]; do sleep 0.02; done; echo done"}
    )
    drained = trio.Event()

    async def drain() -> None:
        await daemon._drain_for_update(False)
        drained.set()

    with trio.fail_after(HANG):
        await until(lambda: daemon.workers.in_flight > 0)
        nursery.start_soon(drain)
        await until(lambda: daemon._refusing is not None)
        refused = await cloud.call("terminal", {"command": "echo new"})
        assert refused["error"] == UPDATING
        assert refused["busy"] is True
        assert (await daemon._ask_tool("file_read", {"path": "x"}))["error"] == UPDATING
        assert (await daemon._plugin_call("p", "file_read", {"path": "x"}))["error"] == UPDATING
        with pytest.raises(CaptureConflict, match="updating"):
            await daemon.captures.record_start("chat-1", "tone:440")
        assert not drained.is_set()  # the running call is let finish
        marker.touch()
        await drained.wait()
        assert await cloud.result(running) == {"output": "done\n", "exit_code": 0}

        daemon._resume_after_update()  # the install failed: work again
        assert await cloud.call("terminal", {"command": "echo again"}) == {
            "output": "again\n", "exit_code": 0,
        }  # fmt: skip


async def test_a_drain_stops_what_outlives_its_limit(
    daemon: Daemon, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge.daemon, "UPDATE_DRAIN_LIMIT", 0.5)
    call = await cloud.start_call("terminal", {"command": "sleep 300"})
    with trio.fail_after(HANG):
        await until(lambda: daemon.workers.in_flight > 0)
        await daemon._drain_for_update(False)
        result = await cloud.result(call)
    assert result["cancelled"] is True
    assert "updating" in result["error"]
    assert daemon.workers.in_flight == 0
