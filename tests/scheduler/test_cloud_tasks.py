"""Tasks the cloud schedules over the tunnel (``schedule_add``, ``schedule_list``,
``schedule_remove``) and the ``schedule_run`` notifications that report their runs: an
in-process daemon with a real store, against the fake cloud over loopback."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud
from edge.nurseries.tunnel import TunnelStatus
from edge.scheduler.timetable import every

from ..conftest import CONNECT_WITHIN, fast_tunnel, make_config, until

#: Seconds for anything here to happen on a loaded machine (a bound on failure only).
SOON: Final = 30.0

_ids = itertools.count(1000)


async def start(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, state: Path, **config: Any
) -> Daemon:
    cfg = make_config(
        workspace, cloud, state_dir=state, allow_tools=frozenset({"terminal", "file_read"}),
        **config,
    )  # fmt: skip
    daemon: Daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
        await until(lambda: bool(daemon.approved))
    return daemon


@pytest.fixture
async def edge(nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, tmp_path: Path) -> Daemon:
    return await start(nursery, cloud, workspace, tmp_path / "state")


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check()`` holds, for state in the store (nothing signals it)."""
    while True:
        if await check():
            return
        await trio.sleep(0.05)


async def ended(daemon: Daemon, task_id: str) -> bool:
    return any(r.status != "running" for r in await daemon.scheduler.history(task_id))


async def all_reported(daemon: Daemon) -> bool:
    return not await daemon.scheduler.unreported()


