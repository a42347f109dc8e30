"""The agents' routes: the local A2A endpoint, its agent card, and what the CLI lists.

::

    GET  /.well-known/agent-card.json   the agent card (edge.agents.a2a): this edge, its
                                        tools as skills, the endpoint, the bearer scheme
    POST /a2a                           A2A v1.0 JSON-RPC: SendMessage, SendStreamingMessage,
                                        GetTask, ListTasks, CancelTask, SubscribeToTask
                                        (needs ``Authorization: Bearer`` the A2A token)
    GET  /agents                        this edge's agent id and name, the remote agents the
                                        cloud named, the tasks in flight and the last finished
                                        (never their arguments or output)

All three sit behind the control API's guard (this user's processes, loopback
Host, allowed Origins). The card needs no token: a client reads it first, to
learn where the endpoint is and that it takes a bearer token. ``POST /a2a``
without the token (``edge.agents.token``), or with another one, is answered
401 with a JSON-RPC error, before its body is read. Browsers cannot send the
token from another origin at all: the CORS rules admit no ``Authorization``
header.

The two streaming methods answer ``text/event-stream``: one JSON-RPC response
per event, each a ``StreamResponse``: the task first, then its status updates
(and the output's artifact before the final one); the stream ends after the
task's final state. A client that goes away stops its stream, not the task
(A2A's rule): only ``CancelTask`` cancels one, and then its tool call and its
processes really stop (``AgentTasks.cancel``). A blocking ``SendMessage``
answers once the task has ended (or at once with ``returnImmediately``).
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import trio

from ..agents.a2a import (
    A2A_PATH,
    CARD_PATH,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MAX_BODY,
    TASK_NOT_CANCELABLE,
    TASK_NOT_FOUND,
    UNSUPPORTED_OPERATION,
    VERSION_HEADER,
    RpcError,
    RpcFailure,
    Work,
    agent_card,
    method_problem,
    parse_call,
    parse_history,
    parse_list,
    parse_send,
    parse_task_id,
    reply,
    resolve_agent,
    stream_updates,
    task_brief,
    task_json,
    version_problem,
)
from ..agents.token import bearer_matches
from ..protocol import encode
from ..protocol.a2a import TERMINAL
from .body import json_reply

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from ..agents.tasks import AgentTask
    from ..protocol.a2a import TaskEvent
    from .guard import Receive, Scope, Send

log = logging.getLogger(__name__)

#: What a task run for a local A2A client is recorded as having come from.
ORIGIN: Final = "a2a"
#: Tasks ``ListTasks`` looks through (the newest; AgentTasks keeps at most this many).
MAX_LISTED: Final = 1000
#: Finished tasks ``GET /agents`` shows (the newest), besides those in flight.
RECENT_FINISHED: Final = 20
#: The reason of a task canceled through ``CancelTask``.
CANCELED_BY_CLIENT: Final = "canceled by the A2A client"
#: The answer to a request without the right bearer token.
TOKEN_REFUSED: Final = (
    "this endpoint needs Authorization: Bearer TOKEN, the token in a2a.token of edge's "
    "state directory (edge agents token prints it)"
)


class AgentBoard(Protocol):
    """The agents' tasks as the routes drive them (``edge.agents.tasks.AgentTasks``)."""

    agent_id: str
    name: str

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
    ) -> AgentTask: ...

    def get(self, task_id: str) -> AgentTask | None: ...

    def list(self, *, context_id: str | None = None, limit: int = 100) -> list[AgentTask]: ...

    def cancel(
        self, task_id: str, reason: str = "canceled by the requester"
    ) -> AgentTask | None: ...

    def subscribe(self, task_id: str) -> AbstractAsyncContextManager[AsyncIterator[TaskEvent]]: ...

    async def wait(self, task_id: str) -> AgentTask: ...

    def peers(self) -> builtins.list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class AgentsControl:
    """What the agents' routes drive."""

    #: The tasks (``AgentTasks``).
    tasks: AgentBoard
    #: The A2A bearer token (``edge.agents.token``) requests to ``POST /a2a`` must carry.
    token: str = field(repr=False)
    #: The tools a local A2A client may run, for the card's skills:
    #: ``{"name", "description", "input_schema"}`` each.
    tools: Callable[[], list[dict[str, Any]]]
    #: Edge's version, the card's.
    version: str


