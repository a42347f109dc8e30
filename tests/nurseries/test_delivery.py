"""Results reach the cloud exactly as promised: a real daemon, a real store, the fake cloud.

Prompt confirmation, what a clean stop keeps, the journal across restarts,
frames JSON cannot carry, and a store that cannot be used.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud
from edge.net.backoff import Backoff
from edge.nurseries.outbox import encode_result
from edge.nurseries.tunnel import TunnelOptions, TunnelStatus
from edge.store import DB_FILE, open_store
from edge.tools.registry import CallContext, ToolSpec

from ..conftest import fast_tunnel, make_config, until

pytestmark = pytest.mark.usefixtures("no_child_left")


async def kept(state: Path) -> list[Any]:
    """The ids of the results the journal in ``state`` keeps for the next run."""
    async with open_store(state / DB_FILE) as store:
        rows = await store.read(lambda c: c.execute("SELECT frame FROM journal_results").fetchall())
    return [json.loads(frame)["id"] for (frame,) in rows]


def small_files(workspace: Path) -> None:
    (workspace / "small.txt").write_text("hello\n")


async def test_results_are_confirmed_within_a_second(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, mock_clock: trio.testing.MockClock
) -> None:
    # Virtual time, real loopback: the 30 s heartbeat would jump by 30 s.
    mock_clock.autojump_threshold = 0.02
    options = TunnelOptions(backoff=Backoff(first=0.05, cap=0.2, jitter=0.0))
    daemon = await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=options).run)
    with trio.fail_after(60):
        await cloud.wait_connected()
        await cloud.call("terminal", {"command": "echo hi"})
        sent_at = trio.current_time()
        await daemon.tunnel.outbox.wait_confirmed()
    waited = trio.current_time() - sent_at
    assert waited < 1.0, waited
    assert cloud.pings_answered >= 1


async def test_one_ping_confirms_a_burst(edge: Daemon, cloud: FakeCloud, workspace: Path) -> None:
    small_files(workspace)
    with trio.fail_after(20):
        ids = [await cloud.start_call("file_read", {"path": "small.txt"}) for _ in range(100)]
        for call_id in ids:
            assert (await cloud.result(call_id))["output"] == "hello\n"
        await edge.tunnel.outbox.wait_confirmed()
        await cloud.drop()
        await cloud.wait_connected(2)
        await trio.sleep(0.1)
    assert cloud.pings_answered < 20  # coalesced: nowhere near one per result
    assert cloud.duplicate_results == 0
    assert edge.tunnel.info()["resent"] == 0


async def run_200_then_stop(cloud: FakeCloud, workspace: Path, state: Path) -> Daemon:
    small_files(workspace)
    async with trio.open_nursery() as run:
        cfg = make_config(workspace, cloud, state_dir=state)
        daemon: Daemon = await run.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
        with trio.fail_after(30):
            await cloud.wait_connected()
            ids = [await cloud.start_call("file_read", {"path": "small.txt"}) for _ in range(200)]
            for call_id in ids:
                await cloud.result(call_id)
        with trio.fail_after(5):
            await daemon.stop()
    return daemon


async def test_a_clean_stop_keeps_nothing_the_cloud_confirmed(
    cloud: FakeCloud, workspace: Path, tmp_path: Path
) -> None:
    daemon = await run_200_then_stop(cloud, workspace, tmp_path / "state")
    print(f"clean stop after 200 confirmed results: {len(await kept(tmp_path / 'state'))} kept")
    assert await kept(tmp_path / "state") == []
    assert daemon.tunnel.info()["outbox"] == 0


async def test_a_clean_stop_keeps_what_the_cloud_did_not_confirm(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    cloud.answer_pings = False
    await run_200_then_stop(cloud, workspace, state)
    assert len(await kept(state)) == 200
    assert cloud.duplicate_results == 0
    cloud.answer_pings = True
    cfg = make_config(workspace, cloud, state_dir=state)
    daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(20):
        await cloud.wait_for(lambda: cloud.duplicate_results == 200)  # the cloud deduplicates
        await daemon.tunnel.outbox.wait_confirmed()
        await until(lambda: daemon.tunnel.journal.durable and daemon.tunnel.info()["outbox"] == 0)
    assert daemon.tunnel.info()["resent"] == 200  # sent in the last run already


def write_legacy_outbox(state: Path) -> None:
    state.mkdir(parents=True)
    lines = [encode_result("from-jsonl", {"output": "old"}), encode_result(41, {"output": "older"})]
    (state / "outbox.jsonl").write_text("\n".join(lines) + "\n")


async def test_an_older_edges_outbox_jsonl_moves_into_the_journal(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    write_legacy_outbox(state)
    cloud.refuse_status = 503
    cfg = make_config(workspace, cloud, state_dir=state)
    async with trio.open_nursery() as run:
        daemon = await run.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
        assert not (state / "outbox.jsonl").exists()
        assert daemon.tunnel.info()["outbox"] == 2
        await daemon.stop()
    assert sorted(map(str, await kept(state))) == ["41", "from-jsonl"]
    cloud.refuse_status = None
    await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(10):
        assert (await cloud.result("from-jsonl")) == {"output": "old"}
        assert (await cloud.result(41)) == {"output": "older"}


async def _odd_values(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    if ctx.progress is not None:
        ctx.progress(math.nan, None, "a progress report JSON cannot carry")
        ctx.progress(1, 2, "fine")
    odd: Any = {1, 2} if args["kind"] == "set" else math.nan
    return {"output": "made", "extra": [{"deep": odd}]}


async def test_a_result_json_cannot_carry_becomes_an_error_result(
    edge: Daemon, cloud: FakeCloud, caplog: pytest.LogCaptureFixture
) -> None:
    schema = {"type": "object", "properties": {"kind": {"type": "string"}}, "required": ["kind"]}
    edge.registry.add(ToolSpec("odd", "returns what JSON cannot carry", schema, _odd_values))
    with trio.fail_after(10):
        await until(lambda: "odd" in edge.approved)
        for kind in ("set", "nan"):
            result = await cloud.call("odd", {"kind": kind})
            assert set(result) == {"error"}
            assert "not valid JSON" in result["error"]
        await cloud.wait_for(lambda: any(_progress(f) == "fine" for f in cloud.frames))
        assert (await cloud.call("terminal", {"command": "echo still"}))["output"] == "still\n"
    assert edge.tunnel.connections == 1
    assert not any(_progress(f) == "a progress report JSON cannot carry" for f in cloud.frames)
    assert "dropped a progress of call" in caplog.text


def _progress(frame: Any) -> Any:
    if isinstance(frame, dict) and frame.get("method") == "progress":
        return frame["params"].get("message")
    return None


def write_garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00garbage\x00" * 1000)


async def test_a_corrupt_store_is_set_aside_and_edge_keeps_working(
    nursery: trio.Nursery,
    cloud: FakeCloud,
    workspace: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = tmp_path / "state"
    write_garbage(state / DB_FILE)
    small_files(workspace)
    cfg = make_config(workspace, cloud, state_dir=state)
    daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(10):
        await cloud.wait_connected()
        assert (await cloud.call("file_read", {"path": "small.txt"}))["output"] == "hello\n"
    assert daemon.tunnel.journal.durable
    assert "is corrupt" in caplog.text
    assert len(list(state.glob(f"{DB_FILE}.corrupt-*"))) == 1


async def test_without_a_usable_store_edge_works_in_memory(
    nursery: trio.Nursery,
    cloud: FakeCloud,
    workspace: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "not-a-dir"
    write_garbage(blocker)
    small_files(workspace)
    cfg = make_config(workspace, cloud, state_dir=blocker / "state")
    daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(10):
        await cloud.wait_connected()
        assert (await cloud.call("file_read", {"path": "small.txt"}))["output"] == "hello\n"
    assert not daemon.tunnel.journal.durable
    assert daemon.tunnel.info()["journal"] == "memory"
    assert daemon.tunnel.status is TunnelStatus.CONNECTED
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("cannot open the store" in e and "in memory only" in e for e in errors)
