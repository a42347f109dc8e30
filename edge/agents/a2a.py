"""Edge's local A2A endpoint as plain code: JSON-RPC requests in, A2A JSON out.

A subset of the A2A protocol, version 1.0, JSON-RPC binding
(https://a2a-protocol.org/latest/specification/), so that any A2A client can
hand this edge a task: ``SendMessage``, ``SendStreamingMessage``, ``GetTask``,
``ListTasks``, ``CancelTask`` and ``SubscribeToTask``, served at ``POST /a2a``
of the control API; the agent card at ``GET /.well-known/agent-card.json``
lists the tools edge runs as its skills. Everything on the wire is protobuf's
JSON form of A2A's types: camelCase fields, enums by name
(``TASK_STATE_COMPLETED``, ``ROLE_AGENT``), a part is ``{"text"}`` or
``{"data"}``, and a streamed event is a ``StreamResponse`` (``{"task"}``,
``{"statusUpdate"}`` or ``{"artifactUpdate"}``).

How a message names the work: one task runs one tool. The message holds a
data part ``{"tool": NAME, "args": {...}}`` (``"skill"`` is taken for
``"tool"``), or the same object as the message's ``metadata``; optional keys
are ``"agent"`` (a remote agent's id or name, one the cloud named: the task is
handed to it; ``"local"`` or absent: this edge runs it; an agent the cloud did
not name is refused at once, -32602) and ``"timeout"`` (seconds: the task's
deadline; a remote agent's task has ``REMOTE_TIMEOUT`` unless given, at most
``MAX_REMOTE_TIMEOUT``, so that an agent that never answers is not waited for
forever). ``NaN`` and the infinities are not JSON: a body with one is a parse
error (-32700), as no answer could carry it back. Numbers in the arguments
that are whole are given to the tool as integers (a data part is a protobuf
``Struct``, whose numbers are all doubles). A message that names no tool, or
names it badly, is refused with an invalid-params error (-32602) saying how
to name one; nothing is recorded. A tool edge does not know, or may not run, is a task that ends
``TASK_STATE_REJECTED`` with the reason in its status message.

What a task carries: its status (edge's task states map one to one onto A2A's;
the status message holds the latest progress line, or the reason a task
failed, was canceled or rejected), one artifact ``"output"`` with the tool's
output text once it completed (the result's other fields in the artifact's
metadata), its history (the request as a data part, then the progress lines
edge kept), and metadata: the tool, who asked, the agent it went to.

What edge does not do: push notifications (the agent card says
``pushNotifications: false``; their four methods answer -32003, since a
callback URL a page could choose invites requests forged onto the user's
network), the extended agent card (-32007), more messages to a task (tasks
take no input: -32004), and A2A versions other than 1.0 (-32009, when the
``A2A-Version`` header names one; a request without the header is served).

Errors are values here (``RpcError``, ``RpcFailure``), answered as JSON-RPC
errors whose ``data`` is A2A's ``google.rpc.ErrorInfo`` detail with the reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from ..protocol.a2a import TaskState
from ..protocol.strict import loads as strict_loads

if TYPE_CHECKING:
    from ..protocol.a2a import TaskEvent
    from .tasks import AgentTask

#: The control API's path of the JSON-RPC endpoint (the agent card names it).
A2A_PATH: Final = "/a2a"
#: Where A2A clients look for the agent card.
CARD_PATH: Final = "/.well-known/agent-card.json"
#: The A2A protocol version served.
PROTOCOL_VERSION: Final = "1.0"
#: The request header in which a client names the A2A version it speaks.
VERSION_HEADER: Final = "a2a-version"
#: The agent card's name of the bearer-token security scheme.
SECURITY_SCHEME: Final = "edgeToken"
#: Largest request body (bytes): a ``file_write``'s content fits.
MAX_BODY: Final = 8 * 1024 * 1024
#: Tasks in a ``ListTasks`` page when the request gives no ``pageSize``.
DEFAULT_PAGE_SIZE: Final = 50
#: The most tasks in a ``ListTasks`` page (a larger ``pageSize`` is cut to this).
MAX_PAGE_SIZE: Final = 100
#: The longest ``"timeout"`` a message may give (seconds).
MAX_TIMEOUT: Final = 7 * 24 * 3600.0
#: The id of the artifact that holds a completed task's output.
OUTPUT_ARTIFACT: Final = "output"
#: The deadline of a task handed to a remote agent when the message gives no ``"timeout"``
#: (seconds; ``agent_ask``'s default, ``edge.agents.relay.ASK_TIMEOUT``).
REMOTE_TIMEOUT: Final = 60.0
#: The longest ``"timeout"`` of a task handed to a remote agent (seconds;
#: ``edge.agents.relay.MAX_ASK_TIMEOUT``).
MAX_REMOTE_TIMEOUT: Final = 3600.0
#: A whole number given as a string (``historyLength``, ``pageSize``, ``pageToken``):
#: ASCII digits, at most nine of them.
_DECIMAL: Final = re.compile(r"[0-9]{1,9}")

# JSON-RPC's error codes, then A2A's (a2a-sdk ``a2a.utils.errors.JSON_RPC_ERROR_CODE_MAP``).
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
TASK_NOT_FOUND: Final = -32001
TASK_NOT_CANCELABLE: Final = -32002
PUSH_NOTIFICATION_NOT_SUPPORTED: Final = -32003
UNSUPPORTED_OPERATION: Final = -32004
EXTENDED_CARD_NOT_CONFIGURED: Final = -32007
VERSION_NOT_SUPPORTED: Final = -32009

#: Each code's reason in the ``ErrorInfo`` detail.
REASONS: Final[Mapping[int, str]] = {
    PARSE_ERROR: "PARSE_ERROR",
    INVALID_REQUEST: "INVALID_REQUEST",
    METHOD_NOT_FOUND: "METHOD_NOT_FOUND",
    INVALID_PARAMS: "INVALID_PARAMS",
    INTERNAL_ERROR: "INTERNAL_ERROR",
    TASK_NOT_FOUND: "TASK_NOT_FOUND",
    TASK_NOT_CANCELABLE: "TASK_NOT_CANCELABLE",
    PUSH_NOTIFICATION_NOT_SUPPORTED: "PUSH_NOTIFICATION_NOT_SUPPORTED",
    UNSUPPORTED_OPERATION: "UNSUPPORTED_OPERATION",
    EXTENDED_CARD_NOT_CONFIGURED: "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
    VERSION_NOT_SUPPORTED: "VERSION_NOT_SUPPORTED",
}
#: The ``@type`` of the error detail that carries the reason.
ERROR_INFO_TYPE: Final = "type.googleapis.com/google.rpc.ErrorInfo"
#: The domain of A2A's error reasons.
ERROR_DOMAIN: Final = "a2a-protocol.org"

#: The methods edge serves.
METHODS: Final = frozenset(
    {"SendMessage", "SendStreamingMessage", "GetTask", "ListTasks", "CancelTask", "SubscribeToTask"}
)
#: The methods answered with a stream of server-sent events.
STREAMING_METHODS: Final = frozenset({"SendStreamingMessage", "SubscribeToTask"})
#: The push-notification methods, answered "not supported".
PUSH_METHODS: Final = frozenset(
    {
        "CreateTaskPushNotificationConfig",
        "GetTaskPushNotificationConfig",
        "ListTaskPushNotificationConfigs",
        "DeleteTaskPushNotificationConfig",
    }
)

#: Edge's task states by their A2A names.
STATES: Final[Mapping[TaskState, str]] = {
    TaskState.SUBMITTED: "TASK_STATE_SUBMITTED",
    TaskState.WORKING: "TASK_STATE_WORKING",
    TaskState.COMPLETED: "TASK_STATE_COMPLETED",
    TaskState.FAILED: "TASK_STATE_FAILED",
    TaskState.CANCELED: "TASK_STATE_CANCELED",
    TaskState.REJECTED: "TASK_STATE_REJECTED",
}
#: A2A's states edge's tasks never are in (a ``ListTasks`` filter on them matches nothing).
OTHER_STATES: Final = frozenset({"TASK_STATE_INPUT_REQUIRED", "TASK_STATE_AUTH_REQUIRED"})
#: How a message names its tool, for the errors that say it is missing.
HOW_TO_NAME: Final = (
    'name the tool with a data part {"tool": NAME, "args": {...}} (or the same object as '
    "the message's metadata); the agent card's skills are the tools"
)

RequestId = str | int | None


@dataclass(frozen=True, slots=True)
class RpcError:
    """A JSON-RPC error: its code and edge's message."""

    code: int
    message: str

    def to_json(self, request_id: RequestId) -> dict[str, Any]:
        """The whole JSON-RPC error response for the request ``request_id``."""
        detail = {
            "@type": ERROR_INFO_TYPE,
            "reason": REASONS.get(self.code, "UNKNOWN_ERROR"),
            "domain": ERROR_DOMAIN,
            "metadata": {},
        }
        error = {"code": self.code, "message": self.message, "data": [detail]}
        return {"jsonrpc": "2.0", "id": request_id, "error": error}


