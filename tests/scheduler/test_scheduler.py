"""edge.scheduler.scheduler: the handle on a real store, on trio's autojump clock.

The wall clock is ``VirtualClock`` (trio's virtual time plus an offset that
``jump`` moves), so every run's time is exact. The store is real (SQLite files in
``tmp_path``); ``HeldStore`` only keeps the autojump clock from jumping while one
of its operations runs in the store's thread, which it otherwise would (trio
counts a thread's work as idle time).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

from edge.scheduler import records
from edge.scheduler.alarm import SystemClock, VirtualClock, _Timerfd
from edge.scheduler.records import RunRow, TaskRow
from edge.scheduler.scheduler import WRITE_AHEAD, Scheduler, serve_scheduler
from edge.scheduler.timetable import cron, every, once
from edge.store import DB_FILE, Store, open_store

T = TypeVar("T")

#: The wall clock at virtual time 0 (a multiple of 3600: cron slots fall on round times).
BASE = 1_800_000_000.0
#: A hard bound on each test, in virtual seconds.
LIMIT = 10 * 86400


class HeldStore:
    """The real store; trio's autojump clock is held while an operation is in its thread."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._held(self.store.read, fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._held(self.store.write, fn)

    async def _held(self, op: Callable[..., Any], fn: Callable[[sqlite3.Connection], T]) -> T:
        async with trio.open_nursery() as nursery:
            # While a task waits for "all tasks blocked", trio does not autojump.
            nursery.start_soon(partial(trio.testing.wait_all_tasks_blocked, cushion=1e9))
            result: T = await op(fn)
            nursery.cancel_scope.cancel()
        return result


