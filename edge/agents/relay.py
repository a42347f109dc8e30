"""The tunnel side of the agents: requests in, asks out, through the cloud.

The cloud (or another edge, through it) sends ``agent_request``: the relay
records the task (``AgentTasks.submit``; origin ``cloud``, or ``edge:<id>``
when the request names who asked) and sends each of its events back as
``agent_event``: every change of state, the final one above all, journaled
(``send_durable``, key ``agent-event:<task>:<seq>``), so that a reconnect or a
restart loses none; progress best effort (``send_now``: one lost is a gap the
receiver asks to have replayed). The receiver drops a ``seq`` it has. A result
JSON cannot carry fails the task, saying why. A request sent twice (resent
after a drop) is the same task: it is answered again, not run again. A request
handed on through more than ``MAX_HOPS`` agents is rejected. ``agent_cancel``
cancels the task (a second one does nothing); ``agent_resume {taskId, after}``
replays its events after ``after``; ``agent_peers`` names the other agents.

Outbound, a task handed to another agent (``AgentTasks.submit(agent=...)``,
the ``agent_ask`` tool) goes up as ``agent_request`` with ``to``, journaled; its
events come back as ``agent_event``, taken once each and in order
(``EventOrder``): on a gap, and for every task still out after a reconnect
(``on_connected``), the relay asks for a replay (``agent_resume``); a final
event after a gap ends the task all the same. Such a task has a deadline
(``AgentTasks.submit`` gives one), and an ``agent_ask`` made by a task's work
hands on no later deadline than that task's, one hop further. The task
ends with the remote's final event, or with an error response to the request
(no such agent); when it ends here first (cancelled, past its deadline, edge
stopping, or found unfinished after a restart) an ``agent_cancel`` goes up, so
the remote's work stops too, and whatever it had asked of others in turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from ..errors import ToolError
from ..protocol import Request, Response, error_result
from ..protocol.a2a import (
    MAX_HOPS,
    AgentRequest,
    EventOrder,
    Order,
    TaskEvent,
    TaskState,
    cancel_frame,
    event_frame,
    parse_cancel,
    parse_peers,
    parse_request,
    parse_resume,
    request_frame,
    resume_frame,
)
from ..protocol.strict import json_problem
from ..tools.registry import CallContext, ToolSpec
from .identity import AgentIdentity, load_identity
from .tasks import (
    REMOTE_DEADLINE,
    AgentTask,
    AgentTasks,
    Outcome,
    Report,
    RunLocal,
    Runners,
    serve_tasks,
)

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)

#: Seconds ``agent_ask`` waits for the other agent unless told otherwise (and the deadline
#: of any task handed to another agent without one).
ASK_TIMEOUT: Final = REMOTE_DEADLINE
#: Longest ``agent_ask`` timeout (seconds).
MAX_ASK_TIMEOUT: Final = 3600.0
#: The prefix of the JSON-RPC ids of edge's ``agent_request``s (the cloud answers them).
REQUEST_ID_PREFIX: Final = "agent-request:"


class Uplink(Protocol):
    """What the relay sends through (the tunnel handle)."""

    def send_durable(self, key: str, frame: Mapping[str, Any]) -> None: ...

    def send_now(self, what: str, frame: Mapping[str, Any]) -> bool: ...

    def send_result(self, request_id: str | int, result: Mapping[str, Any]) -> None: ...


def origin_of(sender: str | None) -> str:
    """A task's origin for a request from ``sender`` (an agent id) or from the cloud."""
    return "cloud" if sender is None else f"edge:{sender}"


def _from_afar(task: AgentTask) -> bool:
    """Whether the task was asked through the tunnel (the cloud's or another edge's)."""
    return task.agent is None and (task.origin == "cloud" or task.origin.startswith("edge:"))


