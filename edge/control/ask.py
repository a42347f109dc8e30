"""The model route: a question to the cloud's model gateway, answered as a stream of events.

::

    POST /ask   {"messages": [OpenAI chat messages], "model"?: "..."}
                → 200 application/x-ndjson: one event per line (``edge.gateway.loop``) as
                  they happen, the last one "done" or "error";
                → 409 {"error"} when edge cannot ask now (no token, no gateway), 400 for a bad body

The daemon holds the token and talks to the gateway; ``edge ask``/``chat`` read
the stream. The model's tool calls run in the daemon, under the cloud's
approval and the local policy. A client that goes away (Ctrl-C) stops the
question: the turn and its running tool calls are cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import trio

from ..errors import BadRequest, GatewayError
from ..protocol import encode
from .body import json_reply, read_json

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from .guard import Receive, Scope, Send

log = logging.getLogger(__name__)

#: Largest question body: a conversation with tool results in it (bytes).
MAX_ASK_BODY: Final = 8 * 1024 * 1024
#: Most messages a conversation may hold.
MAX_MESSAGES: Final = 4096
#: The roles a message may have.
ROLES: Final = frozenset({"system", "user", "assistant", "tool"})

Emit = Callable[[dict[str, Any]], Awaitable[None]]


class AskControl(Protocol):
    """What ``/ask`` drives: the daemon's side of a question."""

    def ask_problem(self) -> str | None:
        """Why a question cannot be asked now (no token, no gateway), or ``None``."""
        ...

    async def ask(self, messages: list[dict[str, Any]], model: str | None, emit: Emit) -> None:
        """Ask until the model answers, telling ``emit`` each event.

        Raises:
            GatewayError: the question failed (told to the client as an "error" event).
        """
        ...


def routes(target: AskControl) -> list[Route]:
    """POST /ask over ``target``."""
    from starlette.routing import Route

    async def ask(request: Request) -> Response:
        messages, model = parse_question(await read_json(request, MAX_ASK_BODY))
        problem = target.ask_problem()
        if problem is not None:
            return json_reply({"error": problem}, status_code=409)
        return cast("Response", _EventStream(target, messages, model))

    return [Route("/ask", ask, methods=["POST"])]


def parse_question(data: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """A question body's messages and model.

    Raises:
        BadRequest: no messages, too many, one that is not an object with a known role,
            or a model that is not a string.
    """
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise BadRequest(f'"messages" must be a list of 1 to {MAX_MESSAGES} chat messages')
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise BadRequest(
                f"messages[{i}] must be an object whose role is one of {', '.join(sorted(ROLES))}"
            )
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise BadRequest('"model" must be a non-empty string')
    return messages, model


class _EventStream:
    """The answer as NDJSON, written as the events come (an ASGI response, as Starlette's are);
    stops the question when the client goes away."""

    def __init__(
        self, target: AskControl, messages: list[dict[str, Any]], model: str | None
    ) -> None:
        self.target = target
        self.messages = messages
        self.model = model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"application/x-ndjson"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def emit(event: dict[str, Any]) -> None:
            line = encode(event).encode() + b"\n"
            await send({"type": "http.response.body", "body": line, "more_body": True})

        gone = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope, gone)
            try:
                await self.target.ask(self.messages, self.model, emit)
            except GatewayError as exc:
                await emit({"type": "error", "message": str(exc)})
            except Exception as exc:  # a bug: said, logged, and the stream still ends well
                log.exception("POST /ask failed")
                await emit({"type": "error", "message": f"internal error: {type(exc).__name__}"})
            nursery.cancel_scope.cancel()
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _cancel_on_disconnect(
    receive: Receive, scope: trio.CancelScope, gone: trio.Event
) -> None:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            gone.set()
            scope.cancel()
            return
