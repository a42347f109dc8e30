"""Agents over the tunnel: two in-process daemons and the fake cloud relaying between them."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from edge.agents.relay import ASK_TIMEOUT, Agents, serve_agents
from edge.agents.tasks import STOPPED, AgentTask, Report, RunLocal
from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud
from edge.protocol import Request
from edge.protocol.a2a import MAX_HOPS, TaskState
from edge.protocol.build import encode
from edge.store import Store, open_store
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


# -- the relay alone, over a recording uplink -------------------------------------------------


class Recorder:
    """An uplink that keeps what the relay sends, encoded as the tunnel encodes it;
    ``room`` best-effort frames fit before the link is swamped."""

    def __init__(self, room: int = 1_000_000) -> None:
        self.frames: list[tuple[str, Any, dict[str, Any]]] = []
        self.room = room

    def send_durable(self, key: str, frame: Mapping[str, Any]) -> None:
        encode(frame)
        self.frames.append(("durable", key, dict(frame)))

    def send_now(self, what: str, frame: Mapping[str, Any]) -> bool:
        encode(frame)
        if self.room <= 0:
            return False
        self.room -= 1
        self.frames.append(("now", what, dict(frame)))
        return True

    def send_result(self, request_id: str | int, result: Mapping[str, Any]) -> None:
        encode({"jsonrpc": "2.0", "id": request_id, "result": dict(result)})
        self.frames.append(("result", request_id, dict(result)))

    def methods(self) -> list[str | None]:
        return [f.get("method") for kind, _, f in self.frames if kind != "result"]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            f["params"] for k, _, f in self.frames
            if f.get("method") == "agent_event" and kind in (None, k)
        ]  # fmt: skip

    def answers(self) -> dict[Any, dict[str, Any]]:
        return {rid: f for kind, rid, f in self.frames if kind == "result"}


def _request(method: str, params: dict[str, Any], rpc_id: str | int | None = None) -> Request:
    return Request(method, params, rpc_id)


async def _slow(task: AgentTask, report: Report) -> dict[str, Any]:
    for n in range(int(task.args.get("steps", 0))):
        report(n + 1.0, None, f"step {n + 1}")
    await trio.sleep(float(task.args.get("sleep", 5)))
    return {"output": "ok"}


@asynccontextmanager
async def relay_alone(
    up: Recorder, run_local: RunLocal = _slow, store: Store | None = None
) -> AsyncIterator[Agents]:
    async with trio.open_nursery() as nursery:
        agents = await nursery.start(partial(serve_agents, up, run_local, store=store))
        yield agents
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("output", [{"x": math.nan}, b"raw bytes", {1, 2}])
async def test_a_result_json_cannot_carry_fails_the_task_and_replays_survive(
    tmp_path: Path, output: Any
) -> None:
    async def odd(task: AgentTask, report: Report) -> dict[str, Any]:
        return {"output": output}

    up = Recorder()
    async with open_store(tmp_path / "edge.db") as store, relay_alone(up, odd, store) as agents:
        on = agents.relay.methods()
        on["agent_request"](_request("agent_request", {"taskId": "t", "skill": "x"}, 1))
        with trio.fail_after(SOON):
            await until(lambda: agents.tasks.get("t") is not None)
            task = await agents.tasks.wait("t")
        assert task.state is TaskState.FAILED
        assert task.reason is not None
        assert task.reason.startswith("the tool's result cannot be sent as JSON: ")
        on["agent_resume"](_request("agent_resume", {"taskId": "t", "after": 0}, 2))
        with trio.fail_after(SOON):
            await until(lambda: 2 in up.answers())
        assert up.answers()[2] == {"taskId": "t", "replayed": 3}
        finals = [e for e in up.events("durable") if e["state"] == "failed"]
        assert len(finals) == 2  # the first time and the replay's
        assert finals[0]["result"]["error"] == task.reason
    async with open_store(tmp_path / "edge.db") as store, relay_alone(up, odd, store) as agents:
        again = agents.tasks.get("t")
        assert again is not None
        assert again.result == {"error": task.reason}


async def test_a_replay_that_cannot_be_read_is_answered_and_the_relay_lives_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    up = Recorder()
    async with relay_alone(up) as agents:
        on = agents.relay.methods()
        on["agent_request"](_request("agent_request", {"taskId": "t", "skill": "x"}, 1))
        await trio.sleep(0.1)
        agents.tasks._tasks.pop("t")  # gone between the resume and its replay
        agents.relay._nursery.start_soon(
            agents.relay._replay, _request("agent_resume", {}, 2), "t", 0
        )
        await trio.sleep(0.1)
        assert up.answers()[2] == {"error": "cannot replay task 't': 't'"}


async def test_a_cancel_before_the_work_starts_asks_nothing_of_the_remote(
    autojump_clock: trio.testing.MockClock,
) -> None:
    up = Recorder()
    async with relay_alone(up) as agents:
        task = await agents.tasks.submit(skill="x", args={}, origin="local", agent="edge-b")
        agents.tasks.cancel(task.id)
        await trio.sleep(1)
        assert "agent_request" not in up.methods()
        assert task.state is TaskState.CANCELED
        # Nor does a local task start its tool.
        started: list[str] = []

        async def note(task: AgentTask, report: Report) -> dict[str, Any]:
            started.append(task.id)
            return {"output": "ran"}

        agents.tasks._runners = replace(agents.tasks._runners, local=note)
        here = await agents.tasks.submit(skill="x", args={}, origin="local")
        agents.tasks.cancel(here.id)
        await trio.sleep(1)
        assert started == []
        assert here.state is TaskState.CANCELED


async def test_a_final_event_after_a_gap_ends_the_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    up = Recorder()
    async with relay_alone(up) as agents:
        task = await agents.tasks.submit(skill="x", args={}, origin="a2a", agent="edge-b")
        await trio.sleep(0.1)
        on = agents.relay.methods()
        on["agent_event"](_request("agent_event", {"taskId": task.id, "seq": 1,
                                                   "state": "submitted", "at": 1.0}))  # fmt: skip
        gone = {"taskId": task.id, "seq": 3, "state": "failed", "at": 1.0,
                "message": "agent edge-b went away", "result": {"error": "gone"}}  # fmt: skip
        on["agent_event"](_request("agent_event", gone))
        with trio.fail_after(1):  # nobody answers the resume: the end came all the same
            await agents.tasks.wait(task.id)
        assert task.state is TaskState.FAILED
        assert task.reason == "agent edge-b went away"
        assert "agent_resume" in up.methods()  # the missed history, best effort
        # It ended there: no cancel goes up, and nothing is left behind.
        assert "agent_cancel" not in up.methods()
        assert agents.relay._ended_there == set()


async def test_a_task_handed_on_without_a_deadline_gets_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    up = Recorder()
    async with relay_alone(up) as agents:
        start = time.time()
        task = await agents.tasks.submit(skill="x", args={}, origin="a2a", agent="edge-b")
        assert task.deadline is not None
        assert task.deadline - start == pytest.approx(ASK_TIMEOUT, abs=5)
        await trio.sleep(0.1)
        (request,) = [f for _, _, f in up.frames if f.get("method") == "agent_request"]
        assert request["params"]["deadline"] == task.deadline
        with trio.fail_after(ASK_TIMEOUT + 10):  # the remote never answers
            await agents.tasks.wait(task.id)
        assert task.state is TaskState.FAILED
        assert task.reason is not None
        assert task.reason.startswith("the deadline passed")
        assert "agent_cancel" in up.methods()


async def test_only_changes_of_state_are_journaled_and_replays_stop_when_swamped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    up = Recorder()
    async with relay_alone(up) as agents:
        on = agents.relay.methods()
        params = {"taskId": "t", "skill": "x", "args": {"steps": 50, "sleep": 1}}
        on["agent_request"](_request("agent_request", params, 1))
        await trio.sleep(0.1)
        await agents.tasks.wait("t")
        durable = [(e["seq"], e["state"]) for e in up.events("durable")]
        assert durable == [(1, "submitted"), (2, "working"), (53, "completed")]
        assert [e["seq"] for e in up.events("now")] == list(range(3, 53))
        up.frames.clear()
        up.room = 10  # the link is swamped after ten
        on["agent_resume"](_request("agent_resume", {"taskId": "t", "after": 0}, 2))
        await trio.sleep(1)
        assert [e["seq"] for e in up.events("now")] == list(range(1, 11))
        assert [e["seq"] for e in up.events("durable")] == [53]  # the end is not lost
        assert up.answers()[2] == {"taskId": "t", "replayed": 11}


async def test_a_local_task_cannot_be_cancelled_or_replayed_from_the_tunnel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    up = Recorder()
    async with relay_alone(up) as agents:
        task = await agents.tasks.submit(skill="x", args={}, origin="a2a")
        on = agents.relay.methods()
        on["agent_cancel"](_request("agent_cancel", {"taskId": task.id}, 1))
        on["agent_resume"](_request("agent_resume", {"taskId": task.id, "after": 0}, 2))
        await trio.sleep(0.1)
        assert up.answers() == {
            1: {"error": f"no task {task.id!r} here"},
            2: {"error": f"no task {task.id!r} here"},
        }
        assert not task.final
        assert up.events() == []


async def test_a_request_resent_while_it_is_recorded_is_answered(tmp_path: Path) -> None:
    up = Recorder()
    async with open_store(tmp_path / "edge.db") as store, relay_alone(up, store=store) as agents:
        on = agents.relay.methods()
        params = {"taskId": "t", "skill": "x", "args": {}}
        on["agent_request"](_request("agent_request", params, "first"))
        on["agent_request"](_request("agent_request", params, "second"))
        with trio.fail_after(SOON):
            await until(lambda: "first" in up.answers())
        answers = up.answers()
        assert answers["second"] == {"taskId": "t", "state": "submitted"}
        assert answers["first"]["taskId"] == "t"
        assert len(up.events("durable")) >= 1


async def test_a_request_handed_on_too_often_is_rejected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    up = Recorder()
    async with relay_alone(up) as agents:
        on = agents.relay.methods()
        params = {"taskId": "far", "skill": "x", "from": "edge-z", "hops": MAX_HOPS + 1}
        on["agent_request"](_request("agent_request", params, 1))
        near = {**params, "taskId": "near", "hops": MAX_HOPS}
        on["agent_request"](_request("agent_request", near, 2))
        await trio.sleep(0.1)
        assert agents.tasks.get("far") is None
        (refused,) = [e for e in up.events() if e["taskId"] == "far"]
        assert refused["state"] == "rejected"
        why = f"the request was handed on through {MAX_HOPS + 1} agents (at most {MAX_HOPS})"
        assert refused["message"] == why
        assert up.answers()[1] == {"error": refused["message"]}
        kept = agents.tasks.get("near")
        assert kept is not None
        assert kept.hops == MAX_HOPS


# -- the cloud's part, and chains of asks ----------------------------------------------------


async def test_an_ask_made_by_a_task_keeps_within_its_deadline_one_hop_further(
    pair: Pair,
) -> None:
    cloud = pair.cloud
    with trio.fail_after(SOON):
        deadline = time.time() + 20
        task_id = await cloud.ask_agent(
            pair.a_id, "agent_ask", {"agent": "b", "tool": "steps", "timeout": 600},
            deadline=deadline,
        )  # fmt: skip
        final = await cloud.agent_final(task_id)
    assert final["state"] == "completed"
    (outbound,) = [t for t in pair.a.agents.list() if t.agent is not None]
    assert outbound.deadline is not None
    assert outbound.deadline <= deadline
    assert outbound.hops == 1
    there = pair.b.agents.get(outbound.id)
    assert there is not None
    assert there.hops == 1
    assert there.deadline == outbound.deadline


async def test_when_the_asker_goes_away_the_cloud_cancels_its_tasks(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    cloud = await nursery.start(FakeCloud([TOKEN]).serve)
    cloud.away_grace = 0.5
    probe = Probe([], [], trio.Event())
    b = await start_daemon(nursery, cloud, tmp_path, "b", probe)
    async with trio.open_nursery() as first:
        a = await start_daemon(first, cloud, tmp_path, "a", probe)
        with trio.fail_after(SOON):
            await cloud.wait_agent(a.agents.agent_id)
            await cloud.wait_agent(b.agents.agent_id)
            await until(lambda: len(a.agents.peers()) == 1, poll=0.02)
            task = await a.agents.submit(
                skill="hold", args={}, origin="local", agent=b.agents.agent_id,
                deadline=time.time() + 600,
            )  # fmt: skip
            await until(lambda: len(probe.started) == 1, poll=0.02)
        # As a killed edge leaves it: gone at once, saying nothing more.
        a.tunnel.disconnect()
        first.cancel_scope.cancel()
    with trio.fail_after(SOON):
        await until(lambda: probe.unwound == probe.started, poll=0.02)
        there = b.agents.get(task.id)
        assert there is not None
        await b.agents.wait(task.id)
    assert there.state is TaskState.CANCELED
    assert there.reason == f"agent {a.agents.agent_id} went away"