@dataclass(frozen=True, slots=True)
class RpcCall:
    """A well-formed JSON-RPC request."""

    id: RequestId
    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RpcFailure:
    """A request that cannot be served as it is: the id to answer (if known), the error."""

    id: RequestId
    error: RpcError

    def to_json(self) -> dict[str, Any]:
        return self.error.to_json(self.id)


def reply(request_id: RequestId, result: Any) -> dict[str, Any]:
    """A JSON-RPC success response."""
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def parse_call(body: bytes) -> RpcCall | RpcFailure:
    """A request body as a JSON-RPC call (a single request object, ``"jsonrpc": "2.0"``).

    Batches are refused; ``params`` may be absent (``{}``) but must be an object.
    ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's decoder takes) are not
    JSON: a body with one is a parse error, as no answer could carry it back.
    """
    try:
        data = strict_loads(body)
    except (ValueError, RecursionError) as exc:
        return RpcFailure(None, RpcError(PARSE_ERROR, f"the body is not valid JSON: {exc}"))
    if isinstance(data, list):
        return RpcFailure(None, RpcError(INVALID_REQUEST, "batch requests are not supported"))
    if not isinstance(data, dict):
        return RpcFailure(None, RpcError(INVALID_REQUEST, "a JSON-RPC request is an object"))
    request_id = data.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int | None):
        return RpcFailure(
            None, RpcError(INVALID_REQUEST, '"id" must be a string, an integer or null')
        )
    if data.get("jsonrpc") != "2.0":
        return RpcFailure(request_id, RpcError(INVALID_REQUEST, '"jsonrpc" must be "2.0"'))
    method = data.get("method")
    if not isinstance(method, str) or not method:
        return RpcFailure(request_id, RpcError(INVALID_REQUEST, '"method" must be a method name'))
    params = data.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return RpcFailure(request_id, RpcError(INVALID_PARAMS, '"params" must be an object'))
    return RpcCall(request_id, method, params)


