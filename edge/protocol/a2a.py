"""Agent collaboration: task states, task events, and the ``agents`` extension's frames.

Work one agent hands another is a *task*, following the A2A protocol's task
model (https://a2a-protocol.org/latest/specification/, "Task" and
"TaskState") where it fits: a task is ``submitted``, then ``working``, then
ends ``completed``, ``failed``, ``canceled`` or ``rejected``; an ended task
never changes again. Every change is a ``TaskEvent`` numbered ``1, 2, 3 ...``
per task, so that a receiver can tell a repeat (``seq`` not above the last it
saw: dropped) from a gap (``seq`` more than one above: it asks the sender to
replay, ``agent_resume``). ``EventOrder`` is that receiver's bookkeeping.

The tunnel's frames (JSON-RPC 2.0, see docs/protocol.md, "Agents"):

- ``agent_request`` ``{taskId, skill, args, from?, to?, deadline?, contextId?}``:
  run ``skill`` (a tool name) with ``args``; ``deadline`` in epoch seconds;
  ``to`` names the agent that should run it (edge → cloud), ``from`` the agent
  that asked (cloud → edge, when another edge asked).
- ``agent_event`` ``{taskId, seq, state, at, message?, progress?, total?,
  result?}``: a task's event, both ways.
- ``agent_cancel`` ``{taskId, reason?}``; ``agent_resume`` ``{taskId, after}``;
  ``agent_peers`` ``{peers: [{id, name, hostname, skills}]}`` (cloud → edge).

Everything here is plain code: no I/O, no trio. Parsers raise ``ValueError``
with a message that names the bad field.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

#: Longest task id, skill name, agent id or context id accepted (characters).
MAX_ID_CHARS: Final = 256
#: Longest event message kept (characters); a longer one is cut.
MAX_MESSAGE_CHARS: Final = 2000
#: Peers kept from one ``agent_peers`` frame.
MAX_PEERS: Final = 1000
#: Most agents a request may have been handed through (``hops``: 0 when asked directly,
#: one more each time a task's work asks another agent); a request past it is rejected.
MAX_HOPS: Final = 4


class TaskState(enum.StrEnum):
    SUBMITTED = "submitted"
    WORKING = "working"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    REJECTED = "rejected"


#: The states a task ends in; nothing follows them.
TERMINAL: Final[frozenset[TaskState]] = frozenset(
    {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELED, TaskState.REJECTED}
)


def can_move(old: TaskState, new: TaskState) -> bool:
    """Whether a task in ``old`` may move to ``new``.

    ``submitted`` → ``working`` or any terminal state; ``working`` → any terminal
    state; a terminal state → nothing. (A ``working`` task's progress is an event
    that stays ``working``: not a move.)
    """
    if old is TaskState.SUBMITTED:
        return new is TaskState.WORKING or new in TERMINAL
    if old is TaskState.WORKING:
        return new in TERMINAL
    return False


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One change of a task: its new state, and what came with it.

    ``result`` (the tool result: ``{"output": ...}`` or ``{"error": ...}``) is set
    on a terminal event only.
    """

    task_id: str
    seq: int
    state: TaskState
    at: float
    message: str | None = None
    progress: float | None = None
    total: float | None = None
    result: dict[str, Any] | None = field(default=None, hash=False)

    @property
    def final(self) -> bool:
        return self.state in TERMINAL

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "taskId": self.task_id,
            "seq": self.seq,
            "state": str(self.state),
            "at": self.at,
        }
        if self.message is not None:
            out["message"] = self.message
        if self.progress is not None:
            out["progress"] = self.progress
        if self.total is not None:
            out["total"] = self.total
        if self.result is not None:
            out["result"] = self.result
        return out

    @classmethod
    def from_json(cls, d: Any) -> TaskEvent:
        """The event in ``d`` (an ``agent_event``'s params).

        Raises:
            ValueError: ``d`` is not a valid event; the message names the field.
        """
        if not isinstance(d, Mapping):
            raise ValueError("an agent event must be an object")
        task_id = _id(d, "taskId")
        seq = d.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValueError('"seq" must be an integer of at least 1')
        state = _state(d.get("state"))
        at = _number(d, "at")
        if at is None:
            raise ValueError('"at" must be a number (seconds since the epoch)')
        message = d.get("message")
        if message is not None and not isinstance(message, str):
            raise ValueError('"message" must be a string')
        result = d.get("result")
        if result is not None:
            if not isinstance(result, dict):
                raise ValueError('"result" must be an object')
            if state not in TERMINAL:
                raise ValueError(f'"result" comes with a final event only, not "{state}"')
        return cls(
            task_id=task_id,
            seq=seq,
            state=state,
            at=at,
            message=_cut(message),
            progress=_number(d, "progress"),
            total=_number(d, "total"),
            result=result,
        )


