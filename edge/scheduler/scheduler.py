"""The scheduler handle: one task that sleeps until the next deadline, and the runs.

``serve_scheduler`` owns a nursery: the loop, and one task per run. The loop
keeps the tasks' next slots in a heap and waits (``WallClock.wait``) for the
earliest only; adding a task wakes it only if the new slot comes first. On each
wake it compares the wall clock's progress with the monotonic clock's (a jump:
logged; after a step back of a period or more, each repeating task's slots are
recomputed from now: see ``_rewound``), then takes
every task due by now (``catch_up``: at most one run per task, the rest
recorded as missed), writes all of their rows and slots in one transaction, and
only then starts the runs, all at that instant, each in its own task. The loop
wakes ``WRITE_AHEAD`` (50 ms) before a deadline, so that this write is done
when the deadline comes: a run waits for its slot's instant, and nothing but
the wake itself stands between the two. (A run whose row was written but whose
instant had not come when edge stopped is ``interrupted`` too.) A run is
a call of ``run_tool(task)`` (the daemon's: its workers run the tool); a run
that raises ends as ``error`` with the text.

No overlap: a task whose run is still going when its next slot comes gets a
``skipped`` row for that slot ("still running"). A run cut short by the
handle stopping ends ``interrupted`` (so does one an edge that was killed left
``running``, at the next start); neither is run again, and the next slot runs.

Without a store the same tables live in an in-memory SQLite database (said
once in the log), which a restart loses.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, final

import trio

from . import records
from .alarm import SystemClock, WallClock
from .records import Origin, RunRow, TaskRow
from .timetable import (
    MISSED_POLICIES,
    ON_TIME,
    MissedPolicy,
    Timetable,
    catch_up,
    default_grace,
    every,
    local_iso,
)

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

RunTool = Callable[[TaskRow], Awaitable[dict[str, Any]]]
EventSink = Callable[[dict[str, Any]], None]

#: A wake whose wall and monotonic progress differ by more than this means the wall
#: clock jumped (seconds).
JUMP_THRESHOLD: Final = 1.0
#: The loop wakes this long before a deadline to write the due runs' rows, so that no
#: disk write stands between the deadline and the runs' start (seconds).
WRITE_AHEAD: Final = 0.05
#: How long the handle, stopping, may take to record a run it cut short (seconds).
STOP_WRITE_TIMEOUT: Final = 5.0
#: The longest tool name.
MAX_TOOL_CHARS: Final = 200


class _Db(Protocol):
    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


class _MemoryDb:
    """The scheduler's tables in an in-memory SQLite database (edge without a store)."""

    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:", isolation_level=None)
        for statement in records.MIGRATION.statements:
            self._conn.execute(statement)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run("BEGIN", fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run("BEGIN IMMEDIATE", fn)

    async def _run(self, begin: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        await trio.lowlevel.checkpoint()
        self._conn.execute(begin)
        try:
            result = fn(self._conn)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return result

    def close(self) -> None:
        self._conn.close()


@dataclass
class _Run:
    """A run in flight."""

    row: RunRow
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    final: RunRow | None = None


@dataclass(frozen=True)
class _Plan:
    """What one wake does about one due task."""

    task: TaskRow
    start: float  # when the run starts: its slot, or now if that has passed
    run_slot: float | None  # None: nothing to run
    missed: int
    more: bool  # more than ``missed`` were missed
    missed_slot: float | None
    skipped: bool  # the run_slot came while a run was going
    next_slot: float | None
    last_slot: float | None


def _outcome(result: Any) -> tuple[str, str | None]:
    """A run's status and text from the tool's result dict."""
    if not isinstance(result, dict):
        return "error", f"the tool gave {type(result).__name__}, not a result"
    if "error" in result:
        text = result["error"] if isinstance(result["error"], str) else json.dumps(result["error"])
        if result.get("timed_out"):
            return "timeout", text
        if result.get("cancelled"):
            return "cancelled", text
        if result.get("busy") or result.get("refused"):
            return "refused", text
        return "error", text
    output = result.get("output")
    if output is None or isinstance(output, str):
        return "ok", output
    try:
        return "ok", json.dumps(output)
    except (TypeError, ValueError):
        return "ok", str(output)


@final
class Scheduler:
    """Handle on the scheduler; made by ``serve_scheduler``.

    Methods taking a ``task_id`` also take a task's name.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        db: _Db,
        run_tool: RunTool,
        on_event: EventSink,
        clock: WallClock,
        *,
        persistent: bool,
    ) -> None:
        self._nursery = nursery
        self._db = db
        self._run_tool = run_tool
        self._on_event = on_event
        self._clock = clock
        self.persistent = persistent
        self._tasks: dict[str, TaskRow] = {}
        self._heap: list[tuple[float, str]] = []
        self._running: dict[str, _Run] = {}
        self._lock = trio.Lock()
        self._wake: trio.CancelScope | None = None
        self._waiting_for: float | None = None
        #: The loop's wakes (deadlines reached, clock sets, earlier tasks added).
        self.wakeups = 0
        #: Wall-clock jumps noticed.
        self.jumps = 0

    # -- the view ---------------------------------------------------------------------

    def tasks(self) -> list[TaskRow]:
        """Every task, the next to run first (those with no next run last)."""
        return sorted(
            self._tasks.values(),
            key=lambda t: (t.next_slot is None, t.next_slot or 0.0, t.created_at, t.id),
        )

    def get(self, task_id: str) -> TaskRow | None:
        """The task with this id (or name), or ``None``."""
        task = self._tasks.get(task_id)
        if task is None:
            task = next((t for t in self._tasks.values() if t.name == task_id), None)
        return task

    def info(self) -> dict[str, Any]:
        """Counts for ``edge status``: tasks, runs going, the next run, the clock used."""
        upcoming = [
            t.next_slot for t in self._tasks.values() if not t.paused and t.next_slot is not None
        ]
        return {
            "tasks": len(self._tasks),
            "running": len(self._running),
            "nextRun": min(upcoming) if upcoming else None,
            "clock": self._clock.name,
            "persistent": self.persistent,
            "wakeups": self.wakeups,
        }

    def _known(self, task_id: str) -> TaskRow:
        task = self.get(task_id)
        if task is None:
            raise KeyError(task_id)
        return task

    # -- changes ----------------------------------------------------------------------

    async def add(
        self,
        *,
        timetable: Timetable,
        tool: str,
        args: dict[str, Any],
        name: str | None = None,
        missed: MissedPolicy = "run-once",
        grace: float | None = None,
        origin: Origin = "local",
    ) -> TaskRow:
        """Schedule ``tool`` with ``args``; its first slot is the first after now.

        Raises:
            ValueError: a bad timetable (a once time in the past), tool, args,
                name (taken, or like an id), policy, grace or origin.
        """
        if not isinstance(timetable, Timetable):
            raise ValueError("not a timetable")
        if not isinstance(tool, str) or not tool or len(tool) > MAX_TOOL_CHARS:
            raise ValueError("a scheduled task needs the name of a tool")
        if not isinstance(args, dict):
            raise ValueError("a tool's args are a JSON object")
        try:
            json.dumps(args)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a tool's args must be JSON: {exc}") from None
        if missed not in MISSED_POLICIES:
            raise ValueError(f"missed runs are run-once or skip, not {missed!r}")
        if grace is not None and (isinstance(grace, bool) or not grace > 0):
            raise ValueError("a grace period is a positive number of seconds")
        if origin not in records.ORIGINS:
            raise ValueError(f"origin is local or cloud, not {origin!r}")
        records.check_name(name)
        now = self._clock.wall()
        next_slot = timetable.next_slot(now)
        when = timetable.describe()
        if next_slot is None:
            raise ValueError(f"{when}: that is in the past" if timetable.kind == "once" else
                             f"{when}: no time to run in the next 50 years")  # fmt: skip
        async with self._lock:
            if name is not None and self.get(name) is not None:
                raise ValueError(f"a scheduled task named {name!r} exists already")
            task_id = records.new_task_id()
            while task_id in self._tasks:
                task_id = records.new_task_id()
            task = TaskRow(
                id=task_id, name=name, timetable=timetable, tool=tool, args=dict(args),
                missed=missed, grace=None if grace is None else float(grace), origin=origin,
                paused=False, created_at=now, next_slot=next_slot, last_slot=None,
            )  # fmt: skip
            await self._db.write(lambda conn: records.insert_task(conn, task))
            self._tasks[task.id] = task
            self._schedule(task)
        log.info("scheduler: added %s (%s: %s)", task.id, when, tool)
        return task

    async def remove(self, task_id: str) -> bool:
        """Remove a task and its history (a run going is cancelled); ``False`` if unknown."""
        async with self._lock:
            task = self.get(task_id)
            if task is None:
                return False
            await self._db.write(lambda conn: records.delete_task(conn, task.id))
            del self._tasks[task.id]
            running = self._running.get(task.id)
            if running is not None:
                running.scope.cancel()
        log.info("scheduler: removed %s", task.id)
        return True

    async def pause(self, task_id: str) -> TaskRow:
        """Stop running a task's slots (a run going goes on).

        Raises:
            KeyError: no such task.
        """
        async with self._lock:
            task = self._known(task_id)
            if task.paused:
                return task
            await self._db.write(lambda conn: records.set_paused(conn, task.id, True))
            task = self._tasks[task.id] = dataclasses.replace(task, paused=True)
        return task

    async def resume(self, task_id: str) -> TaskRow:
        """Run a paused task's slots again, from the first after now (none caught up).

        A once task whose time came while it was paused is due at once: it runs if
        its grace allows (and its policy is ``run-once``), else it is recorded missed.

        Raises:
            KeyError: no such task.
        """
        async with self._lock:
            task = self._known(task_id)
            if not task.paused:
                return task
            now = self._clock.wall()
            after = now if task.last_slot is None else max(now, task.last_slot)
            next_slot = task.timetable.next_slot(after)
            if next_slot is None and task.timetable.kind == "once" and task.last_slot is None:
                next_slot = task.timetable.at

            def write(conn: sqlite3.Connection) -> None:
                records.set_paused(conn, task.id, False)
                records.set_slots(conn, task.id, next_slot=next_slot, last_slot=task.last_slot)

            await self._db.write(write)
            task = self._tasks[task.id] = dataclasses.replace(
                task, paused=False, next_slot=next_slot
            )
            self._schedule(task)
        return task

    async def run_now(self, task_id: str) -> RunRow:
        """Run a task now (not one of its slots, which stay as they are); the finished run.

        Raises:
            KeyError: no such task.
            ValueError: the task has a run going.
        """
        async with self._lock:
            task = self._known(task_id)
            if task.id in self._running:
                raise ValueError(f"{task.id} is running already")
            now = self._clock.wall()
            row = await self._db.write(
                lambda conn: records.record(
                    conn, task.id, status="running", slot=None, started_at=now
                )
            )
            run = self._start(task, row)
        await run.done.wait()
        assert run.final is not None
        return run.final

    async def history(self, task_id: str | None = None, limit: int = 50) -> list[RunRow]:
        """History rows, newest first, of one task or of all.

        Raises:
            KeyError: no such task.
        """
        key = None if task_id is None else self._known(task_id).id
        return await self._db.read(lambda conn: records.history(conn, key, limit))

    async def last_runs(self) -> dict[str, RunRow]:
        """The newest history row of each task that has one, by task id (one read)."""
        return await self._db.read(records.last_runs)

    async def unreported(self) -> list[RunRow]:
        """Finished rows not yet told to the cloud, oldest first."""
        return await self._db.read(records.unreported)

    async def mark_reported(self, seqs: list[int]) -> None:
        """Note rows told to the cloud."""
        await self._db.write(lambda conn: records.mark_reported(conn, list(seqs)))

    # -- the loop ---------------------------------------------------------------------

    def _schedule(self, task: TaskRow) -> None:
        """Put the task's next slot in the heap, waking the loop if it comes first."""
        if task.paused or task.next_slot is None:
            return
        heappush(self._heap, (task.next_slot, task.id))
        if len(self._heap) > 2 * len(self._tasks) + 64:
            self._heap = [
                (t.next_slot, t.id)
                for t in self._tasks.values()
                if not t.paused and t.next_slot is not None
            ]
            self._heap.sort()
        if self._wake is not None and (
            self._waiting_for is None or task.next_slot < self._waiting_for
        ):
            self._wake.cancel()

    def _valid(self, slot: float, task_id: str) -> TaskRow | None:
        task = self._tasks.get(task_id)
        if task is None or task.paused or task.next_slot != slot:
            return None
        return task

    def _earliest(self) -> float | None:
        while self._heap:
            slot, task_id = self._heap[0]
            if self._valid(slot, task_id) is not None:
                return slot
            heappop(self._heap)
        return None

    async def _loop(self) -> None:
        while True:
            deadline = self._earliest()
            wall, mono = self._clock.wall(), trio.current_time()
            self._waiting_for = deadline
            with trio.CancelScope() as self._wake:
                if deadline is None:
                    await trio.sleep_forever()
                else:
                    await self._clock.wait(deadline - WRITE_AHEAD)
            self._wake = None
            self.wakeups += 1
            now = self._clock.wall()
            drift = (now - wall) - (trio.current_time() - mono)
            if abs(drift) > JUMP_THRESHOLD:
                self.jumps += 1
                log.warning("scheduler: the wall clock jumped by %+.1f s", drift)
                if drift < 0:
                    await self._rewind(now, -drift)
            await self._due(now)

    async def _rewind(self, now: float, back: float) -> None:
        """After the wall clock was set back by ``back`` seconds: recompute the slots of
        the tasks ``_rewound`` says, persist them, and rebuild the heap."""
        async with self._lock:
            changed = [t for task in self._tasks.values() if (t := _rewound(task, now, back))]
            if not changed:
                return

            def write(conn: sqlite3.Connection) -> None:
                for task in changed:
                    records.set_timetable(conn, task.id, task.timetable)
                    records.set_slots(
                        conn, task.id, next_slot=task.next_slot, last_slot=task.last_slot
                    )

            try:
                await self._db.write(write)
            except sqlite3.Error as exc:
                log.error("scheduler: cannot record the slots recomputed (%s)", exc)
            for task in changed:
                self._tasks[task.id] = task
            self._heap = [
                (t.next_slot, t.id)
                for t in self._tasks.values()
                if not t.paused and t.next_slot is not None
            ]
            heapify(self._heap)
            log.info("scheduler: slots recomputed from now for %d task(s)", len(changed))

    async def _due(self, now: float) -> None:
        """Take care of every task due by ``now + WRITE_AHEAD``: one transaction, then the
        runs, each of which waits for its instant (a slot not yet come: its own)."""
        async with self._lock:
            plans: list[_Plan] = []
            seen: set[str] = set()
            while self._heap and self._heap[0][0] <= now + WRITE_AHEAD:
                slot, task_id = heappop(self._heap)
                task = self._valid(slot, task_id)
                if task is None or task_id in seen:
                    continue
                seen.add(task_id)
                plans.append(self._plan(task, now))
                if slot < now - ON_TIME:
                    # Catching up (a cron task's slots are walked): let others run between.
                    await trio.lowlevel.checkpoint()
            if not plans:
                return
            try:
                written = await self._db.write(lambda conn: self._record(conn, plans, now))
            except sqlite3.Error as exc:
                log.error("scheduler: cannot record due runs (%s): not run", exc)
                written = None
            for plan in plans:
                task = self._tasks[plan.task.id] = dataclasses.replace(
                    plan.task, next_slot=plan.next_slot, last_slot=plan.last_slot
                )
                self._schedule(task)
            if written is None:
                return
            for plan, (notes, run_row) in zip(plans, written, strict=True):
                task = self._tasks[plan.task.id]
                for note in notes:
                    self._emit(task, note, at=now)
                if run_row is not None:
                    self._start(task, run_row)

    def _plan(self, task: TaskRow, now: float) -> _Plan:
        tt = task.timetable
        assert task.next_slot is not None
        # A slot a moment ahead (within WRITE_AHEAD) is decided as of its own instant.
        at = max(now, task.next_slot)
        grace = task.grace if task.grace is not None else default_grace(tt, task.next_slot)
        decision = catch_up(
            tt, last_slot=task.last_slot, next_slot=task.next_slot, now=at,
            policy=task.missed, grace=grace,
        )  # fmt: skip
        return _Plan(
            task=task,
            start=at,
            run_slot=decision.run_slot,
            missed=decision.missed,
            more=decision.more,
            missed_slot=decision.missed_slot,
            skipped=decision.run_slot is not None and task.id in self._running,
            next_slot=decision.next_slot,
            last_slot=decision.latest if decision.latest is not None else task.last_slot,
        )

    @staticmethod
    def _record(
        conn: sqlite3.Connection, plans: list[_Plan], now: float
    ) -> list[tuple[list[RunRow], RunRow | None]]:
        out: list[tuple[list[RunRow], RunRow | None]] = []
        for plan in plans:
            tid = plan.task.id
            notes: list[RunRow] = []
            run_row = None
            if plan.missed:
                what = "slot" if plan.missed == 1 and not plan.more else "slots"
                many = f"more than {plan.missed}" if plan.more else str(plan.missed)
                notes.append(records.record(
                    conn, tid, status="missed", slot=plan.missed_slot, started_at=None,
                    ended_at=now, missed=plan.missed,
                    text=f"{many} {what} missed (edge was stopped, asleep, or the "
                    "clock jumped)",
                ))  # fmt: skip
            if plan.skipped:
                notes.append(records.record(
                    conn, tid, status="skipped", slot=plan.run_slot, started_at=None,
                    ended_at=now, missed=1, text="skipped: still running",
                ))  # fmt: skip
            if plan.run_slot is not None and not plan.skipped:
                run_row = records.begin_run(
                    conn, tid, slot=plan.run_slot, started_at=plan.start,
                    next_slot=plan.next_slot, last_slot=plan.last_slot,
                )  # fmt: skip
            else:
                records.set_slots(conn, tid, next_slot=plan.next_slot, last_slot=plan.last_slot)
            if notes:
                records.prune(conn, now=now, task_id=tid)
            out.append((notes, run_row))
        return out

    # -- runs -------------------------------------------------------------------------

    def _start(self, task: TaskRow, row: RunRow) -> _Run:
        run = self._running[task.id] = _Run(row)
        self._nursery.start_soon(self._body, task, run)
        return run

    async def _body(self, task: TaskRow, run: _Run) -> None:
        row = run.row
        assert row.started_at is not None
        started: float | None = None
        status: str = "interrupted"
        text: str | None = "edge stopped before the run started"
        try:
            with run.scope:
                # Written ahead: wait for the instant itself (at most WRITE_AHEAD;
                # the wall clock read again after, so never before it).
                while row.started_at > self._clock.wall():
                    await self._clock.wait(row.started_at)
                started = self._clock.wall()
                text = "edge stopped during the run"
                self._emit(task, row, at=started, status="started")
                try:
                    status, text = _outcome(await self._run_tool(task))
                except Exception as exc:
                    status, text = "error", f"{type(exc).__name__}: {exc}"
            if run.scope.cancelled_caught:
                status, text = "cancelled", "cancelled: the task was removed"
        finally:
            ended = self._clock.wall()
            final = dataclasses.replace(row, status=status, ended_at=ended,
                                        started_at=started or row.started_at,
                                        excerpt=records.excerpt(text))  # fmt: skip
            with trio.CancelScope(shield=True, deadline=trio.current_time() + STOP_WRITE_TIMEOUT):
                try:
                    written = await self._db.write(
                        lambda conn: records.end_run(
                            conn,
                            row.seq,
                            status=status,
                            ended_at=ended,
                            text=text,
                            started_at=started,
                        )
                    )
                    final = written or final
                except sqlite3.Error as exc:
                    log.error("scheduler: cannot record the end of run %d (%s)", row.seq, exc)
            if self._running.get(task.id) is run:
                del self._running[task.id]
            run.final = final
            run.done.set()
            self._emit(task, final, at=ended)

    def _emit(self, task: TaskRow, row: RunRow, *, at: float, status: str | None = None) -> None:
        event: dict[str, Any] = {
            "type": "schedule_run",
            "task": task.id,
            "name": task.name,
            "tool": task.tool,
            "status": status or row.status,
            "slot": row.slot,
            "at": local_iso(at),
            "seq": row.seq,
            "origin": task.origin,
        }
        if status is None and row.excerpt is not None:
            event["excerpt"] = row.excerpt
        if row.missed:
            event["missed"] = row.missed
        try:
            self._on_event(event)
        except Exception:
            log.exception("scheduler: the event callback failed")


def _rewound(task: TaskRow, now: float, back: float) -> TaskRow | None:
    """A repeating task's slots after the wall clock was set back ``back`` seconds to
    ``now``, or ``None`` to leave them be.

    A step back of less than the task's period is left be: its next slot comes at
    most two periods on, and no slot it took care of comes again. After a longer
    one (a clock that was a day ahead), a next slot more than a period from now is
    recomputed from now (an interval's grid moved back to come before now), and the
    slots from now on count as not taken care of, so they run as they come. A once
    task keeps its time.
    """
    tt = task.timetable
    if tt.kind == "once":
        return None
    if tt.kind == "interval":
        assert tt.every is not None
        assert tt.anchor is not None
        period = tt.every
    else:
        ref = task.next_slot if task.next_slot is not None else tt.next_slot(now)
        following = None if ref is None else tt.next_slot(ref)
        period = math.inf if ref is None or following is None else following - ref
    if back < period:
        return None
    if task.next_slot is not None and task.next_slot - now <= period:
        return None
    if tt.kind == "interval" and tt.anchor is not None and tt.every is not None and tt.anchor > now:
        tt = every(tt.every, anchor=tt.anchor - math.ceil((tt.anchor - now) / tt.every) * tt.every)
    last = None if task.last_slot is None else min(task.last_slot, now)
    return dataclasses.replace(task, timetable=tt, next_slot=tt.next_slot(now), last_slot=last)


async def serve_scheduler(
    store: Store | None,
    run_tool: RunTool,
    *,
    on_event: EventSink = lambda e: None,
    clock: WallClock | None = None,
    task_status: trio.TaskStatus[Scheduler] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the scheduler until cancelled; ``nursery.start`` gives the handle.

    Args:
        store: the store its tables are in, or ``None`` to keep them in memory.
        run_tool: runs a task's tool (the daemon's workers), giving the result dict.
        on_event: told each run's start and end, and each missed or skipped slot.
        clock: the wall clock and its alarm (tests); by default the system's,
            closed when the scheduler stops.

    Raises:
        sqlite3.Error: the store failed while starting.
    """
    own_clock = clock is None
    wall_clock: WallClock = SystemClock() if clock is None else clock
    memory: _MemoryDb | None = None
    db: _Db
    if store is None:
        log.warning("scheduler: no store: scheduled tasks are kept in memory, lost when edge stops")
        db = memory = _MemoryDb()
    else:
        db = store
    try:
        now = wall_clock.wall()

        def start(conn: sqlite3.Connection) -> tuple[list[RunRow], list[TaskRow]]:
            interrupted = records.interrupt_running(conn, now=now)
            records.prune(conn, now=now)
            return interrupted, records.list_tasks(conn)

        interrupted, tasks = await db.write(start)
        async with trio.open_nursery() as nursery:
            scheduler = Scheduler(
                nursery, db, run_tool, on_event, wall_clock, persistent=store is not None
            )
            for task in tasks:
                scheduler._tasks[task.id] = task
            for task in tasks:
                scheduler._schedule(task)
            for row in interrupted:
                owner = scheduler._tasks.get(row.task_id)
                if owner is not None:
                    scheduler._emit(owner, row, at=now)
            if interrupted:
                log.warning("scheduler: %d run(s) cut short when edge stopped", len(interrupted))
            nursery.start_soon(scheduler._loop)
            task_status.started(scheduler)
    finally:
        if own_clock:
            wall_clock.close()
        if memory is not None:
            memory.close()
