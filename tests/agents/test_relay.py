"""Agents over the tunnel: two in-process daemons and the fake cloud relaying between them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.agents.tasks import STOPPED
from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud
from edge.protocol.a2a import TaskState
from edge.tools.registry import CallContext, ToolSpec

from ..conftest import CONNECT_WITHIN, TOKEN, fast_tunnel, make_config, until

#: A bound on anything a test waits for (never reached unless something is broken).
SOON = 30.0


@dataclass
class Probe:
    """What the test tools saw: calls started, calls unwound (cancelled or not)."""

    started: list[str]
    unwound: list[str]
    release: trio.Event


def test_tools(probe: Probe) -> list[ToolSpec]:
    async def steps(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        n = int(args.get("n", 3))
        for i in range(n):
            await trio.sleep(float(args.get("delay", 0.01)))
            if ctx.progress is not None:
                ctx.progress(i + 1, n, f"step {i + 1}")
        return {"output": f"{n} steps"}

    async def hold(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        probe.started.append(str(ctx.call_id))
        try:
            await probe.release.wait()
        finally:
            probe.unwound.append(str(ctx.call_id))
        return {"output": "released"}

    schema: dict[str, Any] = {"type": "object"}
    return [
        ToolSpec("steps", "counts, reporting progress", schema, steps),
        ToolSpec("hold", "waits until released", schema, hold),
    ]


test_tools.__test__ = False  # type: ignore[attr-defined]


@dataclass
class Pair:
    cloud: FakeCloud
    a: Daemon
    b: Daemon
    probe: Probe

    @property
    def a_id(self) -> str:
        return self.a.agents.agent_id

    @property
    def b_id(self) -> str:
        return self.b.agents.agent_id


async def start_daemon(
    nursery: trio.Nursery,
    cloud: FakeCloud,
    root: Path,
    name: str,
    probe: Probe,
    state: Path | None = None,
) -> Daemon:
    workspace = root / name / "ws"
    workspace.mkdir(parents=True)
    state = state or root / name / "state"
    cfg = make_config(workspace, cloud, state_dir=state, agent_name=name)
    daemon = Daemon(cfg, tunnel_options=fast_tunnel())
    for spec in test_tools(probe):
        daemon.registry.add(spec)
    return await nursery.start(daemon.run)


@pytest.fixture
async def pair(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Pair]:
    cloud = await nursery.start(FakeCloud([TOKEN]).serve)
    probe = Probe([], [], trio.Event())
    a = await start_daemon(nursery, cloud, tmp_path, "a", probe)
    b = await start_daemon(nursery, cloud, tmp_path, "b", probe)
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_agent(a.agents.agent_id)
        await cloud.wait_agent(b.agents.agent_id)
        await until(lambda: len(a.agents.peers()) == 1 and len(b.agents.peers()) == 1)
    yield Pair(cloud, a, b, probe)
    probe.release.set()


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in events]


async def test_the_report_names_the_agent_and_the_peers_are_known(pair: Pair) -> None:
    report = pair.cloud.agents[pair.a_id]
    assert report["agent"] == {"id": pair.a_id, "name": "a"}
    assert "agents" in report["extensions"]
    assert "agent_ask" in [t["name"] for t in report["tools"]]
    (peer,) = pair.a.agents.peers()
    assert peer["id"] == pair.b_id
    assert peer["name"] == "b"
    assert "steps" in peer["skills"]
    assert pair.a.agents.info()["peers"] == 1


async def test_the_cloud_asks_an_edge_and_gets_every_event_once(pair: Pair) -> None:
    cloud = pair.cloud
    with trio.fail_after(SOON):
        task_id = await cloud.ask_agent(pair.b_id, "steps", {"n": 3})
        final = await cloud.agent_final(task_id)
    events = cloud.agent_events(task_id)
    assert seqs(events) == list(range(1, len(events) + 1))
    assert [e["state"] for e in events] == ["submitted", "working"] + ["working"] * 3 + [
        "completed"
    ]
    assert [e.get("progress") for e in events[2:5]] == [1, 2, 3]
    assert final["result"] == {"output": "3 steps"}
    task = pair.b.agents.get(task_id)
    assert task is not None
    assert task.origin == "cloud"
    assert task.state is TaskState.COMPLETED


async def test_unknown_tools_are_rejected(pair: Pair) -> None:
    with trio.fail_after(SOON):
        task_id = await pair.cloud.ask_agent(pair.b_id, "nope", {})
        final = await pair.cloud.agent_final(task_id)
    assert final["state"] == "rejected"
    assert final["seq"] == 1
    assert final["message"] == "unknown tool 'nope'"


async def test_an_edge_asks_another_through_the_cloud(pair: Pair) -> None:
    cloud = pair.cloud
    with trio.fail_after(SOON):
        task_id = await cloud.ask_agent(
            pair.a_id, "agent_ask", {"agent": "b", "tool": "steps", "args": {"n": 2}}
        )
        final = await cloud.agent_final(task_id)
    assert final["state"] == "completed"
    assert final["result"]["output"] == "2 steps"
    events = cloud.agent_events(task_id)
    # The remote's progress came through as the asking call's progress.
    assert [e.get("progress") for e in events if e.get("progress") is not None] == [1, 2]
    (outbound,) = [t for t in pair.a.agents.list() if t.agent is not None]
    assert outbound.agent == pair.b_id
    assert outbound.origin == "local"
    assert outbound.state is TaskState.COMPLETED
    there = pair.b.agents.get(outbound.id)
    assert there is not None
    assert there.origin == f"edge:{pair.a_id}"


async def test_a_cancel_cascades_and_a_second_one_does_nothing(pair: Pair) -> None:
    cloud, probe = pair.cloud, pair.probe
    with trio.fail_after(SOON):
        task_id = await cloud.ask_agent(
            pair.a_id, "agent_ask", {"agent": pair.b_id, "tool": "hold", "timeout": 600}
        )
        await until(lambda: len(probe.started) == 1, poll=0.02)
        (outbound,) = [t for t in pair.a.agents.list() if t.agent is not None]
        await cloud.cancel_agent_task(task_id, "no longer needed")
        final = await cloud.agent_final(task_id)
        assert final["state"] == "canceled"
        assert final["message"] == "no longer needed"
        # The task edge a handed to edge b is cancelled there too, and its call with it.
        await until(lambda: probe.unwound == probe.started, poll=0.02)
        there = pair.b.agents.get(outbound.id)
        assert there is not None
        await until(lambda: there.state is TaskState.CANCELED, poll=0.02)
        assert outbound.state is TaskState.CANCELED
        seen = len(cloud.routes[task_id].received)
        await cloud.cancel_agent_task(task_id, "again")
        await trio.sleep(0.5)
    assert len(cloud.routes[task_id].received) == seen
    task = pair.a.agents.get(task_id)
    assert task is not None
    assert task.reason == "no longer needed"


async def test_a_deadline_fails_the_task_saying_why(pair: Pair) -> None:
    cloud = pair.cloud
    with trio.fail_after(SOON):
        task_id = await cloud.ask_agent(pair.b_id, "hold", {}, deadline=time.time() + 1)
        final = await cloud.agent_final(task_id)
    assert final["state"] == "failed"
    assert final["message"].startswith("the deadline passed before the task finished")
    assert final["result"]["timed_out"] is True
    with trio.fail_after(SOON):
        late = await cloud.ask_agent(pair.b_id, "hold", {}, deadline=time.time() - 1)
        final = await cloud.agent_final(late)
    assert final["state"] == "rejected"
    assert "deadline had passed" in final["message"]


async def test_asking_an_agent_that_is_not_there_fails_clearly(pair: Pair) -> None:
    cloud = pair.cloud
    with trio.fail_after(SOON):
        task_id = await cloud.ask_agent(pair.a_id, "agent_ask", {"agent": "nobody", "tool": "x"})
        final = await cloud.agent_final(task_id)
        assert final["state"] == "failed"
        assert "no agent 'nobody' is connected to the cloud; known: b" in final["result"]["error"]
        # An id the cloud does not know (the peers are not a complete list): it says so.
        pair.a.agents.set_peers([])
        task_id = await cloud.ask_agent(pair.a_id, "agent_ask", {"agent": "edge-gone", "tool": "x"})
        final = await cloud.agent_final(task_id)
    assert final["state"] == "failed"
    assert "no agent 'edge-gone' is connected to the cloud" in final["result"]["error"]


async def test_a_reconnect_mid_stream_loses_and_repeats_nothing(pair: Pair) -> None:
    cloud = pair.cloud
    with trio.fail_after(SOON):
        task_id = await cloud.ask_agent(
            pair.a_id, "agent_ask",
            {"agent": "b", "tool": "steps", "args": {"n": 12, "delay": 0.15}},
        )  # fmt: skip
        await until(lambda: len(cloud.agent_events(task_id)) >= 4, poll=0.02)
        await cloud.drop_agent(pair.a_id)  # the asker's connection
        await until(lambda: len(cloud.agent_events(task_id)) >= 9, poll=0.02)
        await cloud.drop_agent(pair.b_id)  # then the one running it
        final = await cloud.agent_final(task_id)
    assert final["state"] == "completed"
    assert final["result"]["output"] == "12 steps"
    events = cloud.agent_events(task_id)
    assert seqs(events) == list(range(1, len(events) + 1))
    progress = [e["progress"] for e in events if e.get("progress") is not None]
    assert progress == [float(n) for n in range(1, 13)]
    # Edge a, back, asked edge b for what it may have missed (and dropped what it had).
    relay = pair.a._agents.relay if pair.a._agents is not None else None
    assert relay is not None
    assert relay.resumes >= 1


async def test_a_restarted_edge_fails_what_it_was_running(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    cloud = await nursery.start(FakeCloud([TOKEN]).serve)
    cloud.away_grace = 60.0  # the edge is back long before: its own word must come
    probe = Probe([], [], trio.Event())
    async with trio.open_nursery() as first:
        b = await start_daemon(first, cloud, tmp_path, "b", probe)
        agent_id = b.agents.agent_id
        with trio.fail_after(SOON):
            await cloud.wait_agent(agent_id)
            task_id = await cloud.ask_agent(agent_id, "hold", {})
            await until(lambda: len(probe.started) == 1, poll=0.02)
        # As a killed edge leaves it: the task's rows say working, and nothing more is written.
        b.agents._store = None
        b.tunnel.disconnect()
        first.cancel_scope.cancel()
    # The same state directory: the same agent id, and the task it left fails.
    with trio.fail_after(SOON):
        back = await start_daemon(nursery, cloud, tmp_path, "b2", probe, tmp_path / "b" / "state")
        assert back.agents.agent_id == agent_id
        final = await cloud.agent_final(task_id)
    assert final["state"] == "failed"
    assert final["message"] == STOPPED
    assert seqs(cloud.agent_events(task_id)) == [1, 2, 3]


async def test_bad_frames_get_clear_answers_and_a_resend_is_the_same_task(pair: Pair) -> None:
    cloud = pair.cloud
    conn = cloud.agent(pair.b_id)
    assert conn is not None
    bad = {"jsonrpc": "2.0", "id": "bad-1", "method": "agent_request", "params": {"skill": 5}}
    resume = {"jsonrpc": "2.0", "id": "bad-2", "method": "agent_resume",
              "params": {"taskId": "t", "after": -3}}  # fmt: skip
    cancel = {"jsonrpc": "2.0", "id": "bad-3", "method": "agent_cancel",
              "params": {"taskId": "nope"}}  # fmt: skip
    with trio.fail_after(SOON):
        for frame in (bad, resume, cancel):
            await cloud._send_to(conn, frame)
        await cloud.wait_for(lambda: {"bad-1", "bad-2", "bad-3"} <= set(cloud.results))
    assert cloud.results["bad-1"] == {
        "error": 'bad agent_request: "taskId" must be a non-empty string'
    }
    assert cloud.results["bad-2"] == {
        "error": 'bad agent_resume: "after" must be an integer of at least 0'
    }
    assert cloud.results["bad-3"] == {"error": "no task 'nope' here"}
    # The same request twice (a resend after a drop): one task, run once, answered twice.
    request = {"jsonrpc": "2.0", "method": "agent_request",
               "params": {"taskId": "twice", "skill": "hold", "args": {}}}  # fmt: skip
    with trio.fail_after(SOON):
        await cloud._send_to(conn, {**request, "id": "first"})
        await until(lambda: len(pair.probe.started) == 1, poll=0.02)
        await cloud._send_to(conn, {**request, "id": "second"})
        await cloud.wait_for(lambda: {"first", "second"} <= set(cloud.results))
        assert cloud.results["second"] == {"taskId": "twice", "state": "working"}
        await trio.sleep(0.3)
    assert len(pair.probe.started) == 1
    pair.probe.release.set()
    task = pair.b.agents.get("twice")
    assert task is not None
    with trio.fail_after(SOON):
        await pair.b.agents.wait("twice")
    assert task.state is TaskState.COMPLETED
    assert task.result == {"output": "released"}
