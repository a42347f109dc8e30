"""The agents' tasks handle: states, events, cancel, deadlines, and the store across runs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.agents.tasks import (
    STOPPED,
    AgentTask,
    AgentTasks,
    Outcome,
    Report,
    Runners,
    serve_tasks,
)
from edge.protocol.a2a import TaskEvent, TaskState
from edge.store import Store, open_store

BASE = 1_000_000.0


def clock() -> float:
    return BASE + trio.current_time()


class Work:
    """Local runners a test steers: each task waits for its release, reporting progress."""

    def __init__(self) -> None:
        self.release: dict[str, trio.Event] = {}
        self.started: list[str] = []
        self.unwound: list[str] = []

    async def local(self, task: AgentTask, report: Report) -> dict[str, Any]:
        self.started.append(task.id)
        release = self.release.setdefault(task.id, trio.Event())
        try:
            for n in range(task.args.get("steps", 0)):
                report(n + 1, task.args["steps"], f"step {n + 1}")
            await release.wait()
        finally:
            self.unwound.append(task.id)
        if task.args.get("fail"):
            return {"error": "it broke\nsecond line"}
        return {"output": f"done {task.skill}"}

    def refusal(self, skill: str, origin: str) -> str | None:
        return f"unknown tool {skill!r}" if skill == "nope" else None


@asynccontextmanager
async def running(
    work: Work,
    store: Store | None = None,
    seen: list[tuple[str, TaskEvent]] | None = None,
    remote: Any = None,
) -> AsyncIterator[AgentTasks]:
    runners = Runners(local=work.local, refusal=work.refusal)
    if remote is not None:
        runners = Runners(local=work.local, refusal=work.refusal, remote=remote)

    def on_event(task: AgentTask, event: TaskEvent) -> None:
        if seen is not None:
            seen.append((task.id, event))

    async with trio.open_nursery() as nursery:
        tasks = await nursery.start(
            partial(serve_tasks, "edge-me", runners, store=store, on_event=on_event, clock=clock)
        )
        yield tasks
        nursery.cancel_scope.cancel()


async def test_a_task_runs_and_tells_every_step(autojump_clock: trio.testing.MockClock) -> None:
    work = Work()
    async with running(work) as tasks:
        task = await tasks.submit(skill="grep", args={"steps": 2}, origin="cloud", task_id="t1")
        assert task.state is TaskState.SUBMITTED
        assert task.context_id == "t1"
        seen: list[TaskEvent] = []

        async def follow() -> None:
            async with tasks.subscribe("t1") as events:
                async for event in events:
                    seen.append(event)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.sleep(1)
            work.release["t1"].set()
        done = await tasks.wait("t1")
        assert done.state is TaskState.COMPLETED
        assert done.result == {"output": "done grep"}
        # The current one (whichever it was when it subscribed), then every later one.
        assert [e.seq for e in seen] == list(range(seen[0].seq, 6))
        assert [e.state for e in done.events] == ["submitted", "working", "working", "working",
                                                  "completed"]  # fmt: skip
        assert done.events[2].progress == 1
        assert done.events[3].message == "step 2"
        assert done.to_json()["seq"] == 5
        assert done.to_json()["state"] == "completed"
        # A finished task's subscription gives its final event and ends.
        async with tasks.subscribe("t1") as events:
            assert [e.seq async for e in events] == [5]
        with pytest.raises(KeyError):
            tasks.subscribe("nope")
        with pytest.raises(ValueError, match="exists"):
            await tasks.submit(skill="grep", args={}, origin="cloud", task_id="t1")


async def test_a_failing_tool_fails_the_task_with_its_first_line(
    autojump_clock: trio.testing.MockClock,
) -> None:
    work = Work()
    async with running(work) as tasks:
        await tasks.submit(skill="grep", args={"fail": True}, origin="cloud", task_id="t")
        await trio.sleep(0.1)
        work.release["t"].set()
        task = await tasks.wait("t")
        assert task.state is TaskState.FAILED
        assert task.reason == "it broke"
        assert task.result == {"error": "it broke\nsecond line"}


async def test_rejected_tasks_never_run(autojump_clock: trio.testing.MockClock) -> None:
    work = Work()
    async with running(work) as tasks:
        unknown = await tasks.submit(skill="nope", args={}, origin="cloud")
        assert unknown.state is TaskState.REJECTED
        assert unknown.reason == "unknown tool 'nope'"
        late = await tasks.submit(skill="grep", args={}, origin="cloud", deadline=clock() - 1)
        assert late.state is TaskState.REJECTED
        assert "deadline had passed" in (late.reason or "")
        assert late.result == {"error": late.reason}
        assert (await tasks.wait(late.id)) is late
        await trio.sleep(1)
        assert work.started == []
        assert tasks.info() == {"tasks": 2, "inFlight": 0, "peers": 0, "agentId": "edge-me",
                                "name": "edge-me"}  # fmt: skip


async def test_cancel_stops_the_work_and_a_second_cancel_does_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    work = Work()
    seen: list[tuple[str, TaskEvent]] = []
    async with running(work, seen=seen) as tasks:
        await tasks.submit(skill="grep", args={}, origin="cloud", task_id="t")
        await trio.sleep(1)
        assert work.started == ["t"]
        task = tasks.cancel("t", "stop it")
        assert task is not None
        assert task.state is TaskState.CANCELED
        assert task.reason == "stop it"
        await trio.sleep(0.01)
        assert work.unwound == ["t"]
        again = tasks.cancel("t", "again")
        assert again is task
        assert again.reason == "stop it"
        assert again.seq == 3
        assert tasks.cancel("missing") is None
        assert [e.state for _, e in seen] == ["submitted", "working", "canceled"]
        assert seen[-1][1].result == {"error": "stop it", "cancelled": True}


async def test_a_deadline_fails_the_task_saying_so(autojump_clock: trio.testing.MockClock) -> None:
    work = Work()
    async with running(work) as tasks:
        start = trio.current_time()
        await tasks.submit(skill="grep", args={}, origin="cloud", task_id="t", deadline=clock() + 5)
        task = await tasks.wait("t")
        assert trio.current_time() - start == pytest.approx(5)
        assert task.state is TaskState.FAILED
        assert task.reason is not None
        assert task.reason.startswith("the deadline passed")
        assert task.result is not None
        assert task.result["timed_out"] is True
        assert work.unwound == ["t"]


async def test_list_is_newest_first_by_context(autojump_clock: trio.testing.MockClock) -> None:
    work = Work()
    async with running(work) as tasks:
        for n in range(4):
            await tasks.submit(skill="nope", args={}, origin="local", task_id=f"t{n}",
                               context_id="even" if n % 2 == 0 else "odd")  # fmt: skip
        assert [t.id for t in tasks.list()] == ["t3", "t2", "t1", "t0"]
        assert [t.id for t in tasks.list(context_id="even")] == ["t2", "t0"]
        assert [t.id for t in tasks.list(limit=1)] == ["t3"]
        tasks.set_peers([{"id": "edge-me"}, {"id": "edge-b", "name": "b"}])
        assert tasks.peers() == [{"id": "edge-b", "name": "b"}]


async def test_remote_work_is_mirrored(autojump_clock: trio.testing.MockClock) -> None:
    async def remote(task: AgentTask, report: Report) -> Outcome:
        assert task.agent == "edge-b"
        await trio.sleep(1)
        report(None, None, None)  # the remote says working
        report(0.5, 1.0, "half")
        await trio.sleep(1)
        return Outcome(TaskState.COMPLETED, {"output": "there"})

    async with running(Work(), remote=remote) as tasks:
        await tasks.submit(skill="grep", args={}, origin="local", agent="edge-b", task_id="t")
        task = await tasks.wait("t")
        assert [(e.state, e.progress) for e in task.events] == [
            ("submitted", None), ("working", None), ("working", 0.5), ("completed", None),
        ]  # fmt: skip
        assert task.result == {"output": "there"}


def _rows(db: Path, sql: str) -> list[Any]:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_tasks_and_events_survive_a_restart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    db = tmp_path / "edge.db"
    work = Work()
    async with open_store(db) as store, running(work, store=store) as tasks:
        await tasks.submit(skill="grep", args={"steps": 1}, origin="cloud", task_id="done")
        await trio.sleep(0.1)
        work.release["done"].set()
        await tasks.wait("done")
        await tasks.submit(skill="grep", args={}, origin="cloud", task_id="left")
        await trio.sleep(0.1)
        await tasks._flushed()
        # The next run must find "left" unfinished, as a killed edge leaves it: this run's
        # own stop (which fails it) is kept out of the store.
        tasks._store = None
    assert _rows(db, "SELECT id, state FROM agent_tasks ORDER BY created_at") == [
        ("done", "completed"), ("left", "working"),
    ]  # fmt: skip
    seen: list[tuple[str, TaskEvent]] = []
    async with open_store(db) as store, running(Work(), store=store, seen=seen) as tasks:
        left = tasks.get("left")
        assert left is not None
        assert left.state is TaskState.FAILED
        assert left.reason == STOPPED
        assert [(i, e.seq, e.state) for i, e in seen] == [("left", 3, "failed")]
        done = tasks.get("done")
        assert done is not None
        assert done.result == {"output": "done grep"}
        assert [e.seq for e in done.events] == [1, 2, 3, 4]
        assert [e.seq for e in await tasks.events_after("done", 2)] == [3, 4]
    events = _rows(db, "SELECT seq, event FROM agent_events WHERE task_id = 'left' ORDER BY seq")
    assert [json.loads(e)["state"] for _, e in events] == ["submitted", "working", "failed"]


async def test_the_store_keeps_the_latest_progress_and_replays_have_no_gap(
    tmp_path: Path,
) -> None:
    from edge.agents.tasks import STORED_PROGRESS

    db = tmp_path / "edge.db"
    steps = STORED_PROGRESS + 100
    work = Work()
    async with open_store(db) as store, running(work, store=store) as tasks:
        await tasks.submit(skill="grep", args={"steps": steps}, origin="cloud", task_id="t")
        with trio.fail_after(30):
            work.release.setdefault("t", trio.Event()).set()
            task = await tasks.wait("t")
            events = await tasks.events_after("t", 0)
        last = task.seq
        assert last == steps + 3
        assert [e.seq for e in events] == list(range(1, last + 1))
        assert [e.state for e in events[:2]] == ["submitted", "working"]
        assert events[-1].state == "completed"
        stood_in = [e for e in events if e.state == "working" and e.progress is None][1:]
        assert len(stood_in) == steps - STORED_PROGRESS
    stored = _rows(db, "SELECT seq FROM agent_events WHERE task_id = 't' ORDER BY seq")
    assert len(stored) == 2 + STORED_PROGRESS + 1
    assert [s for (s,) in stored][:3] == [1, 2, last - STORED_PROGRESS]


async def test_a_submit_while_the_tasks_stop_does_not_wait_for_the_stopped_writer(
    tmp_path: Path,
) -> None:
    # The tasks' nursery cancelled (edge stopping) while a request still arrives: its
    # shielded wait for the store must end with the writer task, not hang the stop.
    async with open_store(tmp_path / "edge.db") as store, running(Work(), store=store) as tasks:
        tasks._nursery.cancel_scope.cancel()
        for _ in range(10):  # the writer task sees the cancel and ends
            await trio.lowlevel.checkpoint()
        with trio.fail_after(10):
            late = await tasks.submit(skill="grep", args={}, origin="cloud", task_id="late")
        assert late.state is TaskState.FAILED
        assert late.reason == "edge stopped while it ran"