async def ask(cloud: FakeCloud, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A ``schedule_*`` request from the cloud, and edge's answer."""
    request_id = f"req-{next(_ids)}"
    await cloud.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    with trio.fail_after(SOON):
        return await cloud.result(request_id)


def reports(cloud: FakeCloud) -> list[dict[str, Any]]:
    """The ``schedule_run`` notifications edge sent, in order."""
    return [
        f["params"]
        for f in cloud.frames
        if isinstance(f, dict) and f.get("method") == "schedule_run"
    ]


async def test_the_extension_is_advertised(edge: Daemon, cloud: FakeCloud) -> None:
    assert cloud.report is not None
    assert "schedule" in cloud.report["extensions"]


async def test_unapproved_or_disallowed_tools_are_refused(edge: Daemon, cloud: FakeCloud) -> None:
    await cloud.approve_tools(["file_read", "grep"])
    await until(lambda: edge.approved == {"file_read", "grep"})
    unapproved = await ask(cloud, "schedule_add", {"every": "1h", "tool": "terminal"})
    assert "not approved by the cloud" in unapproved["error"]
    disallowed = await ask(cloud, "schedule_add", {"every": "1h", "tool": "grep"})
    assert "not allowed by the local policy" in disallowed["error"]
    bad = await ask(cloud, "schedule_add", {"every": "now and then", "tool": "file_read"})
    assert "not a duration" in bad["error"]
    assert edge.scheduler.tasks() == []
    assert edge.tunnel.status is TunnelStatus.CONNECTED  # bad requests leave the tunnel be


async def test_a_time_out_of_range_is_refused_and_edge_keeps_serving(
    edge: Daemon, cloud: FakeCloud
) -> None:
    await cloud.approve_tools(["terminal"])
    await until(lambda: "terminal" in edge.approved)
    for at in (1e12, 1e20, 1e300, "9999-12-31T23:59:59-05:00"):
        answer = await ask(cloud, "schedule_add", {"at": at, "tool": "terminal"})
        assert "years" in answer["error"], (at, answer)
    assert edge.scheduler.tasks() == []
    assert (await ask(cloud, "schedule_list", {})) == {"tasks": []}
    assert edge.tunnel.status is TunnelStatus.CONNECTED


async def test_cloud_tasks_false_refuses_every_add(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, tmp_path: Path
) -> None:
    daemon = await start(nursery, cloud, workspace, tmp_path / "s", scheduler_cloud_tasks=False)
    answer = await ask(cloud, "schedule_add", {"every": "1h", "tool": "terminal"})
    assert "cloud_tasks = false" in answer["error"]
    assert daemon.scheduler.tasks() == []
    assert (await ask(cloud, "schedule_list", {})) == {"tasks": []}


async def test_the_cloud_lists_and_removes_only_its_own_tasks(
    edge: Daemon, cloud: FakeCloud
) -> None:
    local = await edge.scheduler.add(
        timetable=every(3600, anchor=time.time()),
        tool="terminal",
        args={"command": "true"},
    )
    added = await ask(
        cloud, "schedule_add", {"cron": "0 9 * * *", "tz": "UTC", "tool": "terminal",
                                "args": {"command": "date"}, "name": "morning"},
    )  # fmt: skip
    task = added["task"]
    assert (task["origin"], task["name"], task["tool"]) == ("cloud", "morning", "terminal")
    listed = await ask(cloud, "schedule_list", {})
    assert [t["id"] for t in listed["tasks"]] == [task["id"]]  # not the local one

    refused = await ask(cloud, "schedule_remove", {"id": local.id})
    assert "no task" in refused["error"]
    assert edge.scheduler.get(local.id) is not None
    malformed = await ask(cloud, "schedule_remove", {})
    assert '"id"' in malformed["error"]
    assert (await ask(cloud, "schedule_remove", {"id": task["id"]})) == {"removed": task["id"]}
    assert [t.id for t in edge.scheduler.tasks()] == [local.id]


async def test_a_run_while_the_tunnel_is_down_is_reported_once_it_is_back(
    edge: Daemon, cloud: FakeCloud
) -> None:
    due = time.time() + 2.0
    added = await ask(
        cloud, "schedule_add", {"at": due, "tool": "terminal", "args": {"command": "echo away"}}
    )
    task_id = added["task"]["id"]
    cloud.refuse_status = 503  # down, and staying down
    await cloud.drop()
    dropped_at = time.time()
    with trio.fail_after(SOON):
        await until(lambda: edge.tunnel.status is not TunnelStatus.CONNECTED)
        await eventually(lambda: ended(edge, task_id))
    [run] = await edge.scheduler.history(task_id)
    assert run.status == "ok"
    assert run.excerpt == "away\n"
    assert run.started_at is not None
    assert run.started_at >= max(due, dropped_at)
    assert reports(cloud) == []

    cloud.refuse_status = None
    with trio.fail_after(SOON):
        await cloud.wait_for(lambda: bool(reports(cloud)))
        # confirmed by a pong, then marked reported in the store
        await until(lambda: len(edge.tunnel.journal) == 0)
        await eventually(lambda: all_reported(edge))
    [report] = reports(cloud)
    assert (report["seq"], report["taskId"], report["status"]) == (run.seq, task_id, "ok")
    assert (report["tool"], report["excerpt"]) == ("terminal", "away\n")

    await cloud.drop()  # a reconnect sends nothing again: it was confirmed
    with trio.fail_after(SOON):
        await cloud.wait_connected(cloud.handshakes + 1)
        await cloud.ping()
    assert len(reports(cloud)) == 1


async def test_a_run_is_refused_once_the_cloud_no_longer_approves_its_tool(
    edge: Daemon, cloud: FakeCloud
) -> None:
    added = await ask(
        cloud, "schedule_add", {"every": "1h", "tool": "terminal", "args": {"command": "true"}}
    )
    task_id = added["task"]["id"]
    with trio.fail_after(SOON):
        assert (await edge.scheduler.run_now(task_id)).status == "ok"
        await cloud.approve_tools(["file_read"])
        await until(lambda: edge.approved == {"file_read"})
        run = await edge.scheduler.run_now(task_id)
        assert run.status == "refused"
        assert run.excerpt is not None
        assert "no longer approves" in run.excerpt
        await cloud.wait_for(lambda: len(reports(cloud)) == 2)
    assert [r["status"] for r in reports(cloud)] == ["ok", "refused"]


async def test_a_run_left_unreported_is_sent_at_the_next_start(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = await start(nursery, cloud, workspace, state)
    added = await ask(
        cloud, "schedule_add", {"every": "1h", "tool": "terminal", "args": {"command": "echo 1"}}
    )
    with trio.fail_after(SOON):
        run = await first.scheduler.run_now(added["task"]["id"])
        await cloud.wait_for(lambda: len(reports(cloud)) == 1)
        await eventually(lambda: all_reported(first))
        await first.stop()
        await first.stopped.wait()
    # As if edge had been killed after the run ended, before its report was journaled.
    with sqlite3.connect(state / "edge.db") as conn:
        conn.execute("UPDATE schedule_runs SET reported = 0 WHERE seq = ?", (run.seq,))
        conn.execute("DELETE FROM journal_results")
    cloud.frames.clear()

    second = await start(nursery, cloud, workspace, state)
    with trio.fail_after(SOON):
        await cloud.wait_for(lambda: len(reports(cloud)) == 1)
        await eventually(lambda: all_reported(second))
        await cloud.ping()
    [report] = reports(cloud)
    assert (report["seq"], report["status"], report["excerpt"]) == (run.seq, "ok", "1\n")