def method_problem(method: str) -> RpcError | None:
    """Why ``method`` is not served (``None``: it is)."""
    if method in METHODS:
        return None
    if method in PUSH_METHODS:
        return RpcError(
            PUSH_NOTIFICATION_NOT_SUPPORTED,
            "push notifications are not supported by this edge: follow a task with "
            "SendStreamingMessage or SubscribeToTask, or poll it with GetTask",
        )
    if method == "GetExtendedAgentCard":
        return RpcError(
            EXTENDED_CARD_NOT_CONFIGURED, "this edge has no extended agent card: its card is all"
        )
    served = ", ".join(sorted(METHODS))
    return RpcError(METHOD_NOT_FOUND, f"no method {method!r}; this edge serves {served}")


def version_problem(header: str | None) -> RpcError | None:
    """Why the A2A version a request names (its ``A2A-Version`` header) is not served
    (``None``: it is 1.0, any patch, or not named)."""
    if header is None or not header.strip():
        return None
    numbers = header.strip().split(".")
    try:
        major, minor = int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0
    except ValueError:
        major, minor = -1, -1
    if (major, minor) == (1, 0):
        return None
    return RpcError(
        VERSION_NOT_SUPPORTED,
        f"A2A version {header.strip()!r} is not supported: this edge speaks {PROTOCOL_VERSION}",
    )