def next_event(
    last: TaskEvent | None,
    task_id: str,
    state: TaskState,
    at: float,
    *,
    message: str | None = None,
    progress: float | None = None,
    total: float | None = None,
    result: dict[str, Any] | None = None,
) -> TaskEvent:
    """The event after ``last`` (the first one when ``None``) moving the task to ``state``
    (or, ``working`` again, telling its progress).

    Raises:
        ValueError: the move is not allowed (``can_move``), or ``result`` comes with
            a state that is not final.
    """
    if last is None:
        if state is not TaskState.SUBMITTED and state not in TERMINAL:
            raise ValueError(f"a task starts submitted (or ends at once), not {state}")
    elif not can_move(last.state, state) and not (
        last.state is TaskState.WORKING and state is TaskState.WORKING
    ):
        raise ValueError(f"a task cannot move from {last.state} to {state}")
    if result is not None and state not in TERMINAL:
        raise ValueError(f"a result comes with a final event only, not {state}")
    return TaskEvent(
        task_id=task_id,
        seq=1 if last is None else last.seq + 1,
        state=state,
        at=at,
        message=_cut(message),
        progress=progress,
        total=total,
        result=result,
    )


class Order(enum.Enum):
    """What a receiver does with an event (``EventOrder.accept``)."""

    NEW = "new"  # the next one: take it
    DUPLICATE = "duplicate"  # seen before (a resend): drop it
    GAP = "gap"  # some are missing: drop it and ask for a replay after ``last``


@dataclass(slots=True)
class EventOrder:
    """The receiving side of one task's events: takes each ``seq`` once, in order.

    ``last`` is the highest ``seq`` taken, ``finished`` whether a final event was.
    """

    last: int = 0
    finished: bool = False

    def accept(self, seq: int) -> Order:
        if seq <= self.last:
            return Order.DUPLICATE
        if seq > self.last + 1:
            return Order.GAP
        self.last = seq
        return Order.NEW

    def take(self, event: TaskEvent) -> Order:
        """``accept`` for a whole event, noting whether it was the final one."""
        order = self.accept(event.seq)
        if order is Order.NEW and event.final:
            self.finished = True
        return order


# -- the agents extension's frames -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentRequest:
    """An ``agent_request``'s params: run ``skill`` with ``args`` as task ``task_id``."""

    task_id: str
    skill: str
    args: dict[str, Any] = field(hash=False)
    sender: str | None = None  # "from": the agent that asked, when another agent did
    to: str | None = None  # the agent that should run it (edge → cloud)
    deadline: float | None = None  # epoch seconds
    context_id: str | None = None
    hops: int = 0  # agents it was handed through before (0: asked directly)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"taskId": self.task_id, "skill": self.skill, "args": self.args}
        if self.sender is not None:
            out["from"] = self.sender
        if self.to is not None:
            out["to"] = self.to
        if self.deadline is not None:
            out["deadline"] = self.deadline
        if self.context_id is not None:
            out["contextId"] = self.context_id
        if self.hops:
            out["hops"] = self.hops
        return out


def parse_request(params: Mapping[str, Any]) -> AgentRequest:
    """An ``agent_request``'s params.

    Raises:
        ValueError: a field is missing or of the wrong kind; the message names it.
    """
    args = params.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ValueError('"args" must be an object')
    deadline = _number(params, "deadline")
    hops = params.get("hops", 0)
    if hops is None:
        hops = 0
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
        raise ValueError('"hops" must be an integer of at least 0')
    return AgentRequest(
        task_id=_id(params, "taskId"),
        skill=_id(params, "skill"),
        args=args,
        sender=_optional_id(params, "from"),
        to=_optional_id(params, "to"),
        deadline=deadline,
        context_id=_optional_id(params, "contextId"),
        hops=hops,
    )