def routes(target: AgentsControl) -> list[Route]:
    """The agent card, ``POST /a2a`` and ``GET /agents`` over ``target``."""
    from starlette.routing import Route

    board = target.tasks

    async def card(request: Request) -> Response:
        return json_reply(
            agent_card(
                name=f"edge {board.name}",
                url=endpoint_url(request.headers.get("host"), request.scope.get("server")),
                version=target.version,
                tools=target.tools(),
            )
        )

    async def agents(request: Request) -> Response:
        tasks = board.list(limit=MAX_LISTED)
        shown = [t for t in tasks if t.state not in TERMINAL]
        shown += [t for t in tasks if t.state in TERMINAL][:RECENT_FINISHED]
        return json_reply(
            {
                "agentId": board.agent_id,
                "name": board.name,
                "peers": board.peers(),
                "tasks": [task_brief(t) for t in shown],
            }
        )

    async def rpc(request: Request) -> Response:
        if not bearer_matches(request.headers.get("authorization"), target.token):
            return _answer(RpcError(INVALID_REQUEST, TOKEN_REFUSED).to_json(None), 401)
        body = await _read_body(request)
        call = parse_call(body) if isinstance(body, bytes) else body
        if isinstance(call, RpcFailure):
            return _answer(call.to_json())
        problem = method_problem(call.method) or version_problem(
            request.headers.get(VERSION_HEADER)
        )
        if problem is not None:
            return _answer(problem.to_json(call.id))
        served = _Call(board, call.id, request.receive)
        try:
            return await served.serve(call.method, call.params)
        except Exception as exc:  # a bug: answered, logged, and the endpoint keeps serving
            log.exception("A2A %s failed", call.method)
            why = f"internal error: {type(exc).__name__}"
            return _answer(RpcError(INTERNAL_ERROR, why).to_json(call.id))

    return [
        Route(CARD_PATH, card, methods=["GET"]),
        Route(A2A_PATH, rpc, methods=["POST"]),
        Route("/agents", agents, methods=["GET"]),
    ]


def endpoint_url(host: str | None, server: Any) -> str:
    """The A2A endpoint's URL for the agent card: the host name the client used (its
    ``Host``, a loopback name: the guard saw to it) with the port the control API really
    listens on (the ASGI ``server``), as a ``Host`` without a port would say 80."""
    name = "127.0.0.1"
    if host:
        host = host.strip()
        if host.startswith("["):
            name = host[: host.find("]") + 1] if "]" in host else name
        else:
            name = host.rpartition(":")[0] if host.count(":") == 1 else host or name
    port = None
    if isinstance(server, list | tuple) and len(server) == 2 and isinstance(server[1], int):
        port = server[1]
        if not host and isinstance(server[0], str) and server[0]:
            name = f"[{server[0]}]" if ":" in server[0] else server[0]
    return f"http://{name}{'' if port is None else f':{port}'}{A2A_PATH}"


def _answer(content: dict[str, Any], status: int = 200) -> Response:
    """A JSON-RPC answer (200 for errors too, as JSON-RPC over HTTP has it; 401 for the token)."""
    from starlette.responses import Response

    headers = {"cache-control": "no-store"}
    if status == 401:
        headers["www-authenticate"] = 'Bearer realm="edge"'
    return Response(
        encode(content), status_code=status, media_type="application/json", headers=headers
    )