class Tool:
    """run_tool for the tests: records (task, wall time); args may ask it to sleep or fail."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, float]] = []

    async def __call__(self, task: TaskRow) -> dict[str, Any]:
        self.calls.append((task.id, self.clock.wall()))
        await trio.sleep(task.args.get("sleep", 0))
        if task.args.get("raise"):
            raise RuntimeError("the tool broke")
        if "error" in task.args:
            return {"error": task.args["error"], **task.args.get("fields", {})}
        return {"output": task.args.get("say", "done")}

    def times(self, task_id: str) -> list[float]:
        return [t - BASE for tid, t in self.calls if tid == task_id]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HeldStore]:
    async with open_store(tmp_path / DB_FILE) as real:
        yield HeldStore(real)


@pytest.fixture
def clock() -> VirtualClock:
    """The wall clock; a test using it also asks for ``autojump_clock`` (pytest-trio only
    takes a clock from the test's own arguments)."""
    return VirtualClock(BASE)


@asynccontextmanager
async def running(
    store: HeldStore | None, tool: Tool, events: list[dict[str, Any]] | None = None
) -> AsyncIterator[Scheduler]:
    sink = events.append if events is not None else (lambda e: None)
    async with trio.open_nursery() as nursery:
        scheduler: Scheduler = await nursery.start(
            partial(serve_scheduler, store, tool, on_event=sink, clock=tool.clock)  # type: ignore[arg-type]
        )
        yield scheduler
        nursery.cancel_scope.cancel()


async def until(t: float) -> None:
    """Sleep until wall-clock BASE + t (with no jumps: virtual time t)."""
    await trio.sleep_until(t)


def runs(rows: list[RunRow]) -> list[tuple[str, float | None, float | None, int]]:
    """(status, slot, started) relative to BASE, oldest first."""
    rel = lambda v: None if v is None else v - BASE  # noqa: E731
    return [(r.status, rel(r.slot), rel(r.started_at), r.missed) for r in reversed(rows)]


def utc(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()  # type: ignore[misc]


# -- each kind ------------------------------------------------------------------------


async def test_each_kind_runs_exactly_at_its_slots(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    events: list[dict[str, Any]] = []
    with trio.fail_after(LIMIT):
        async with running(store, tool, events) as sched:
            a = await sched.add(timetable=once(BASE + 10), tool="t", args={}, name="a")
            b = await sched.add(timetable=every(60, anchor=BASE + 30), tool="t", args={})
            c = await sched.add(timetable=cron("*/5 * * * *", "UTC"), tool="t", args={})
            assert [t.id for t in sched.tasks()] == [a.id, b.id, c.id]  # by next run
            await until(700)
            assert tool.times(a.id) == [10.0]
            assert tool.times(b.id) == [30.0 + 60 * k for k in range(12)]
            assert tool.times(c.id) == [300.0, 600.0]
            assert runs(await sched.history(a.id)) == [("ok", 10.0, 10.0, 0)]
            done = sched.get("a")
            assert done is not None
            assert done.next_slot is None
            assert done.last_slot == BASE + 10
            assert sched.info()["nextRun"] == BASE + 750
            assert sched.info()["running"] == 0
    first = [e for e in events if e["task"] == a.id]
    assert [e["status"] for e in first] == ["started", "ok"]
    assert first[1]["excerpt"] == "done"
    assert first[0]["slot"] == BASE + 10
    assert first[0]["seq"] == first[1]["seq"]
    assert first[0]["at"] == datetime.fromtimestamp(BASE + 10).astimezone().isoformat(
        "T", "seconds"
    )
    assert {e["type"] for e in events} == {"schedule_run"}


async def test_a_fixed_time_job_runs_once_on_the_fall_back_night(
    store: HeldStore, autojump_clock: trio.testing.MockClock
) -> None:
    start = utc(2026, 10, 31, 12)
    tool = Tool(VirtualClock(start))
    with trio.fail_after(LIMIT):
        async with running(store, tool) as sched:
            task = await sched.add(timetable=cron("30 1 * * *", "America/New_York"), tool="t",
                                   args={})  # fmt: skip
            await trio.sleep(3 * 86400)
    assert [t for _, t in tool.calls] == [
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT; not again at 01:30 EST an hour later
        utc(2026, 11, 2, 6, 30),
        utc(2026, 11, 3, 6, 30),
    ]
    assert task.next_slot == utc(2026, 11, 1, 5, 30)


async def test_a_job_in_the_spring_forward_gap_runs_at_its_end(
    store: HeldStore, autojump_clock: trio.testing.MockClock
) -> None:
    start = utc(2026, 3, 28, 12)
    tool = Tool(VirtualClock(start))
    with trio.fail_after(LIMIT):
        async with running(store, tool) as sched:
            await sched.add(timetable=cron("30 2 * * *", "Europe/Berlin"), tool="t", args={})
            await trio.sleep(2 * 86400)
    assert [t for _, t in tool.calls] == [
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST: 02:30 did not exist that night
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


# -- restarts -------------------------------------------------------------------------


async def test_a_restart_during_a_run_neither_repeats_its_slot_nor_loses_the_next(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    events: list[dict[str, Any]] = []
    with trio.fail_after(LIMIT):
        async with running(store, tool, events) as sched:
            task = await sched.add(timetable=every(60, anchor=BASE + 60), tool="t",
                                   args={"sleep": 30})  # fmt: skip
            await until(70)  # the run of slot 60 is going
            assert sched.info()["running"] == 1
        assert [e["status"] for e in events] == ["started", "interrupted"]
        async with running(store, tool) as sched:
            await until(200)
            history = runs(await sched.history(task.id))
    assert tool.times(task.id) == [60.0, 120.0, 180.0]
    assert history == [
        ("interrupted", 60.0, 60.0, 0), ("ok", 120.0, 120.0, 0), ("running", 180.0, 180.0, 0),
    ]  # fmt: skip


async def test_a_stop_after_a_run_s_row_is_written_ahead_but_before_its_slot(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    with trio.fail_after(LIMIT):
        async with running(store, tool) as sched:
            task = await sched.add(timetable=every(60, anchor=BASE + 60), tool="t", args={})
            await until(60 - WRITE_AHEAD / 2)  # the row of slot 60 is written, the run waits
            assert sched.info()["running"] == 1
            assert tool.calls == []
        async with running(store, tool) as sched:
            await until(121)
            [*_, first] = await sched.history(task.id)
    assert tool.times(task.id) == [120.0]  # slot 60 never ran, and is not run late
    assert (first.status, first.slot, first.excerpt) == (
        "interrupted", BASE + 60, "edge stopped before the run started",
    )  # fmt: skip


async def test_a_run_a_killed_edge_left_running_is_interrupted_not_rerun(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    async with running(store, tool) as sched:
        task = await sched.add(timetable=every(60, anchor=BASE + 60), tool="t", args={})
    # As a killed edge leaves it: slot 60 taken, its row still "running".
    await store.write(
        lambda c: records.begin_run(
            c,
            task.id,
            slot=BASE + 60,
            started_at=BASE + 60,
            next_slot=BASE + 120,
            last_slot=BASE + 60,
        )
    )
    events: list[dict[str, Any]] = []
    with trio.fail_after(LIMIT):
        await until(65)
        async with running(store, tool, events) as sched:
            await until(130)
            history = runs(await sched.history(task.id))
    assert tool.times(task.id) == [120.0]
    assert history == [("interrupted", 60.0, 60.0, 0), ("ok", 120.0, 120.0, 0)]
    assert events[0]["status"] == "interrupted"


# -- clock jumps ----------------------------------------------------------------------


async def test_wall_clock_jumps_forward_and_back(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    with trio.fail_after(LIMIT):
        async with running(store, tool) as sched:
            task = await sched.add(timetable=every(60, anchor=BASE + 60), tool="t", args={})
            await trio.sleep_until(70)
            clock.jump(300)  # wall 370: slots 120..360 came meanwhile
            await trio.sleep_until(80)
            assert tool.times(task.id) == [60.0, 370.0]  # at once, one run of slot 360
            await trio.sleep_until(130)  # wall 430: slot 420 ran
            clock.jump(-200)  # wall 230: more than a period back, the slots from 240 come again
            await trio.sleep_until(139)  # wall 239
            assert tool.times(task.id) == [60.0, 370.0, 420.0]
            await trio.sleep_until(381)  # wall 481
            history = runs(await sched.history(task.id))
            assert sched.jumps == 2
    assert tool.times(task.id) == [60.0, 370.0, 420.0, 240.0, 300.0, 360.0, 420.0, 480.0]
    assert history == [
        ("ok", 60.0, 60.0, 0), ("missed", 300.0, None, 4), ("ok", 360.0, 370.0, 0),
        ("ok", 420.0, 420.0, 0), ("ok", 240.0, 240.0, 0), ("ok", 300.0, 300.0, 0),
        ("ok", 360.0, 360.0, 0), ("ok", 420.0, 420.0, 0), ("ok", 480.0, 480.0, 0),
    ]  # fmt: skip


async def test_a_clock_set_back_a_day_recomputes_the_deadlines(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    with trio.fail_after(LIMIT):
        async with running(store, tool) as sched:
            tick = await sched.add(timetable=every(60, anchor=BASE), tool="t", args={})
            daily = await sched.add(timetable=cron("0 * * * *", "UTC"), tool="t", args={})
            await trio.sleep_until(130)  # wall 130: slots 60 and 120 ran
            clock.jump(-86400)  # the clock was a day ahead
            await trio.sleep_until(130 + 600)
            wall = clock.wall() - BASE
            stored = await store.read(lambda c: records.get_task(c, tick.id))
            hourly = sched.get(daily.id)
    back = [t + 86400 for t in tool.times(tick.id)[2:]]  # virtual times of the runs after
    assert tool.times(tick.id)[:2] == [60.0, 120.0]
    assert back == [t for t in range(180, 130 + 600, 60)]  # one a minute, on its grid
    assert all(t % 60 == 0 for t in tool.times(tick.id))
    assert stored is not None
    assert stored.next_slot == BASE + wall + 60 - (wall % 60)  # persisted
    assert stored.last_slot is not None
    assert stored.last_slot <= BASE + wall
    assert hourly is not None
    assert hourly.next_slot == BASE - 86400 + 3600  # the next hour
    assert tool.times(daily.id) == []


async def test_a_small_step_back_right_after_a_run_runs_nothing_twice(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    with trio.fail_after(LIMIT):
        async with running(store, tool) as sched:
            task = await sched.add(timetable=every(60, anchor=BASE + 60), tool="t", args={})
            await trio.sleep_until(63)  # wall 63: slot 60 ran
            clock.jump(-5)  # wall 58
            await trio.sleep_until(200)  # wall 195
            assert sched.jumps == 1
    assert tool.times(task.id) == [60.0, 120.0, 180.0]


# -- missed runs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "every_s", "grace", "away", "expect_runs", "expect_missed"),
    [
        ("run-once", 600, None, 650, [650.0, 1200.0], []),  # 50 s late, grace 300 s: runs
        ("run-once", 600, None, 1000, [1200.0], [(600.0, 1)]),  # 400 s late: missed
        ("skip", 600, None, 650, [1200.0], [(600.0, 1)]),  # ... and on time again after
        ("run-once", 60, None, 60 * 50 + 10, [3010.0, 3060.0], [(2940.0, 49)]),  # 1 run, 49 missed
        ("run-once", 60, 30, 60 * 50 + 40, [3060.0], [(3000.0, 50)]),  # 40 s > grace 30: none
    ],
)
async def test_slots_missed_while_edge_was_stopped(
    store: HeldStore,
    clock: VirtualClock,
    autojump_clock: trio.testing.MockClock,
    policy: Any,
    every_s: float,
    grace: float | None,
    away: float,
    expect_runs: list[float],
    expect_missed: list[tuple[float, int]],
) -> None:
    tool = Tool(clock)
    async with running(store, tool) as sched:
        task = await sched.add(timetable=every(every_s, anchor=BASE + every_s), tool="t",
                               args={}, missed=policy, grace=grace)  # fmt: skip
    with trio.fail_after(LIMIT):
        await until(away)  # edge is stopped meanwhile
        async with running(store, tool) as sched:
            await until(expect_runs[-1] + 1)
            history = runs(await sched.history(task.id))
    assert tool.times(task.id) == expect_runs
    assert [(s, n) for status, s, _, n in history if status == "missed"] == expect_missed
    assert all(started >= slot for status, slot, started, _ in history if status == "ok")


async def test_a_slot_that_comes_while_the_run_is_going_is_skipped(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    events: list[dict[str, Any]] = []
    with trio.fail_after(LIMIT):
        async with running(store, tool, events) as sched:
            task = await sched.add(timetable=every(10, anchor=BASE + 10), tool="t",
                                   args={"sleep": 25})  # fmt: skip
            await until(41)
            history = runs(await sched.history(task.id))
    assert tool.times(task.id) == [10.0, 40.0]
    assert history == [
        ("ok", 10.0, 10.0, 0), ("skipped", 20.0, None, 1), ("skipped", 30.0, None, 1),
        ("running", 40.0, 40.0, 0),
    ]  # fmt: skip
    assert [e["status"] for e in events] == [
        "started",
        "skipped",
        "skipped",
        "ok",
        "started",
        "interrupted",
    ]


async def test_due_tasks_start_together_and_a_slow_run_delays_no_one(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    with trio.fail_after(LIMIT):
        async with running(store, tool) as sched:
            slow = [
                await sched.add(timetable=once(BASE + 100), tool="t", args={"sleep": 50})
                for _ in range(10)
            ]
            other = await sched.add(timetable=once(BASE + 110), tool="t", args={})
            await until(111)
            assert sched.info()["running"] == 10
    assert [tool.times(t.id) for t in slow] == [[100.0]] * 10
    assert tool.times(other.id) == [110.0]


# -- the history and the idle loop ----------------------------------------------------


async def test_history_is_pruned_to_its_bound(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    with trio.fail_after(LIMIT):
        async with running(store, tool) as sched:
            task = await sched.add(timetable=every(1, anchor=BASE + 1), tool="t", args={})
            await until(records.HISTORY_PER_TASK + 30.5)
            history = await sched.history(task.id, limit=1000)
    assert len(tool.calls) == records.HISTORY_PER_TASK + 30
    assert len(history) == records.HISTORY_PER_TASK
    assert history[0].slot == BASE + records.HISTORY_PER_TASK + 30


async def test_a_thousand_tasks_wake_the_loop_once_per_deadline(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    with trio.fail_after(LIMIT):
        async with running(store, tool) as sched:
            for i in range(1000):
                await sched.add(timetable=every(1000, anchor=BASE + 1000 + i), tool="t", args={})
            settled = sched.wakeups
            assert settled <= 1  # only the first task's add came before the loop's deadline
            await until(999)
            assert sched.wakeups == settled  # idle: no wake-up at all
            await until(1099.5)
            assert sched.wakeups - settled == 100  # one per deadline
            assert len(tool.calls) == 100


# -- the handle's methods -------------------------------------------------------------


async def test_pause_resume_remove_and_run_now(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    events: list[dict[str, Any]] = []
    with trio.fail_after(LIMIT):
        async with running(store, tool, events) as sched:
            task = await sched.add(timetable=every(60, anchor=BASE + 60), tool="t",
                                   args={"say": "hi"}, name="tick")  # fmt: skip
            paused = await sched.pause("tick")
            assert paused.paused
            await until(300)
            assert tool.calls == []
            resumed = await sched.resume(task.id)
            assert resumed.next_slot == BASE + 360  # from now: slots 60..300 not caught up
            await until(361)
            assert tool.times(task.id) == [360.0]
            run = await sched.run_now("tick")
            assert (run.status, run.slot, run.excerpt) == ("ok", None, "hi")
            assert await sched.remove("tick")
            assert not await sched.remove("tick")
            assert sched.tasks() == []
            for method in (sched.pause, sched.resume, sched.run_now, sched.history):
                with pytest.raises(KeyError):
                    await method("tick")
            await until(500)
    assert tool.times(task.id) == [360.0, 361.0]
    assert await store.read(lambda c: records.history(c, task.id)) == []


@pytest.mark.parametrize(
    ("policy", "resume_at", "expect_runs", "expect_missed"),
    [
        ("run-once", 200, [200.0], []),  # 100 s late, within the hour of grace: runs
        ("run-once", 100 + 3700, [], [(100.0, 1)]),  # beyond it: missed
        ("skip", 200, [], [(100.0, 1)]),
    ],
)
async def test_a_once_task_resumed_after_its_time_runs_or_is_missed(
    store: HeldStore,
    clock: VirtualClock,
    autojump_clock: trio.testing.MockClock,
    policy: Any,
    resume_at: float,
    expect_runs: list[float],
    expect_missed: list[tuple[float, int]],
) -> None:
    tool = Tool(clock)
    with trio.fail_after(LIMIT):
        async with running(store, tool) as sched:
            task = await sched.add(timetable=once(BASE + 100), tool="t", args={}, missed=policy)
            await sched.pause(task.id)
            await until(resume_at)
            resumed = await sched.resume(task.id)
            await until(resume_at + 10)
            history = runs(await sched.history(task.id))
            after = sched.get(task.id)
    assert resumed.next_slot == BASE + 100
    assert tool.times(task.id) == expect_runs
    assert [(s, n) for status, s, _, n in history if status == "missed"] == expect_missed
    assert len(history) == 1
    assert after is not None
    assert after.next_slot is None


async def test_the_last_runs_of_every_task_in_one_read(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    reads = 0
    read = store.read

    async def counted(fn: Callable[[sqlite3.Connection], T]) -> T:
        nonlocal reads
        reads += 1
        return await read(fn)

    with trio.fail_after(LIMIT):
        async with running(store, tool) as sched:
            tasks = [
                await sched.add(timetable=every(60 + i, anchor=BASE + 10 + i), tool="t", args={})
                for i in range(5)
            ]
            idle = await sched.add(timetable=once(BASE + 5000), tool="t", args={})
            await until(80)
            store.read = counted  # type: ignore[method-assign]
            last = await sched.last_runs()
            assert reads == 1
    assert set(last) == {t.id for t in tasks}
    assert idle.id not in last
    assert [last[t.id].slot for t in tasks] == [BASE + 10 + i + 60 + i for i in range(5)]


async def test_bad_tasks_are_refused_with_a_message(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    async with running(store, tool) as sched:
        await until(100)
        with pytest.raises(ValueError, match="in the past"):
            await sched.add(timetable=once(BASE + 50), tool="t", args={})
        with pytest.raises(ValueError, match="name of a tool"):
            await sched.add(timetable=once(BASE + 500), tool="", args={})
        with pytest.raises(ValueError, match="JSON"):
            await sched.add(timetable=once(BASE + 500), tool="t", args={"x": object()})
        with pytest.raises(ValueError, match="run-once or skip"):
            await sched.add(timetable=once(BASE + 500), tool="t", args={}, missed="never")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="positive"):
            await sched.add(timetable=once(BASE + 500), tool="t", args={}, grace=0)
        await sched.add(timetable=once(BASE + 500), tool="t", args={}, name="x")
        with pytest.raises(ValueError, match="exists already"):
            await sched.add(timetable=once(BASE + 600), tool="t", args={}, name="x")
        assert len(sched.tasks()) == 1


async def test_run_outcomes(
    store: HeldStore, clock: VirtualClock, autojump_clock: trio.testing.MockClock
) -> None:
    tool = Tool(clock)
    events: list[dict[str, Any]] = []
    cases = {
        "raises": ({"raise": True}, "error", "RuntimeError: the tool broke"),
        "error": ({"error": "no such file"}, "error", "no such file"),
        "timeout": ({"error": "slow", "fields": {"timed_out": True}}, "timeout", "slow"),
        "refused": ({"error": "busy", "fields": {"busy": True}}, "refused", "busy"),
        "long": ({"say": "y" * 5000}, "ok", "y" * (records.EXCERPT_CHARS - 1) + "…"),
    }
    with trio.fail_after(LIMIT):
        async with running(store, tool, events) as sched:
            for name, (args, _, _) in cases.items():
                await sched.add(timetable=once(BASE + 10), tool="t", args=args, name=name)
            await until(11)
            for name, (_, status, text) in cases.items():
                [row] = await sched.history(name)
                assert (name, row.status, row.excerpt) == (name, status, text)
    ends = {e["name"]: e for e in events if e["status"] != "started"}
    assert ends["raises"]["excerpt"] == "RuntimeError: the tool broke"


async def test_without_a_store_tasks_live_in_memory(
    clock: VirtualClock, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    tool = Tool(clock)
    with trio.fail_after(LIMIT):
        async with running(None, tool) as sched:
            task = await sched.add(timetable=every(60, anchor=BASE + 60), tool="t", args={})
            await until(130)
            assert [r.status for r in await sched.history()] == ["ok", "ok"]
            assert sched.info()["persistent"] is False
        async with running(None, tool) as sched:
            assert sched.tasks() == []
    assert tool.times(task.id) == [60.0, 120.0]
    assert caplog.text.count("kept in memory") == 2  # once per start


# -- the real clock -------------------------------------------------------------------


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
async def test_on_the_real_clock_a_run_starts_on_time_and_the_timerfd_is_closed(
    tmp_path: Path,
) -> None:
    starts: list[float] = []
    started = trio.Event()

    async def run_tool(task: TaskRow) -> dict[str, Any]:
        starts.append(time.time())
        started.set()
        return {"output": "ok"}

    async with open_store(tmp_path / DB_FILE) as real:
        before = open_fds()
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                sched: Scheduler = await nursery.start(serve_scheduler, real, run_tool)
                assert sched.info()["clock"] == "timerfd"
                assert len(open_fds() - before) == 1  # the timerfd
                due = time.time() + 0.5
                await sched.add(timetable=once(due), tool="t", args={})
                await started.wait()
                nursery.cancel_scope.cancel()
        assert open_fds() == before
    assert due <= starts[0] < due + 1.0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
async def test_the_timerfd_fires_at_the_wall_deadline() -> None:
    timerfd = _Timerfd()
    try:
        assert timerfd.fd is not None
        deadline = time.time() + 0.2
        timerfd.arm(deadline)
        with trio.fail_after(30):
            await trio.lowlevel.wait_readable(timerfd.fd)  # no trio sleep: the fd alone
        assert time.time() >= deadline
        assert timerfd.drain()
        assert not timerfd.drain()
    finally:
        timerfd.close()
    for clock, name in ((SystemClock(), "timerfd"), (SystemClock(timerfd=False), "monotonic")):
        try:
            assert clock.name == name
            deadline = time.time() + 0.2
            with trio.fail_after(30):
                await clock.wait(deadline)
            assert time.time() >= deadline
        finally:
            clock.close()
            clock.close()  # idempotent
