"""The agents' tasks: work this edge runs for another agent, or hands to one.

``AgentTasks`` is the handle (``serve_tasks`` starts it): it records each task
(``edge.protocol.a2a``'s state machine), runs it in its own cancel scope in the
handle's nursery, and tells every change as a numbered ``TaskEvent`` to its
owner (``on_event``), to subscribers, and to the store. What a task does is its
owner's: ``Runners.local`` runs a skill on this edge (the daemon's tool-call
path: workers, policy, approval), ``Runners.remote`` hands it to another agent
(``edge.agents.relay``, through the cloud).

A task's deadline (epoch seconds) is its cancel scope's deadline: past it the
work is cancelled and the task fails, saying so. ``cancel`` ends a task at once
(``canceled``) and cancels its scope, which stops the tool call, its processes
and, through the tool, any task it handed on (``agent_ask`` cancels its own task
when cancelled). Every task and event is written to the store in order (one
writer task, a batch per transaction); on start, tasks a killed edge left
unfinished fail with ``STOPPED``, and that final event reaches ``on_event`` like
any other, so whoever asked hears of it.
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import trio

from ..protocol import error_result
from ..protocol.a2a import TERMINAL, TaskEvent, TaskState, next_event
from ..protocol.strict import json_problem

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)

#: Tasks kept in memory (the newest; the store keeps more).
MAX_TASKS: Final = 1000
#: Events kept in memory per task (the latest; the store keeps them all).
MAX_EVENTS: Final = 200
#: Tasks the store keeps; older finished ones are removed on start.
KEEP_STORED: Final = 5000
#: Tasks (the newest) loaded from the store on start.
LOAD_TASKS: Final = 200
#: Why a task that was running when edge stopped (or was killed) failed.
STOPPED: Final = "edge stopped while it ran"
#: Longest ``reason`` taken from a tool's error text (characters).
REASON_CHARS: Final = 300
#: The deadline (seconds from submission) of a task handed to another agent without one:
#: a remote that never answers cannot keep it waiting for ever.
REMOTE_DEADLINE: Final = 60.0
#: Progress events the store keeps per task (the latest; state changes are all kept).
STORED_PROGRESS: Final = MAX_EVENTS

#: Progress of a running task: (progress or None, total or None, message or None). The
#: first report of a submitted task also moves it to working.
Report = Callable[[float | None, float | None, str | None], None]


@dataclass
class AgentTask:
    """One task; owned by ``AgentTasks``: read it, never change it."""

    id: str
    context_id: str
    skill: str
    args: dict[str, Any]
    #: Who asked: ``local`` (the CLI), ``a2a`` (a local A2A client), ``cloud``,
    #: ``edge:<peer id>`` (another edge, through the cloud).
    origin: str
    #: ``None``: this edge runs it; else the remote agent it was handed to.
    agent: str | None
    state: TaskState
    created_at: float
    updated_at: float
    deadline: float | None
    result: dict[str, Any] | None = None
    reason: str | None = None
    events: list[TaskEvent] = field(default_factory=list)
    #: Agents the request came through before this edge (0: asked directly); a task its
    #: work hands on goes one further.
    hops: int = 0

    @property
    def seq(self) -> int:
        """The last event's number (0 before the first)."""
        return self.events[-1].seq if self.events else 0

    @property
    def final(self) -> bool:
        return self.state in TERMINAL

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "contextId": self.context_id,
            "skill": self.skill,
            "args": self.args,
            "origin": self.origin,
            "agent": self.agent,
            "state": str(self.state),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "deadline": self.deadline,
            "result": self.result,
            "reason": self.reason,
            "seq": self.seq,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """How work handed to another agent ended: a final state, its result, and why."""

    state: TaskState
    result: dict[str, Any] | None = None
    reason: str | None = None


#: Runs a task's skill on this edge; returns the tool result (``{"output"}`` or ``{"error"}``).
RunLocal = Callable[[AgentTask, Report], Awaitable[dict[str, Any]]]
#: Hands a task to ``task.agent`` and returns how it ended there.
RunRemote = Callable[[AgentTask, Report], Awaitable[Outcome]]


async def _no_remote(task: AgentTask, report: Report) -> Outcome:
    return Outcome(TaskState.FAILED, reason="no relay to other agents here")