async def _read_body(request: Request) -> bytes | RpcFailure:
    """The request's body, or the failure of one over ``MAX_BODY`` bytes."""
    too_large = RpcFailure(None, RpcError(INVALID_REQUEST, f"the body is over {MAX_BODY} bytes"))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return too_large
    from starlette.requests import ClientDisconnect

    chunks: list[bytes] = []
    size = 0
    try:
        async with aclosing(request.stream()) as stream:
            async for chunk in stream:
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY:
                    return too_large
    except ClientDisconnect:  # nobody reads the answer
        return RpcFailure(None, RpcError(INVALID_REQUEST, "the client went away"))
    return b"".join(chunks)


class _Call:
    """One JSON-RPC call on the board: the method's handler, the answer it makes."""

    def __init__(self, board: AgentBoard, request_id: str | int | None, receive: Receive) -> None:
        self.board = board
        self.id = request_id
        self.receive = receive

    def error(self, error: RpcError) -> Response:
        return _answer(error.to_json(self.id))

    def result(self, result: Any) -> Response:
        return _answer(reply(self.id, result))

    async def serve(self, method: str, params: dict[str, Any]) -> Response:
        handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Response]]] = {
            "SendMessage": self.send_message,
            "SendStreamingMessage": self.send_streaming,
            "GetTask": self.get_task,
            "ListTasks": self.list_tasks,
            "CancelTask": self.cancel_task,
            "SubscribeToTask": self.subscribe,
        }
        return await handlers[method](params)

    async def submit(self, work: Work) -> AgentTask | RpcError:
        """A task for ``work``, recorded (or why there is none)."""
        if work.task_id is not None:
            if self.board.get(work.task_id) is None:
                return RpcError(TASK_NOT_FOUND, f"no task {work.task_id!r} on this edge")
            return RpcError(
                UNSUPPORTED_OPERATION,
                f"task {work.task_id!r} takes no more messages (edge's tasks take no input): "
                "send a new message without a taskId",
            )
        agent = None
        if work.agent is not None and work.agent != self.board.agent_id:
            found = resolve_agent(work.agent, self.board.peers())
            if isinstance(found, RpcError):
                return found
            agent = found
        deadline = None if work.timeout is None else time.time() + work.timeout
        task = await self.board.submit(
            skill=work.skill,
            args=work.args,
            origin=ORIGIN,
            agent=agent,
            deadline=deadline,
            context_id=work.context_id,
        )
        log.debug("A2A: task %s runs %s%s", task.id, task.skill, f" on {agent}" if agent else "")
        return task

    async def send_message(self, params: dict[str, Any]) -> Response:
        work = parse_send(params)
        if isinstance(work, RpcError):
            return self.error(work)
        task = await self.submit(work)
        if isinstance(task, RpcError):
            return self.error(task)
        if not work.return_immediately and task.state not in TERMINAL:
            async with trio.open_nursery() as nursery:  # the client going away ends the wait only
                nursery.start_soon(_cancel_on_disconnect, self.receive, nursery.cancel_scope, None)
                await self.board.wait(task.id)
                nursery.cancel_scope.cancel()
        return self.result({"task": task_json(task, history_length=work.history_length)})

    async def send_streaming(self, params: dict[str, Any]) -> Response:
        work = parse_send(params)
        if isinstance(work, RpcError):
            return self.error(work)
        task = await self.submit(work)
        if isinstance(task, RpcError):
            return self.error(task)
        return _stream(_TaskStream(self.board, task.id, self.id, work.history_length))

    def _task(self, params: dict[str, Any]) -> AgentTask | RpcError:
        task_id = parse_task_id(params)
        if isinstance(task_id, RpcError):
            return task_id
        task = self.board.get(task_id)
        if task is None:
            return RpcError(TASK_NOT_FOUND, f"no task {task_id!r} on this edge")
        return task

    async def get_task(self, params: dict[str, Any]) -> Response:
        task = self._task(params)
        if isinstance(task, RpcError):
            return self.error(task)
        history = parse_history(params.get("historyLength"))
        if isinstance(history, RpcError):
            return self.error(history)
        return self.result(task_json(task, history_length=history))

    async def list_tasks(self, params: dict[str, Any]) -> Response:
        query = parse_list(params)
        if isinstance(query, RpcError):
            return self.error(query)
        return self.result(
            query.page(self.board.list(context_id=query.context_id, limit=MAX_LISTED))
        )

    async def cancel_task(self, params: dict[str, Any]) -> Response:
        task = self._task(params)
        if isinstance(task, RpcError):
            return self.error(task)
        if task.state in TERMINAL:
            return self.error(
                RpcError(TASK_NOT_CANCELABLE, f"task {task.id!r} has ended already ({task.state})")
            )
        self.board.cancel(task.id, CANCELED_BY_CLIENT)
        log.debug("A2A: task %s canceled by the client", task.id)
        return self.result(task_json(task))

    async def subscribe(self, params: dict[str, Any]) -> Response:
        task = self._task(params)
        if isinstance(task, RpcError):
            return self.error(task)
        if task.state in TERMINAL:
            return self.error(
                RpcError(
                    UNSUPPORTED_OPERATION,
                    f"task {task.id!r} has ended ({task.state}): nothing more will come; "
                    "GetTask tells how it ended",
                )
            )
        return _stream(_TaskStream(self.board, task.id, self.id, None))