# --- requests ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Work:
    """What a ``SendMessage`` asks for: one tool run, here or by a remote agent."""

    skill: str
    args: dict[str, Any]
    #: The remote agent (its id or name) to hand the task to; ``None``: this edge.
    agent: str | None = None
    #: Seconds the task may take, from now (``None``: the tool's own timeout; a task for a
    #: remote agent always has one, ``REMOTE_TIMEOUT`` unless the message says).
    timeout: float | None = None
    context_id: str | None = None
    #: The task the message says it continues (edge's tasks take no more messages).
    task_id: str | None = None
    #: ``configuration.returnImmediately``: answer once the task is recorded.
    return_immediately: bool = False
    #: ``configuration.historyLength``.
    history_length: int | None = None


def parse_send(params: Mapping[str, Any]) -> Work | RpcError:
    """The work a ``SendMessage``/``SendStreamingMessage`` request names (module docstring)."""
    message = params.get("message")
    if not isinstance(message, dict):
        return RpcError(INVALID_PARAMS, '"message" must be a Message object')
    parts = message.get("parts", [])
    if not isinstance(parts, list):
        return RpcError(INVALID_PARAMS, '"message.parts" must be a list of parts')
    named = [
        part["data"]
        for part in parts
        if isinstance(part, dict)
        and isinstance(part.get("data"), dict)
        and _names_tool(part["data"])
    ]
    metadata = message.get("metadata")
    if isinstance(metadata, dict) and _names_tool(metadata):
        named.append(metadata)
    if not named:
        return RpcError(INVALID_PARAMS, f"the message names no tool: {HOW_TO_NAME}")
    if len(named) > 1:
        return RpcError(INVALID_PARAMS, "the message names more than one tool: a task runs one")
    work = _work(named[0])
    if isinstance(work, RpcError):
        return work
    context_id = message.get("contextId") or None
    task_id = message.get("taskId") or None
    if not isinstance(context_id, str | None) or not isinstance(task_id, str | None):
        return RpcError(INVALID_PARAMS, '"contextId" and "taskId" must be strings')
    configuration = params.get("configuration") or {}
    if not isinstance(configuration, dict):
        return RpcError(INVALID_PARAMS, '"configuration" must be an object')
    immediately = configuration.get("returnImmediately", False)
    if not isinstance(immediately, bool):
        return RpcError(INVALID_PARAMS, '"configuration.returnImmediately" must be true or false')
    history = parse_history(configuration.get("historyLength"))
    if isinstance(history, RpcError):
        return history
    skill, args, agent, timeout = work
    return Work(skill, whole_numbers(args), agent, timeout, context_id, task_id, immediately,
                history)  # fmt: skip