def _sendable(event: TaskEvent) -> dict[str, Any]:
    """The ``agent_event`` frame of ``event``; one JSON cannot carry loses what it cannot
    (a final one says why in its result)."""
    frame = event_frame(event)
    problem = json_problem(frame)
    if problem is None:
        return frame
    why = f"the result cannot be sent: {problem}"
    log.warning("agents: event %d of task %s: %s", event.seq, event.task_id, why)
    result = error_result(why) if event.final else None
    return event_frame(replace(event, progress=None, total=None, result=result))


@dataclass
class _Outbound:
    """A task handed to another agent, while this edge waits for it."""

    task: AgentTask
    report: Report
    order: EventOrder = field(default_factory=EventOrder)
    outcome: Outcome | None = None
    done: trio.Event = field(default_factory=trio.Event)


class AgentRelay:
    """The tunnel side; made by ``serve_agents``."""

    def __init__(self, nursery: trio.Nursery, uplink: Uplink) -> None:
        self._nursery = nursery
        self._uplink = uplink
        self.tasks: AgentTasks | None = None
        self._outbound: dict[str, _Outbound] = {}
        self._submitting: set[str] = set()
        #: Outbound tasks whose end came from the remote (no cancel to send up).
        self._ended_there: set[str] = set()
        self.duplicates = 0  # events received twice (dropped)
        self.resumes = 0  # replays asked for
        self._replays = 0  # final events sent again

    # -- the daemon's dispatch ----------------------------------------------------------

    def methods(self) -> dict[str, Callable[[Request], None]]:
        """The handlers of the extension's methods, for the daemon's dispatch table."""
        return {
            "agent_request": self._on_request,
            "agent_cancel": self._on_cancel,
            "agent_event": self._on_event,
            "agent_resume": self._on_resume,
            "agent_peers": self._on_peers,
        }

    def on_response(self, frame: Response) -> bool:
        """The cloud's answer to an ``agent_request`` of edge's; whether it was one."""
        if not isinstance(frame.id, str) or not frame.id.startswith(REQUEST_ID_PREFIX):
            return False
        task_id = frame.id[len(REQUEST_ID_PREFIX) :]
        out = self._outbound.get(task_id)
        if out is None or frame.error is None or out.done.is_set():
            return True
        error = frame.error
        message = error.get("message") if isinstance(error, dict) else None
        why = str(message or error)[:500]
        self._end(out, Outcome(TaskState.REJECTED, error_result(why), why))
        return True

    def on_connected(self) -> None:
        """The tunnel is up again: ask for what every outbound task may have missed."""
        for task_id, out in list(self._outbound.items()):
            self.resumes += 1
            self._uplink.send_now(
                f"resume of task {task_id}", resume_frame(task_id, out.order.last)
            )

    def on_task_event(self, task: AgentTask, event: TaskEvent) -> None:
        """Every task's event: a requester's task sends it back; an outbound task that
        ended here sends a cancel up."""
        if task.agent is None:
            if _from_afar(task):
                self._send_event(task, event)
        elif event.final:
            if task.id in self._ended_there:
                self._ended_there.discard(task.id)
            else:
                reason = task.reason or "the requester stopped waiting"
                self._uplink.send_durable(f"agent-cancel:{task.id}", cancel_frame(task.id, reason))

    def _send_event(self, task: AgentTask, event: TaskEvent) -> None:
        """A change of state is journaled; progress (working again) is sent best effort."""
        before = task.events[-2] if len(task.events) > 1 else None
        frame = _sendable(event)
        if before is None or before.state is not event.state or event.final:
            self._uplink.send_durable(f"agent-event:{event.task_id}:{event.seq}", frame)
        else:
            self._uplink.send_now(f"progress of task {event.task_id}", frame)

    # -- requests from the cloud ----------------------------------------------------------

    def _answer(self, frame: Request, result: dict[str, Any]) -> None:
        if frame.id is not None:
            self._uplink.send_result(frame.id, result)

    def _on_request(self, frame: Request) -> None:
        try:
            request = parse_request(frame.params)
        except ValueError as exc:
            log.warning("agents: a bad agent_request: %s", exc)
            self._answer(frame, error_result(f"bad agent_request: {exc}"))
            return
        tasks = self.tasks
        if tasks is None:
            self._answer(frame, error_result("agents are not ready"))
            return
        existing = tasks.get(request.task_id)
        if existing is not None or request.task_id in self._submitting:
            if existing is not None and existing.origin != origin_of(request.sender):
                self._answer(frame, error_result(f"task id {request.task_id!r} is taken"))
                return
            # A resend: the same task, already running or done (or being recorded).
            state = TaskState.SUBMITTED if existing is None else existing.state
            self._answer(frame, {"taskId": request.task_id, "state": str(state)})
            return
        if request.hops > MAX_HOPS:
            why = f"the request was handed on through {request.hops} agents (at most {MAX_HOPS})"
            log.warning("agents: task %s refused: %s", request.task_id, why)
            refused = TaskEvent(
                request.task_id, 1, TaskState.REJECTED, time.time(), message=why,
                result=error_result(why),
            )  # fmt: skip
            self._uplink.send_durable(f"agent-event:{request.task_id}:1", event_frame(refused))
            self._answer(frame, error_result(why))
            return
        self._submitting.add(request.task_id)
        self._nursery.start_soon(self._submit, frame, request)

    async def _submit(self, frame: Request, request: AgentRequest) -> None:
        assert self.tasks is not None
        try:
            task = await self.tasks.submit(
                skill=request.skill,
                args=request.args,
                origin=origin_of(request.sender),
                deadline=request.deadline,
                task_id=request.task_id,
                context_id=request.context_id,
                hops=request.hops,
            )
        except ValueError as exc:
            self._answer(frame, error_result(str(exc)))
            return
        finally:
            self._submitting.discard(request.task_id)
        log.info("agents: task %s (%s) from %s: %s", task.id, task.skill, task.origin, task.state)
        self._answer(frame, {"taskId": task.id, "state": str(task.state)})

    def _on_cancel(self, frame: Request) -> None:
        try:
            task_id, reason = parse_cancel(frame.params)
        except ValueError as exc:
            self._answer(frame, error_result(f"bad agent_cancel: {exc}"))
            return
        tasks = self.tasks
        task = None if tasks is None else tasks.get(task_id)
        if tasks is None or task is None or not _from_afar(task):
            self._answer(frame, error_result(f"no task {task_id!r} here"))
            return
        if not task.final:
            log.info("agents: task %s canceled by the requester", task_id)
        tasks.cancel(task_id, reason or "canceled by the requester")
        self._answer(frame, {"taskId": task_id, "state": str(task.state)})

    def _on_resume(self, frame: Request) -> None:
        try:
            task_id, after = parse_resume(frame.params)
        except ValueError as exc:
            self._answer(frame, error_result(f"bad agent_resume: {exc}"))
            return
        task = None if self.tasks is None else self.tasks.get(task_id)
        if task is None or not _from_afar(task):
            self._answer(frame, error_result(f"no task {task_id!r} here"))
            return
        self._nursery.start_soon(self._replay, frame, task_id, after)

    async def _replay(self, frame: Request, task_id: str, after: int) -> None:
        """Send the task's events after ``after`` again: progress until the link is swamped
        (the receiver asks again), the final one journaled, as the first time."""
        assert self.tasks is not None
        replayed = 0
        swamped = False
        try:
            events = await self.tasks.events_after(task_id, after)
            for event in events:
                if event.final:
                    self._replays += 1
                    key = f"agent-event:{task_id}:{event.seq}:replay-{self._replays}"
                    self._uplink.send_durable(key, _sendable(event))
                elif swamped or not self._uplink.send_now(
                    f"replay of task {task_id}", _sendable(event)
                ):
                    swamped = True
                    continue
                replayed += 1
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("agents: cannot replay the events of task %s: %s", task_id, exc)
            self._answer(frame, error_result(f"cannot replay task {task_id!r}: {exc}"))
            return
        self._answer(frame, {"taskId": task_id, "replayed": replayed})

    def _on_peers(self, frame: Request) -> None:
        try:
            peers = parse_peers(frame.params)
        except ValueError as exc:
            self._answer(frame, error_result(f"bad agent_peers: {exc}"))
            return
        if self.tasks is not None:
            self.tasks.set_peers(peers)
        log.debug("agents: %d peer(s)", len(peers))
        self._answer(frame, {"peers": len(peers)})

    def _on_event(self, frame: Request) -> None:
        try:
            event = TaskEvent.from_json(frame.params)
        except ValueError as exc:
            log.warning("agents: a bad agent_event: %s", exc)
            return
        out = self._outbound.get(event.task_id)
        if out is None:
            log.debug("agents: event %d of task %s: not waited for", event.seq, event.task_id)
            return
        order = out.order.take(event)
        if order is Order.DUPLICATE:
            self.duplicates += 1
            return
        if order is Order.GAP:
            self.resumes += 1
            self._uplink.send_now(
                f"resume of task {event.task_id}", resume_frame(event.task_id, out.order.last)
            )
            if not event.final:
                return
            # The end, with some progress missed: the task ends (nothing else may come).
            out.order.finished = True
        if event.final:
            reason = event.message if event.state is not TaskState.COMPLETED else None
            self._end(out, Outcome(event.state, event.result, reason))
        elif event.state is TaskState.WORKING:
            out.report(event.progress, event.total, event.message)

    def _end(self, out: _Outbound, outcome: Outcome) -> None:
        if out.task.final:  # it ended here first (its cancel went up)
            return
        out.outcome = outcome
        self._ended_there.add(out.task.id)
        out.done.set()

    # -- asking another agent -------------------------------------------------------------

    async def run_remote(self, task: AgentTask, report: Report) -> Outcome:
        """Hand ``task`` to ``task.agent`` through the cloud and wait for its end there."""
        assert task.agent is not None
        out = _Outbound(task, report)
        self._outbound[task.id] = out
        request = AgentRequest(
            task_id=task.id,
            skill=task.skill,
            args=task.args,
            to=task.agent,
            deadline=task.deadline,
            context_id=task.context_id,
            hops=task.hops,
        )
        rpc_id = REQUEST_ID_PREFIX + task.id
        try:
            if task.final:  # ended before it was handed on: ask nothing
                return Outcome(task.state, task.result, task.reason)
            self._uplink.send_durable(rpc_id, request_frame(request, rpc_id))
            await out.done.wait()
            assert out.outcome is not None
            return out.outcome
        finally:
            del self._outbound[task.id]