@dataclass(frozen=True, slots=True)
class Runners:
    """What tasks do, given by the owner.

    Attributes:
        local: runs a skill on this edge.
        remote: hands a task to another agent.
        refusal: why ``skill`` may not run here for ``origin`` (unknown, not allowed),
            else ``None``; asked at submission, for tasks this edge runs.
    """

    local: RunLocal
    remote: RunRemote = _no_remote
    refusal: Callable[[str, str], str | None] = lambda skill, origin: None


class AgentTasks:
    """Handle on the tasks; made by ``serve_tasks``."""

    def __init__(
        self,
        nursery: trio.Nursery,
        agent_id: str,
        runners: Runners,
        *,
        store: Store | None = None,
        on_event: Callable[[AgentTask, TaskEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
        name: str | None = None,
    ) -> None:
        self._nursery = nursery
        #: This edge's own agent id (stable across runs when there is a store).
        self.agent_id = agent_id
        #: This edge's agent name (the capability report's ``agent.name``).
        self.name = name or agent_id
        self._runners = runners
        self._store = store
        self._on_event = on_event
        self._clock = clock
        self._tasks: dict[str, AgentTask] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._done: dict[str, trio.Event] = {}
        self._subscribers: dict[str, builtins.list[trio.MemorySendChannel[TaskEvent]]] = {}
        self._peers: builtins.list[dict[str, Any]] = []
        send, receive = trio.open_memory_channel[tuple[str, Any]](math.inf)
        self._writes = send
        self._pending_writes = receive
        self._written = 0  # writes committed (or given up)
        self._queued = 0
        self._write_done = trio.Event()
        self._writer_gone = False  # its task ended: nothing queued will be written now

    # -- the API --------------------------------------------------------------------

    async def submit(
        self,
        *,
        skill: str,
        args: dict[str, Any],
        origin: str,
        agent: str | None = None,
        deadline: float | None = None,
        task_id: str | None = None,
        context_id: str | None = None,
        hops: int = 0,
    ) -> AgentTask:
        """Record a task and start its work in the handle's nursery.

        Returns once the task is recorded (in the store too, when there is one): state
        ``submitted``, or ``rejected`` with a reason when the skill is unknown or not
        allowed here, or the deadline had already passed.

        Args:
            skill: the tool to run.
            args: its args.
            origin: who asked (see ``AgentTask.origin``).
            agent: the remote agent to hand it to; ``None``: run it here.
            deadline: epoch seconds by which it must have finished; a task handed to
                another agent without one gets ``REMOTE_DEADLINE`` seconds.
            task_id: its id (a requester's); a new one when ``None``.
            context_id: the conversation it belongs to; its id when ``None``.
            hops: agents the request came through before (see ``AgentTask.hops``).

        Raises:
            ValueError: a task with that id exists.
        """
        task_id = task_id or f"task-{secrets.token_hex(8)}"
        if task_id in self._tasks:
            raise ValueError(f"a task with id {task_id!r} exists")
        now = self._clock()
        if agent is not None and deadline is None:
            deadline = now + REMOTE_DEADLINE
        task = AgentTask(
            id=task_id,
            context_id=context_id or task_id,
            skill=skill,
            args=args,
            origin=origin,
            agent=agent,
            state=TaskState.SUBMITTED,
            created_at=now,
            updated_at=now,
            deadline=deadline,
            hops=hops,
        )
        why: str | None = None
        if deadline is not None and deadline <= now:
            why = "the deadline had passed before the task was submitted"
        elif agent is None:
            why = self._runners.refusal(skill, origin)
        self._tasks[task_id] = task
        self._trim()
        if why is not None:
            self._event(task, TaskState.REJECTED, message=why, result=error_result(why), reason=why)
        else:
            self._done[task_id] = trio.Event()
            self._event(task, TaskState.SUBMITTED)
        # Shielded (a short write): a caller cancelled meanwhile still gets the task back, to
        # cancel it, rather than leaving it recorded and never started.
        with trio.CancelScope(shield=True):
            await self._flushed()
        if why is None and not task.final:
            scope = trio.CancelScope()
            if deadline is not None:
                scope.deadline = trio.current_time() + (deadline - self._clock())
            try:
                self._nursery.start_soon(self._run, task, scope, name=f"agent task {task_id}")
            except RuntimeError:  # the tasks have stopped (edge is stopping): it never runs
                self._event(
                    task, TaskState.FAILED, message=STOPPED, result=error_result(STOPPED),
                    reason=STOPPED,
                )  # fmt: skip
                return task
            self._scopes[task_id] = scope
        return task

    def get(self, task_id: str) -> AgentTask | None:
        return self._tasks.get(task_id)

    def list(self, *, context_id: str | None = None, limit: int = 100) -> builtins.list[AgentTask]:
        """The newest tasks first (of ``context_id`` only, when given)."""
        out: builtins.list[AgentTask] = []
        for task in reversed(self._tasks.values()):
            if context_id is None or task.context_id == context_id:
                out.append(task)
                if len(out) >= limit:
                    break
        return out

    def cancel(self, task_id: str, reason: str = "canceled by the requester") -> AgentTask | None:
        """Cancel a task: it ends ``canceled`` now, and its work is cancelled.

        Returns:
            The task; ``None`` when there is no such task. A finished task is returned
            unchanged (a second cancel does nothing).
        """
        task = self._tasks.get(task_id)
        if task is None or task.final:
            return task
        self._event(
            task,
            TaskState.CANCELED,
            message=reason,
            result=error_result(reason, cancelled=True),
            reason=reason,
        )
        scope = self._scopes.get(task_id)
        if scope is not None:
            scope.cancel()
        return task

    def subscribe(self, task_id: str) -> AbstractAsyncContextManager[AsyncIterator[TaskEvent]]:
        """``async with tasks.subscribe(id) as events: async for event in events: ...``

        The first event is the task's current state (its last event), then every later
        one; the iteration ends after the final event.

        Raises:
            KeyError: no such task.
        """
        if task_id not in self._tasks:
            raise KeyError(task_id)
        return self._subscription(task_id)

    async def wait(self, task_id: str) -> AgentTask:
        """Wait until the task has finished; the task.

        Raises:
            KeyError: no such task.
        """
        task = self._tasks[task_id]
        done = self._done.get(task_id)
        if done is not None:
            await done.wait()
        return task

    def peers(self) -> builtins.list[dict[str, Any]]:
        """The remote agents the cloud last named: ``{"id", "name", "hostname", "skills"}``."""
        return [dict(p) for p in self._peers]

    def set_peers(self, peers: builtins.list[dict[str, Any]]) -> None:
        """The cloud named these agents (``agent_peers``); this edge itself is left out."""
        self._peers = [p for p in peers if p.get("id") != self.agent_id]

    def info(self) -> dict[str, Any]:
        in_flight = sum(1 for t in self._tasks.values() if not t.final)
        return {
            "tasks": len(self._tasks),
            "inFlight": in_flight,
            "peers": len(self._peers),
            "agentId": self.agent_id,
            "name": self.name,
        }

    async def events_after(self, task_id: str, after: int) -> builtins.list[TaskEvent]:
        """The task's events after ``after`` (from memory, else from the store).

        Raises:
            KeyError: no such task.
        """
        task = self._tasks[task_id]
        kept = task.events
        if not kept or kept[0].seq <= after + 1 or self._store is None:
            return _contiguous([e for e in kept if e.seq > after], after)
        await self._flushed()
        try:
            rows = await self._store.read(partial_read_events(task_id, after))
            stored = [TaskEvent.from_json(json.loads(r)) for r in rows]
        except (sqlite3.Error, ValueError) as exc:
            log.warning("agents: cannot read the events of task %s: %s", task_id, exc)
            stored = []
        newer = [e for e in kept if e.seq > (stored[-1].seq if stored else after)]
        return _contiguous(stored + newer, after)

    # -- running ----------------------------------------------------------------------

    def _report(self, task: AgentTask) -> Report:
        def report(progress: float | None, total: float | None, message: str | None) -> None:
            if task.final:
                return
            progress, total = _finite(progress), _finite(total)
            if task.state is TaskState.SUBMITTED:
                self._event(task, TaskState.WORKING)
                if progress is None and message is None:
                    return
            if progress is None and total is None and message is None:
                return
            self._event(task, TaskState.WORKING, message=message, progress=progress, total=total)

        return report

    async def _run(self, task: AgentTask, scope: trio.CancelScope) -> None:
        outcome: Outcome | None = None
        report = self._report(task)
        try:
            with scope:
                if task.final:  # cancelled before its work started: start none
                    return
                try:
                    if task.agent is None:
                        report(None, None, None)
                        outcome = _local_outcome(await self._runners.local(task, report))
                    else:
                        outcome = await self._runners.remote(task, report)
                except Exception as exc:
                    log.exception("agents: task %s (%s) failed unexpectedly", task.id, task.skill)
                    why = f"internal error: {type(exc).__name__}: {exc}"
                    outcome = Outcome(TaskState.FAILED, error_result(why), why)
            if task.final:
                return
            if outcome is None:  # the scope's deadline (a cancel ended the task already)
                why = f"the deadline passed before the task finished ({_when(task.deadline)})"
                outcome = Outcome(TaskState.FAILED, error_result(why, timed_out=True), why)
            result = outcome.result
            if result is None and outcome.reason is not None:
                result = error_result(outcome.reason)
            message = outcome.reason if outcome.state is not TaskState.COMPLETED else None
            self._event(task, outcome.state, message=message, result=result, reason=outcome.reason)
        finally:
            self._scopes.pop(task.id, None)
            if not task.final:  # cancelled from outside: edge is stopping
                self._event(
                    task, TaskState.FAILED, message=STOPPED, result=error_result(STOPPED),
                    reason=STOPPED,
                )  # fmt: skip

    # -- events -------------------------------------------------------------------------

    def _event(
        self,
        task: AgentTask,
        state: TaskState,
        *,
        message: str | None = None,
        progress: float | None = None,
        total: float | None = None,
        result: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> TaskEvent:
        last = task.events[-1] if task.events else None
        event = next_event(
            last, task.id, state, self._clock(), message=message, progress=progress,
            total=total, result=result,
        )  # fmt: skip
        task.state = state
        task.updated_at = event.at
        if event.final:
            task.result = result
            task.reason = reason
        task.events.append(event)
        if len(task.events) > MAX_EVENTS:
            del task.events[: len(task.events) - MAX_EVENTS]
        self._write("event", (task, event))
        for send in self._subscribers.get(task.id, ()):
            send.send_nowait(event)
        if event.final:
            for send in self._subscribers.pop(task.id, ()):
                send.close()
            done = self._done.pop(task.id, None)
            if done is not None:
                done.set()
        if self._on_event is not None:
            try:
                self._on_event(task, event)
            except Exception:
                log.exception("agents: the event hook failed for task %s", task.id)
        return event

    @asynccontextmanager
    async def _subscription(self, task_id: str) -> AsyncIterator[AsyncIterator[TaskEvent]]:
        task = self._tasks[task_id]
        send, receive = trio.open_memory_channel[TaskEvent](math.inf)
        if task.events:
            send.send_nowait(task.events[-1])
        if task.final:
            send.close()
        else:
            self._subscribers.setdefault(task_id, []).append(send)
        try:
            async with receive:
                yield _iterate(receive)
        finally:
            listeners = self._subscribers.get(task_id)
            if listeners is not None and send in listeners:
                listeners.remove(send)
                if not listeners:
                    del self._subscribers[task_id]
            send.close()

    def _trim(self) -> None:
        """Forget the oldest finished tasks beyond ``MAX_TASKS`` (the store keeps them)."""
        if len(self._tasks) <= MAX_TASKS:
            return
        for task_id in [t.id for t in self._tasks.values() if t.final]:
            if len(self._tasks) <= MAX_TASKS:
                break
            del self._tasks[task_id]

    # -- the store ------------------------------------------------------------------------

    def _write(self, kind: str, what: Any) -> None:
        if self._store is None:
            return
        task, event = what
        try:
            row = _task_row(task)
        except (TypeError, ValueError, RecursionError) as exc:  # never: results are checked
            log.warning("agents: task %s cannot be stored: %s", task.id, exc)
            return
        self._queued += 1
        self._writes.send_nowait((kind, (row, event)))

    async def _flushed(self) -> None:
        """Return once every write queued so far is committed (or given up)."""
        target = self._queued
        while self._written < target and not self._writer_gone:
            await self._write_done.wait()

    async def _writer(self) -> None:
        assert self._store is not None
        try:
            await self._write_all(self._store)
        finally:
            # A caller waiting (shielded) for its write must not wait for a task that ended.
            self._writer_gone = True
            self._write_done.set()

    async def _write_all(self, store: Store) -> None:
        async for first in self._pending_writes:
            batch = [first]
            while True:
                try:
                    batch.append(self._pending_writes.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await store.write(partial_write(batch))
            except sqlite3.Error as exc:
                log.warning(
                    "agents: cannot write %d task change(s) to the store: %s", len(batch), exc
                )
            self._written += len(batch)
            self._write_done.set()
            self._write_done = trio.Event()

    async def _recover(self) -> None:
        """Load the newest tasks; fail those a stopped or killed edge left unfinished."""
        if self._store is None:
            return
        try:
            rows = await self._store.write(_load)
        except sqlite3.Error as exc:
            log.warning("agents: cannot read the tasks in the store: %s", exc)
            return
        unfinished: builtins.list[AgentTask] = []
        for row, events in rows:
            task = _task_of(row, events)
            self._tasks[task.id] = task
            if not task.final:
                unfinished.append(task)
        for task in unfinished:
            log.info("agents: task %s (%s) failed: %s", task.id, task.skill, STOPPED)
            self._event(
                task, TaskState.FAILED, message=STOPPED, result=error_result(STOPPED),
                reason=STOPPED,
            )  # fmt: skip
        await self._flushed()


async def _iterate(receive: trio.MemoryReceiveChannel[TaskEvent]) -> AsyncIterator[TaskEvent]:
    async for event in receive:
        yield event


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _contiguous(events: builtins.list[TaskEvent], after: int) -> builtins.list[TaskEvent]:
    """``events`` (in order, after ``after``) with the progress events the store no longer
    keeps stood in for by bare ``working`` ones, so that their numbers have no gap."""
    out: builtins.list[TaskEvent] = []
    seq = after
    for event in events:
        if event.seq <= seq:
            continue
        for missing in range(seq + 1, event.seq):
            out.append(TaskEvent(event.task_id, missing, TaskState.WORKING, event.at))
        out.append(event)
        seq = event.seq
    return out


def _local_outcome(result: dict[str, Any]) -> Outcome:
    """A tool result as a task's end: ``completed``, or ``failed`` with the error's first
    line; a result JSON cannot carry fails, saying why (it could not be sent nor stored)."""
    problem = json_problem(result)
    if problem is not None:
        why = f"the tool's result cannot be sent as JSON: {problem}"
        return Outcome(TaskState.FAILED, error_result(why), why)
    error = result.get("error")
    if error is None:
        return Outcome(TaskState.COMPLETED, result)
    text = str(error).strip().splitlines()[0] if str(error).strip() else "the tool failed"
    if len(text) > REASON_CHARS:
        text = text[: REASON_CHARS - 1] + "…"
    # A call cancelled while its task was not (edge stopping or updating) failed.
    return Outcome(TaskState.FAILED, result, text)


def _when(deadline: float | None) -> str:
    if deadline is None:
        return "no deadline"
    return "deadline " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deadline))


# -- in the store's worker thread ---------------------------------------------------------


def _task_row(task: AgentTask) -> tuple[Any, ...]:
    return (
        task.id,
        task.context_id,
        task.skill,
        json.dumps(task.args),
        task.origin,
        task.agent,
        str(task.state),
        task.created_at,
        task.updated_at,
        task.deadline,
        None if task.result is None else json.dumps(task.result),
        task.reason,
        task.seq,
    )


def partial_write(batch: list[tuple[str, Any]]) -> Callable[[sqlite3.Connection], None]:
    """A write of a batch of (kind, (task row, event)), in order."""

    def write(conn: sqlite3.Connection) -> None:
        for _kind, (row, event) in batch:
            if event.state is TaskState.WORKING and event.seq > 2 + STORED_PROGRESS:
                # Progress (submitted is 1, the move to working 2): keep the latest only.
                conn.execute(
                    "DELETE FROM agent_events WHERE task_id = ? AND seq > 2 AND seq <= ?",
                    (event.task_id, event.seq - STORED_PROGRESS),
                )
            conn.execute(
                "INSERT OR REPLACE INTO agent_tasks (id, context_id, skill, args, origin, agent, "
                "state, created_at, updated_at, deadline, result, reason, seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            conn.execute(
                "INSERT OR REPLACE INTO agent_events (task_id, seq, event) VALUES (?, ?, ?)",
                (event.task_id, event.seq, json.dumps(event.to_json())),
            )

    return write


def partial_read_events(task_id: str, after: int) -> Callable[[sqlite3.Connection], list[str]]:
    def read(conn: sqlite3.Connection) -> list[str]:
        cur = conn.execute(
            "SELECT event FROM agent_events WHERE task_id = ? AND seq > ? ORDER BY seq",
            (task_id, after),
        )
        return [r[0] for r in cur]

    return read


def _load(conn: sqlite3.Connection) -> list[tuple[tuple[Any, ...], list[str]]]:
    """Prune beyond ``KEEP_STORED``, then the newest ``LOAD_TASKS`` tasks (oldest first) and
    the unfinished ones, each with its last ``MAX_EVENTS`` events."""
    conn.execute(
        "DELETE FROM agent_events WHERE task_id IN (SELECT id FROM agent_tasks WHERE state IN "
        "('completed', 'failed', 'canceled', 'rejected') AND id NOT IN (SELECT id FROM "
        "agent_tasks ORDER BY created_at DESC LIMIT ?))",
        (KEEP_STORED,),
    )
    conn.execute(
        "DELETE FROM agent_tasks WHERE state IN ('completed', 'failed', 'canceled', 'rejected') "
        "AND id NOT IN (SELECT id FROM agent_tasks ORDER BY created_at DESC LIMIT ?)",
        (KEEP_STORED,),
    )
    rows = conn.execute(
        "SELECT id, context_id, skill, args, origin, agent, state, created_at, updated_at, "
        "deadline, result, reason, seq FROM agent_tasks WHERE id IN (SELECT id FROM agent_tasks "
        "ORDER BY created_at DESC LIMIT ?) OR state IN ('submitted', 'working') "
        "ORDER BY created_at, rowid",
        (LOAD_TASKS,),
    ).fetchall()
    out = []
    for row in rows:
        events = [
            r[0]
            for r in conn.execute(
                "SELECT event FROM (SELECT seq, event FROM agent_events WHERE task_id = ? "
                "ORDER BY seq DESC LIMIT ?) ORDER BY seq",
                (row[0], MAX_EVENTS),
            )
        ]
        out.append((tuple(row), events))
    return out


def _task_of(row: tuple[Any, ...], events: list[str]) -> AgentTask:
    (ident, context, skill, args, origin, agent, state, created, updated, deadline, result,
     reason, _seq) = row  # fmt: skip
    return AgentTask(
        id=ident,
        context_id=context,
        skill=skill,
        args=json.loads(args),
        origin=origin,
        agent=agent,
        state=TaskState(state),
        created_at=created,
        updated_at=updated,
        deadline=deadline,
        result=None if result is None else json.loads(result),
        reason=reason,
        events=[TaskEvent.from_json(json.loads(e)) for e in events],
    )


async def serve_tasks(
    agent_id: str,
    runners: Runners,
    *,
    store: Store | None = None,
    on_event: Callable[[AgentTask, TaskEvent], None] | None = None,
    clock: Callable[[], float] = time.time,
    name: str | None = None,
    task_status: trio.TaskStatus[AgentTasks] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the tasks until cancelled; ``await nursery.start(serve_tasks, ...)`` gives the handle.

    Before it is given, the store's tasks are loaded and those left unfinished fail
    (``STOPPED``), their final events told to ``on_event``.
    """
    async with trio.open_nursery() as nursery:
        tasks = AgentTasks(
            nursery, agent_id, runners, store=store, on_event=on_event, clock=clock, name=name
        )
        if store is not None:
            nursery.start_soon(tasks._writer)
        await tasks._recover()
        task_status.started(tasks)
        await trio.sleep_forever()