def parse_cancel(params: Mapping[str, Any]) -> tuple[str, str | None]:
    """An ``agent_cancel``'s params: (task id, reason or ``None``).

    Raises:
        ValueError: no usable ``taskId``, or a ``reason`` that is not a string.
    """
    reason = params.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError('"reason" must be a string')
    return _id(params, "taskId"), _cut(reason)


def parse_resume(params: Mapping[str, Any]) -> tuple[str, int]:
    """An ``agent_resume``'s params: (task id, the last ``seq`` the asker has).

    Raises:
        ValueError: no usable ``taskId``, or ``after`` is not an integer ≥ 0.
    """
    after = params.get("after", 0)
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValueError('"after" must be an integer of at least 0')
    return _id(params, "taskId"), after


def parse_peers(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An ``agent_peers``'s params: one ``{"id", "name", "hostname", "skills"}`` per peer.

    Peers without a usable ``id`` are left out; a missing name is the id.

    Raises:
        ValueError: ``peers`` is not a list.
    """
    raw = params.get("peers")
    if not isinstance(raw, list):
        raise ValueError('"peers" must be a list')
    peers: list[dict[str, Any]] = []
    for item in raw[:MAX_PEERS]:
        if not isinstance(item, Mapping):
            continue
        ident = item.get("id")
        if not isinstance(ident, str) or not ident or len(ident) > MAX_ID_CHARS:
            continue
        name = item.get("name")
        hostname = item.get("hostname")
        skills = item.get("skills")
        peers.append(
            {
                "id": ident,
                "name": name if isinstance(name, str) and name else ident,
                "hostname": hostname if isinstance(hostname, str) else None,
                "skills": [s for s in skills if isinstance(s, str)]
                if isinstance(skills, list)
                else [],
            }
        )
    return peers


def request_frame(request: AgentRequest, rpc_id: str | int | None = None) -> dict[str, Any]:
    """An ``agent_request`` frame: a JSON-RPC request when ``rpc_id`` is given."""
    return _rpc("agent_request", request.params(), rpc_id)


def event_frame(event: TaskEvent) -> dict[str, Any]:
    """An ``agent_event`` notification."""
    return _rpc("agent_event", event.to_json())


def cancel_frame(task_id: str, reason: str | None = None) -> dict[str, Any]:
    """An ``agent_cancel`` notification."""
    params: dict[str, Any] = {"taskId": task_id}
    if reason is not None:
        params["reason"] = reason
    return _rpc("agent_cancel", params)


def resume_frame(task_id: str, after: int) -> dict[str, Any]:
    """An ``agent_resume`` notification: replay the events of ``task_id`` after ``after``."""
    return _rpc("agent_resume", {"taskId": task_id, "after": after})


def peers_frame(peers: list[dict[str, Any]]) -> dict[str, Any]:
    """An ``agent_peers`` notification (the cloud's)."""
    return _rpc("agent_peers", {"peers": peers})


def _rpc(method: str, params: dict[str, Any], rpc_id: str | int | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if rpc_id is not None:
        frame["id"] = rpc_id
    return frame


def _id(d: Mapping[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f'"{key}" must be a non-empty string')
    if len(value) > MAX_ID_CHARS:
        raise ValueError(f'"{key}" is longer than {MAX_ID_CHARS} characters')
    return value


def _optional_id(d: Mapping[str, Any], key: str) -> str | None:
    return None if d.get(key) is None else _id(d, key)


def _state(value: Any) -> TaskState:
    try:
        return TaskState(value)
    except ValueError:
        known = ", ".join(s.value for s in TaskState)
        raise ValueError(f'"state" must be one of {known}') from None


def _number(d: Mapping[str, Any], key: str) -> float | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f'"{key}" must be a finite number')
    return float(value)


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[: MAX_MESSAGE_CHARS - 1] + "…"