def whole_numbers(value: Any) -> Any:
    """``value`` with every whole float made an int, at any depth.

    A data part is a protobuf ``Struct``, which carries every number as a double:
    an SDK client's ``{"n": 3}`` arrives as ``{"n": 3.0}``. A tool's integer
    argument is given back as the integer it was.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


def _names_tool(data: Mapping[str, Any]) -> bool:
    return "tool" in data or "skill" in data


def _work(
    named: Mapping[str, Any],
) -> tuple[str, dict[str, Any], str | None, float | None] | RpcError:
    """The tool, arguments, agent and timeout of a ``{"tool", "args", ...}`` object."""
    tool, skill = named.get("tool"), named.get("skill")
    if tool is not None and skill is not None and tool != skill:
        return RpcError(INVALID_PARAMS, '"tool" and "skill" name different tools')
    name = tool if tool is not None else skill
    if not isinstance(name, str) or not name:
        return RpcError(INVALID_PARAMS, f'"tool" must be a tool name: {HOW_TO_NAME}')
    args = named.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return RpcError(INVALID_PARAMS, f'"args" of {name} must be a JSON object')
    agent = named.get("agent")
    if agent is not None and (not isinstance(agent, str) or not agent.strip()):
        return RpcError(INVALID_PARAMS, '"agent" must be an agent id or name, or "local"')
    if isinstance(agent, str) and agent.strip() == "local":
        agent = None
    agent = agent.strip() if agent else None
    most = MAX_TIMEOUT if agent is None else MAX_REMOTE_TIMEOUT
    timeout = named.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= most
    ):
        where = "" if agent is None else " for a remote agent"
        return RpcError(
            INVALID_PARAMS,
            f'"timeout" must be a number of seconds above 0, at most {most:g}{where}',
        )
    if timeout is None and agent is not None:  # a remote agent may never answer
        timeout = REMOTE_TIMEOUT
    return name, args, agent, None if timeout is None else float(timeout)


def parse_history(value: Any) -> int | RpcError | None:
    """A ``historyLength``: ``None`` (all of it), or how many of the latest messages."""
    if value is None:
        return None
    value = _decimal(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return RpcError(INVALID_PARAMS, '"historyLength" must be a whole number, 0 or more')
    return value


def _decimal(value: Any) -> Any:
    """A whole number given as a string (protobuf's JSON of an ``int64``) as the int it
    is; anything else (other digits than ASCII ones, too many) as it is."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return int(value)
    return value


def parse_task_id(params: Mapping[str, Any]) -> str | RpcError:
    """The task id of a ``GetTask``, ``CancelTask`` or ``SubscribeToTask`` request."""
    task_id = params.get("id")
    if not isinstance(task_id, str) or not task_id:
        return RpcError(INVALID_PARAMS, '"id" must be a task id')
    return task_id


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """A ``ListTasks`` request: its filters and the page it asks for."""

    context_id: str | None = None
    #: The A2A state name to match (``None``: any).
    state: str | None = None
    #: Only tasks updated after this (epoch seconds).
    updated_after: float | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    #: Where the page starts in the newest-first list (the page token).
    offset: int = 0
    history_length: int | None = None
    include_artifacts: bool = False

    def page(self, tasks: Sequence[AgentTask]) -> dict[str, Any]:
        """The ``ListTasksResponse`` for ``tasks`` (every task of the context, newest first)."""
        matching = [task for task in tasks if self._matches(task)]
        chosen = matching[self.offset : self.offset + self.page_size]
        more = self.offset + self.page_size < len(matching)
        return {
            "tasks": [
                task_json(
                    task,
                    history_length=self.history_length,
                    include_artifacts=self.include_artifacts,
                )
                for task in chosen
            ],
            "nextPageToken": str(self.offset + self.page_size) if more else "",
            "pageSize": self.page_size,
            "totalSize": len(matching),
        }

    def _matches(self, task: AgentTask) -> bool:
        if self.context_id is not None and task.context_id != self.context_id:
            return False
        if self.state is not None and STATES.get(task.state) != self.state:
            return False
        return self.updated_after is None or task.updated_at > self.updated_after


def parse_list(params: Mapping[str, Any]) -> TaskQuery | RpcError:
    """A ``ListTasks`` request: ``contextId``, ``status``, ``statusTimestampAfter``,
    ``pageSize`` (cut to ``MAX_PAGE_SIZE``), ``pageToken``, ``historyLength``,
    ``includeArtifacts``."""
    context_id = params.get("contextId") or None
    if not isinstance(context_id, str | None):
        return RpcError(INVALID_PARAMS, '"contextId" must be a string')
    state = params.get("status") or None
    if state == "TASK_STATE_UNSPECIFIED":
        state = None
    if state is not None and not isinstance(state, str):
        return RpcError(INVALID_PARAMS, '"status" must be an A2A task state')
    if state is not None and state not in STATES.values() and state not in OTHER_STATES:
        return RpcError(INVALID_PARAMS, f'"status" {state!r} is not an A2A task state')
    size = _decimal(params.get("pageSize", 0))
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return RpcError(INVALID_PARAMS, '"pageSize" must be a whole number, 0 or more')
    token = params.get("pageToken") or ""
    if not isinstance(token, str) or (token and _DECIMAL.fullmatch(token) is None):
        return RpcError(INVALID_PARAMS, '"pageToken" must be one a ListTasks answer gave')
    history = parse_history(params.get("historyLength"))
    if isinstance(history, RpcError):
        return history
    artifacts = params.get("includeArtifacts", False)
    if not isinstance(artifacts, bool):
        return RpcError(INVALID_PARAMS, '"includeArtifacts" must be true or false')
    after = params.get("statusTimestampAfter")
    updated_after = None
    if after is not None:
        updated_after = _epoch(after)
        if updated_after is None:
            return RpcError(INVALID_PARAMS, '"statusTimestampAfter" must be an RFC 3339 time')
    return TaskQuery(
        context_id=context_id,
        state=state,
        updated_after=updated_after,
        page_size=min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        offset=int(token or 0),
        history_length=history,
        include_artifacts=artifacts,
    )


def _epoch(text: Any) -> float | None:
    """An RFC 3339 time as epoch seconds (``None``: not one)."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


#: Peers an error names when ``resolve_agent`` finds none.
_NAMED_PEERS: Final = 10


def resolve_agent(agent: str, peers: Iterable[Mapping[str, Any]]) -> str | RpcError:
    """The id of the remote agent ``agent`` names: its id, or the name or host name of
    exactly one peer (the agents the cloud last named). An agent the cloud did not name
    is refused at once (-32602, saying which it names), not handed on to wait for an
    answer that would never come."""
    peers = [p for p in peers if isinstance(p.get("id"), str) and p["id"]]
    if any(peer["id"] == agent for peer in peers):
        return agent
    named = [p for p in peers if agent in (p.get("name"), p.get("hostname"))]
    if len(named) == 1:
        return str(named[0]["id"])
    if named:
        ids = ", ".join(str(p["id"]) for p in named)
        return RpcError(
            INVALID_PARAMS, f"{len(named)} agents are named {agent!r} ({ids}): give its id"
        )
    if not peers:
        return RpcError(
            INVALID_PARAMS,
            f"no agent {agent!r} is known: the cloud has named no other agent (the tunnel "
            "is not connected, or no other agent is)",
        )
    known = ", ".join(f"{p.get('name') or p['id']} ({p['id']})" for p in peers[:_NAMED_PEERS]) + (
        ", ..." if len(peers) > _NAMED_PEERS else ""
    )
    return RpcError(INVALID_PARAMS, f"no agent {agent!r} is known: the cloud names these: {known}")


# --- tasks, as A2A shows them ------------------------------------------------------


def timestamp(epoch: float) -> str:
    """Epoch seconds as an RFC 3339 UTC time (protobuf's JSON ``Timestamp``)."""
    when = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return when.replace("+00:00", "Z")


def agent_message(task: AgentTask, text: str, key: str) -> dict[str, Any]:
    """A message from this edge about ``task``; ``key`` makes its id unique in the task."""
    return {
        "messageId": f"{task.id}-{key}",
        "contextId": task.context_id,
        "taskId": task.id,
        "role": "ROLE_AGENT",
        "parts": [{"text": text}],
    }


def request_message(task: AgentTask) -> dict[str, Any]:
    """The request ``task`` runs, as the message that names it (the first of its history)."""
    named: dict[str, Any] = {"tool": task.skill, "args": json_safe(task.args)}
    if task.agent is not None:
        named["agent"] = task.agent
    return {
        "messageId": f"{task.id}-request",
        "contextId": task.context_id,
        "taskId": task.id,
        "role": "ROLE_USER",
        "parts": [{"data": named}],
    }


def failure_text(task: AgentTask, result: Mapping[str, Any] | None = None) -> str | None:
    """Why ``task`` did not complete: edge's reason, else its result's error."""
    if task.reason:
        return task.reason
    result = result if result is not None else task.result
    error = result.get("error") if result else None
    return error if isinstance(error, str) else None


def progress_text(event: TaskEvent) -> str | None:
    """A progress event's line: its message, with ``3/10`` or ``30%`` when it counts."""
    count = None
    if event.progress is not None and event.total:
        count = f"{event.progress:g}/{event.total:g}"
    elif event.progress is not None:
        count = f"{event.progress:g}"
    if event.message and count:
        return f"{event.message} ({count})"
    return event.message or count


def output_artifact(task: AgentTask, result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The artifact of a completed task's output (its other result fields as metadata)."""
    if not result or not isinstance(result.get("output"), str):
        return None
    artifact: dict[str, Any] = {
        "artifactId": OUTPUT_ARTIFACT,
        "name": OUTPUT_ARTIFACT,
        "parts": [{"text": result["output"]}],
    }
    extra = {k: json_safe(v) for k, v in result.items() if k != "output" and _json_value(v)}
    if extra:
        artifact["metadata"] = extra
    return artifact


def json_safe(value: Any) -> Any:
    """``value`` with each NaN or infinity (which JSON cannot carry) as its name, at any
    depth: a task whose arguments came with one still shows."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _json_value(value: Any) -> bool:
    """Whether ``value`` is one protobuf's ``Struct`` carries (no NaN or infinity)."""
    return not (isinstance(value, float) and not math.isfinite(value))


def status_json(
    task: AgentTask, state: TaskState, at: float, text: str | None, key: str
) -> dict[str, Any]:
    """A ``TaskStatus``: the state, when, and a message with ``text`` if there is one."""
    status: dict[str, Any] = {"state": STATES[state], "timestamp": timestamp(at)}
    if text:
        status["message"] = agent_message(task, text, key)
    return status


def _status_text(task: AgentTask) -> str | None:
    """What the task's status message says: the reason it ended, else its latest progress."""
    if task.state in (TaskState.FAILED, TaskState.CANCELED, TaskState.REJECTED):
        return failure_text(task)
    if task.state is TaskState.COMPLETED:
        return None
    for event in reversed(task.events):
        text = progress_text(event)
        if text:
            return text
    return None


def _metadata(task: AgentTask) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "tool": task.skill,
        "origin": task.origin,
        "createdAt": timestamp(task.created_at),
    }
    if task.agent is not None:
        metadata["agent"] = task.agent
    if task.deadline is not None:
        metadata["deadline"] = timestamp(task.deadline)
    return metadata


def history(task: AgentTask) -> list[dict[str, Any]]:
    """The task's messages: the request, then the progress lines edge kept."""
    messages = [request_message(task)]
    for event in task.events:
        text = progress_text(event) if not event.final else None
        if text:
            messages.append(agent_message(task, text, str(event.seq)))
    return messages


def task_json(
    task: AgentTask, *, history_length: int | None = None, include_artifacts: bool = True
) -> dict[str, Any]:
    """``task`` as an A2A ``Task``; ``history_length``: its latest messages only (0: none)."""
    out: dict[str, Any] = {
        "id": task.id,
        "contextId": task.context_id,
        "status": status_json(task, task.state, task.updated_at, _status_text(task), "status"),
    }
    if include_artifacts and task.state is TaskState.COMPLETED:
        artifact = output_artifact(task, task.result)
        if artifact is not None:
            out["artifacts"] = [artifact]
    messages = history(task)
    if history_length is not None:
        messages = messages[len(messages) - history_length :] if history_length else []
    if messages:
        out["history"] = messages
    out["metadata"] = _metadata(task)
    return out


def stream_updates(task: AgentTask, event: TaskEvent) -> list[dict[str, Any]]:
    """The ``StreamResponse`` objects an event of ``task`` makes: a status update, after
    the output's artifact update when the task completed."""
    updates: list[dict[str, Any]] = []
    ids = {"taskId": task.id, "contextId": task.context_id}
    if event.final and event.state is TaskState.COMPLETED:
        artifact = output_artifact(task, event.result or task.result)
        if artifact is not None:
            updates.append({"artifactUpdate": {**ids, "artifact": artifact, "lastChunk": True}})
    if event.final:
        text = (
            None
            if event.state is TaskState.COMPLETED
            else (failure_text(task, event.result) or event.message)
        )
    else:
        text = progress_text(event)
    update: dict[str, Any] = {
        **ids,
        "status": status_json(task, event.state, event.at, text, str(event.seq)),
    }
    metadata: dict[str, Any] = {"seq": event.seq}
    if event.progress is not None and math.isfinite(event.progress):
        metadata["progress"] = event.progress
    if event.total is not None and math.isfinite(event.total):
        metadata["total"] = event.total
    update["metadata"] = metadata
    updates.append({"statusUpdate": update})
    return updates


def task_brief(task: AgentTask) -> dict[str, Any]:
    """``task`` for ``GET /agents``: what it is and how it went, not its arguments or output."""
    brief = task.to_json()
    brief.pop("args", None)
    brief.pop("result", None)
    return brief


# --- the agent card ----------------------------------------------------------------


def agent_card(
    *,
    name: str,
    url: str,
    version: str,
    tools: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """The agent card: this edge, its endpoint at ``url``, its bearer scheme, its tools as
    skills (``tools``: ``{"name", "description", "input_schema"}`` each)."""
    return {
        "name": name,
        "description": (
            "An edge node: it runs tools on this machine (files, terminal, search, MCP servers, "
            "plugins) and can hand a task to the other agents its cloud knows. One task runs "
            f'one tool: {HOW_TO_NAME}; add "agent": ID to hand it to a remote agent, '
            '"timeout": SECONDS to bound it. Requests need "Authorization: Bearer TOKEN" '
            "(edge agents token prints it). Push notifications are not supported."
        ),
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": PROTOCOL_VERSION}
        ],
        "version": version,
        "capabilities": {"streaming": True, "pushNotifications": False, "extendedAgentCard": False},
        "securitySchemes": {
            SECURITY_SCHEME: {
                "httpAuthSecurityScheme": {
                    "scheme": "Bearer",
                    "description": "the token in a2a.token of edge's state directory "
                    "(edge agents token)",
                }
            }
        },
        "securityRequirements": [{"schemes": {SECURITY_SCHEME: {"list": []}}}],
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["text/plain"],
        "skills": [skill_json(tool) for tool in tools],
    }


def skill_json(tool: Mapping[str, Any]) -> dict[str, Any]:
    """One tool as an ``AgentSkill``: its description says how to call it and its arguments."""
    name = str(tool.get("name", ""))
    schema = tool.get("input_schema") or {}
    summary = argument_summary(schema if isinstance(schema, dict) else {})
    description = str(tool.get("description") or name).strip()
    call = f'Call it with a data part {{"tool": "{name}", "args": {{...}}}}'
    description = (
        f"{description}\n\n{call}; args: {summary}." if summary else f"{description}\n\n{call}."
    )
    return {
        "id": name,
        "name": name,
        "description": description,
        "tags": ["tool", name.split("__", 1)[0] if "__" in name else "edge"],
        "examples": [json.dumps({"tool": name, "args": example_args(schema)}, ensure_ascii=False)],
        "inputModes": ["application/json"],
        "outputModes": ["text/plain"],
    }


def _properties(schema: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    properties = schema.get("properties")
    required = schema.get("required")
    return (
        properties if isinstance(properties, dict) else {},
        {r for r in required if isinstance(r, str)} if isinstance(required, list) else set(),
    )


def argument_summary(schema: Mapping[str, Any]) -> str:
    """A JSON schema's arguments in a line: ``path (string, required), offset (integer)``."""
    properties, required = _properties(schema)
    entries = []
    for key, spec in properties.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        kinds = "/".join(kind) if isinstance(kind, list) else kind
        traits = [t for t in (kinds, "required" if key in required else None) if t]
        entries.append(f"{key} ({', '.join(traits)})" if traits else key)
    return ", ".join(entries)


#: A placeholder of each JSON type, for the skills' examples.
_PLACEHOLDERS: Final[Mapping[str, Any]] = {
    "string": "...",
    "integer": 0,
    "number": 0,
    "boolean": False,
    "array": [],
    "object": {},
}


def example_args(schema: Any) -> dict[str, Any]:
    """Arguments for an example call: each required one with a placeholder of its type."""
    if not isinstance(schema, dict):
        return {}
    properties, required = _properties(schema)
    example: dict[str, Any] = {}
    for key in sorted(required):
        spec = properties.get(key)
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        example[key] = _PLACEHOLDERS.get(kind, "...") if isinstance(kind, str) else "..."
    return example
