"""Scheduler benchmark: how late runs start on the real clock, and what idling costs.

Jitter: N once tasks due 20 ms apart (their slots staggered, a few hundred
deadlines in a few seconds), on the real clock (``SystemClock``: a timerfd and
trio's clock) with a real store; each run's lateness is its ``run_tool`` call's
``time.time()`` minus its slot. Target: p99 under 5 ms.

Idle: 1,000 interval tasks none of which is due for an hour; the process's CPU
time (``time.process_time()``) and the loop's wake-ups over a few seconds,
against a 1 s polling loop over the same tasks in the same process.

    python bench/bench_scheduler.py [--runs 300] [--gap 0.02] [--idle 5] [--no-store]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from edge.scheduler import Scheduler, SystemClock, TaskRow, every, once, serve_scheduler
from edge.store import DB_FILE, Store, open_store


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def jitter(store: Store | None, runs: int, gap: float) -> None:
    late: list[float] = []
    done = trio.Event()

    async def run_tool(task: TaskRow) -> dict[str, Any]:
        assert task.timetable.at is not None
        late.append(time.time() - task.timetable.at)
        if len(late) == runs:
            done.set()
        return {"output": "ok"}

    async with trio.open_nursery() as nursery:
        sched: Scheduler = await nursery.start(serve_scheduler, store, run_tool)
        t0 = time.perf_counter()
        first = time.time() + 2.0 + runs * 0.004  # adding them takes a moment
        for i in range(runs):
            await sched.add(timetable=once(first + i * gap), tool="noop", args={})
        added = time.perf_counter() - t0
        with trio.fail_after(first - time.time() + runs * gap + 30):
            await done.wait()
        info = sched.info()
        nursery.cancel_scope.cancel()
    ms = [x * 1000 for x in late]
    print(
        f"jitter: {runs} runs due {gap * 1000:.0f} ms apart (clock: {info['clock']}, "
        f"store: {'yes' if store is not None else 'no'}; added in {added:.2f} s)"
    )
    print(
        f"  start - due: p50 {percentile(ms, 0.5):.2f} ms, p99 {percentile(ms, 0.99):.2f} ms, "
        f"max {max(ms):.2f} ms, min {min(ms):.2f} ms, mean {statistics.fmean(ms):.2f} ms"
    )
    print(f"  early (before due): {sum(1 for x in late if x < 0)}")
    await alarm_alone(runs, gap)


async def alarm_alone(runs: int, gap: float) -> None:
    """The floor: the same waits on the clock alone, no scheduler (what the machine gives)."""
    clock = SystemClock()
    late: list[float] = []
    try:
        for _ in range(runs):
            deadline = time.time() + gap
            await clock.wait(deadline)
            late.append((time.time() - deadline) * 1000)
    finally:
        clock.close()
    print(
        f"  the clock alone ({runs} waits of {gap * 1000:.0f} ms): p50 "
        f"{percentile(late, 0.5):.2f} ms, p99 {percentile(late, 0.99):.2f} ms, "
        f"max {max(late):.2f} ms"
    )


async def idle(store: Store | None, seconds: float) -> None:
    async def run_tool(task: TaskRow) -> dict[str, Any]:
        return {"output": "ok"}

    async with trio.open_nursery() as nursery:
        sched: Scheduler = await nursery.start(serve_scheduler, store, run_tool)
        anchor = time.time() + 3600
        for i in range(1000):
            await sched.add(timetable=every(3600, anchor=anchor + i), tool="noop", args={})
        await trio.sleep(0.5)  # settle
        wakeups, cpu = sched.wakeups, time.process_time()
        await trio.sleep(seconds)
        cpu = time.process_time() - cpu
        wakeups = sched.wakeups - wakeups
        tasks = sched.tasks()
        nursery.cancel_scope.cancel()
    print(f"idle: 1000 tasks, none due, {seconds:g} s")
    print(f"  scheduler: {cpu * 1000:.2f} ms CPU, {wakeups} wake-ups")

    # The baseline: a loop that wakes every second and looks at every task.
    polls, due = 0, 0
    cpu = time.process_time()
    end = trio.current_time() + seconds
    while trio.current_time() < end:
        await trio.sleep(1.0)
        polls += 1
        now = time.time()
        due += sum(1 for t in tasks if t.next_slot is not None and t.next_slot <= now)
    cpu = time.process_time() - cpu
    print(f"  1 s polling loop: {cpu * 1000:.2f} ms CPU, {polls} wake-ups ({due} due)")


async def bench(runs: int, gap: float, idle_s: float, use_store: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="edge-bench-scheduler-") as tmp:
        if use_store:
            async with open_store(Path(tmp) / "jitter" / DB_FILE) as store:
                await jitter(store, runs, gap)
            async with open_store(Path(tmp) / "idle" / DB_FILE) as store:
                await idle(store, idle_s)
        else:
            await jitter(None, runs, gap)
            await idle(None, idle_s)


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between slots")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idling measured")
    parser.add_argument("--no-store", action="store_true", help="keep the tasks in memory")
    args = parser.parse_args()
    print(f"load average before: {load()} ({os.cpu_count()} CPUs)")
    trio.run(bench, args.runs, args.gap, args.idle, not args.no_store)


if __name__ == "__main__":
    main()