@dataclass(frozen=True, slots=True)
class Agents:
    """The agents' handles: the tasks (what the control API shows), the relay, the identity."""

    tasks: AgentTasks
    relay: AgentRelay
    identity: AgentIdentity


async def serve_agents(
    uplink: Uplink,
    run_local: RunLocal,
    *,
    refusal: Callable[[str, str], str | None] = lambda skill, origin: None,
    store: Store | None = None,
    name: str | None = None,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[Agents] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the agents until cancelled; ``await nursery.start(serve_agents, ...)`` gives them.

    Args:
        uplink: the tunnel.
        run_local: runs a skill here (``edge.agents.tasks.RunLocal``).
        refusal: why a skill may not run here for an origin, else ``None``.
        store: the store (``edge.store.Store``), or ``None`` to keep tasks in memory.
        name: this edge's agent name; ``None``: the host name.
        clock: epoch seconds (tests give a virtual one).
    """
    identity = await load_identity(store, name)
    async with trio.open_nursery() as nursery:
        relay = AgentRelay(nursery, uplink)
        runners = Runners(local=run_local, remote=relay.run_remote, refusal=refusal)
        tasks = await nursery.start(
            partial(
                serve_tasks,
                identity.id,
                runners,
                store=store,
                on_event=relay.on_task_event,
                clock=clock,
                name=identity.name,
            )
        )
        relay.tasks = tasks
        task_status.started(Agents(tasks, relay, identity))


# -- the agent_ask tool ---------------------------------------------------------------------

ASK_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "agent": {
            "type": "string",
            "minLength": 1,
            "description": "the agent to ask: its id, or its name as agent_peers gave it",
        },
        "tool": {"type": "string", "minLength": 1, "description": "the tool it should run"},
        "args": {"type": "object", "description": "the tool's args"},
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_ASK_TIMEOUT,
            "description": f"seconds to wait for its answer (default {ASK_TIMEOUT:g})",
        },
    },
    "required": ["agent", "tool"],
    "additionalProperties": False,
}


def resolve_agent(tasks: AgentTasks, wanted: str) -> str:
    """The agent id ``wanted`` names: an id, or a name or host name of one peer.

    Raises:
        ToolError: it names this edge, or no peer (when the cloud named some), or
            more than one.
    """
    if wanted in (tasks.agent_id,):
        raise ToolError(f"agent {wanted!r} is this edge: call the tool directly")
    peers = tasks.peers()
    if any(p["id"] == wanted for p in peers) or not peers:
        return wanted
    named = [p for p in peers if wanted in (p.get("name"), p.get("hostname"))]
    if len(named) == 1:
        return str(named[0]["id"])
    if named:
        ids = ", ".join(p["id"] for p in named)
        raise ToolError(f"{len(named)} agents are named {wanted!r} ({ids}): give its id")
    known = ", ".join(f"{p['name']} ({p['id']})" for p in peers[:10])
    raise ToolError(f"no agent {wanted!r} is connected to the cloud; known: {known}")


def agent_ask_tool(
    tasks: Callable[[], AgentTasks | None], clock: Callable[[], float] = time.time
) -> ToolSpec:
    """The ``agent_ask`` tool: ask another agent, through the cloud, to run a tool.

    It runs as any tool call (policy, approval, its own timeout); its progress is the
    other agent's; cancelling the call cancels the task it handed on.
    """

    async def run(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        handle = tasks()
        if handle is None:
            raise ToolError("agents are not running on this edge")
        agent = resolve_agent(handle, args["agent"])
        deadline = clock() + float(args.get("timeout", ASK_TIMEOUT))
        # Asked by a task's work (its call id is the task's): no later than that task's
        # deadline, and one hop further from whoever asked it.
        caller = ctx.call_id
        parent = (
            handle.get(caller[len("agent-") :])
            if isinstance(caller, str) and caller.startswith("agent-")
            else None
        )
        hops = 0
        if parent is not None:
            hops = parent.hops + 1
            if parent.deadline is not None:
                deadline = min(deadline, parent.deadline)
        if hops > MAX_HOPS:
            raise ToolError(f"the task was handed on through {hops} agents (at most {MAX_HOPS})")
        task = await handle.submit(
            skill=args["tool"],
            args=dict(args.get("args") or {}),
            origin="local",
            agent=agent,
            deadline=deadline,
            hops=hops,
        )
        try:
            async with handle.subscribe(task.id) as events:
                async for event in events:
                    told = event.progress is not None or event.message
                    if event.state is TaskState.WORKING and ctx.progress is not None and told:
                        ctx.progress(event.progress or 0.0, event.total, event.message)
        finally:
            if not task.final:
                handle.cancel(task.id, "the asking call was cancelled")
        if task.state is TaskState.COMPLETED and task.result is not None:
            return task.result
        result = dict(task.result or {})
        why = result.get("error") or task.reason or f"the task ended {task.state}"
        result["error"] = f"agent {args['agent']}: {why}"
        result["state"] = str(task.state)
        return result

    return ToolSpec(
        name="agent_ask",
        description=(
            "Ask another agent (an edge or the cloud's, by id or name) to run one of its "
            "tools, through the cloud, and wait for its answer."
        ),
        input_schema=ASK_SCHEMA,
        run=run,
        timeout=MAX_ASK_TIMEOUT + 30.0,
    )