def _stream(app: _TaskStream) -> Response:
    return cast("Response", app)  # an ASGI app, as Starlette's responses are


class _TaskStream:
    """A task's events as server-sent events of JSON-RPC responses (an ASGI response):
    the task first, then every change, until its final state; the client going away ends
    the stream (not the task)."""

    def __init__(
        self,
        board: AgentBoard,
        task_id: str,
        request_id: str | int | None,
        history_length: int | None,
    ) -> None:
        self.board = board
        self.task_id = task_id
        self.request_id = request_id
        self.history_length = history_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def emit(content: dict[str, Any], event: str | None = None) -> None:
            head = f"event: {event}\n" if event else ""
            chunk = f"{head}data: {encode(content)}\n\n".encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        gone = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope, gone)
            try:
                await self._events(emit)
            except Exception as exc:  # a bug: said, logged, and the stream still ends well
                log.exception("A2A stream of task %s failed", self.task_id)
                error = RpcError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
                await emit(error.to_json(self.request_id), "error")
            nursery.cancel_scope.cancel()
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _events(self, emit: Callable[..., Awaitable[None]]) -> None:
        try:
            subscription = self.board.subscribe(self.task_id)
        except KeyError:
            error = RpcError(TASK_NOT_FOUND, f"no task {self.task_id!r} on this edge")
            await emit(error.to_json(self.request_id), "error")
            return
        async with subscription as events:
            try:
                await self._follow(events, emit)
            finally:
                await _close(events)

    async def _follow(
        self, events: AsyncIterator[TaskEvent], emit: Callable[..., Awaitable[None]]
    ) -> None:
        """Emit the task as it is at the first event, then each later change, to the end."""
        shown = 0  # the last event the client has seen the effect of
        async for event in events:
            task = self.board.get(self.task_id)
            if task is None:  # forgotten meanwhile (the oldest go beyond the limit)
                return
            if shown == 0:  # the task as it is now (taken before the await), then what follows
                shown, ended = task.seq, task.state in TERMINAL
                snapshot = task_json(task, history_length=self.history_length)
                await emit(reply(self.request_id, {"task": snapshot}))
                if ended:
                    return
                continue
            if event.seq <= shown:  # already in the task the client was shown
                continue
            shown = event.seq
            for update in stream_updates(task, event):
                await emit(reply(self.request_id, update))


async def _close(events: AsyncIterator[TaskEvent]) -> None:
    """Close the subscription's iterator when it is an async generator left early (trio
    warns of one the garbage collector has to finish)."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


async def _cancel_on_disconnect(
    receive: Receive, scope: trio.CancelScope, gone: trio.Event | None
) -> None:
    """Cancel ``scope`` when the client goes away (the body has been read already)."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            if gone is not None:
                gone.set()
            scope.cancel()
            return
