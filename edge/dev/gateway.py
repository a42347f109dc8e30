"""A fake model gateway: a real HTTP server speaking the OpenAI chat API, answering from a script.

``FakeGateway`` serves ``POST /v1/chat/completions`` (streamed as server-sent
events with ``"stream": true``, else one ``chat.completion``) and ``GET
/v1/models`` with hypercorn on trio, like the cloud's model gateway (with
``tokens``: ``Authorization: Bearer`` required) or a local server such as
llama.cpp or Ollama (``tokens=None``: no authorization). Each chat request
takes the next ``Step`` of its script::

    gateway = FakeGateway(["dev-token"])
    url = await nursery.start(gateway.serve)          # http://127.0.0.1:PORT/v1
    gateway.script(Step(calls=(("grep", {"pattern": "x"}),), shape="no_index"),
                   Step(text="Found it."))

A step streams its text a word at a time, then its tool calls in one of the
imperfect shapes local servers send (``SHAPES``), or answers an HTTP error
status, breaks off with an error chunk, streams slowly, or stalls. With no
step left the answer is the default one (``default_step``): a summary of the
tool results when the last message is a tool message, a call when the last
user message reads ``/call NAME {JSON}``, else ``echo:`` and the user's text.
Every chat request is recorded (its body, and whether it was authorized; never
the token). Tests drive edge's gateway client against it over loopback;
``edge dev-cloud`` runs one beside the fake cloud.
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..config import format_hostport
from ..errors import ConfigError

__all__ = ["DEFAULT_MODEL", "SHAPES", "FakeGateway", "Step", "default_step"]

log = logging.getLogger(__name__)

#: The ways a step can stream its tool calls (see ``Step.shape``).
SHAPES: Final = (
    "standard",
    "no_index",
    "repeated_index",
    "no_id",
    "null_args",
    "odd_pieces",
    "args_object",
    "whole_again",
)
#: The model a step names unless told otherwise (and the one ``/v1/models`` lists).
DEFAULT_MODEL: Final = "fake-model"
#: Characters of each tool result quoted by the default answer.
TOOL_RESULT_CHARS: Final = 200
#: A word and the spaces after it: the pieces text is streamed in.
_WORDS: Final = re.compile(r"\s*\S+\s*|\s+")
#: ``/call NAME {JSON}`` in a user message.
_CALL: Final = re.compile(r"/call\s+(\S+)\s*(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted answer to one chat request.

    Attributes:
        text: the content, streamed a word at a time.
        calls: tool calls after the text: ``(name, arguments)``; a ``str`` is sent
            verbatim (so it can be invalid JSON), a dict as its JSON text.
        shape: how the calls are streamed: one of ``SHAPES``. ``standard``: index
            and id, arguments in 2-3 pieces; ``no_index``; ``repeated_index``
            (index 0 for every call, each a new id); ``no_id``; ``null_args``
            (``arguments: null`` before the real ones); ``odd_pieces`` (arguments a
            character at a time, the name in a delta of its own); ``args_object``
            (arguments as a JSON object, not a string); ``whole_again`` (the pieces,
            then the whole arguments string once more).
        status: answer this HTTP status with an OpenAI-shaped error body instead.
        error_after: after this many content chunks, send an ``{"error": ...}`` chunk
            and end the stream (no ``[DONE]``); a non-streamed request gets a 500.
        chunk_delay: seconds between chunks (finite, 0 or more; ``stall`` is the endless wait).
        stall: send the first chunk (nothing, if not streamed) and then nothing
            until the client goes away.
        model: the model named in the answer.
        finish_reason: ``None``: ``"tool_calls"`` when there are calls, else ``"stop"``.
    """

    text: str = ""
    calls: tuple[tuple[str, dict[str, Any] | str], ...] = ()
    shape: str = "standard"
    status: int | None = None
    error_after: int | None = None
    chunk_delay: float = 0.0
    stall: bool = False
    model: str = DEFAULT_MODEL
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r} (one of {', '.join(SHAPES)})")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status {self.status} is not an HTTP status")
        if self.error_after is not None and self.error_after < 0:
            raise ValueError("error_after must be 0 or more")
        if not math.isfinite(self.chunk_delay) or self.chunk_delay < 0:
            raise ValueError(f"chunk_delay must be finite and 0 or more, not {self.chunk_delay}")

    @property
    def finish(self) -> str:
        """The finish reason sent."""
        return self.finish_reason or ("tool_calls" if self.calls else "stop")


def default_step(messages: Sequence[Any]) -> Step:
    """The answer when the script is used up.

    The last message is a ``tool`` message: ``tool results: `` and the trailing tool
    messages' contents (each cut to ``TOOL_RESULT_CHARS``) joined with ``; ``. Else
    the last user message starts with ``/call NAME JSON``: a call of NAME with that
    JSON (sent verbatim; none: ``{}``). Else ``echo: `` and the last user message.
    """
    results: list[str] = []
    for message in reversed(messages):
        if not (isinstance(message, Mapping) and message.get("role") == "tool"):
            break
        results.append(_text_of(message.get("content"))[:TOOL_RESULT_CHARS])
    if results:
        return Step(text="tool results: " + "; ".join(reversed(results)))
    user = next(
        (m for m in reversed(messages) if isinstance(m, Mapping) and m.get("role") == "user"),
        None,
    )
    text = "" if user is None else _text_of(user.get("content"))
    command = _CALL.fullmatch(text.strip())
    if command is not None:
        return Step(calls=((command[1], command[2].strip() or "{}"),))
    return Step(text="echo: " + text)


def _text_of(content: object) -> str:
    """A message's content as text (a list of parts: their ``text`` joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return "" if content is None else json.dumps(content)


def _error_body(status: int, message: str) -> dict[str, Any]:
    """An OpenAI-shaped error body."""
    kind = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_error"}
    error_type = kind.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": error_type, "param": None, "code": status}}


def _arguments_text(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _thirds(text: str) -> list[str]:
    """``text`` in 2 or 3 pieces (fewer when it is shorter)."""
    if len(text) < 3:
        return [text] if text else []
    a, b = len(text) // 3, 2 * len(text) // 3
    return [text[:a], text[a:b], text[b:]]


def _call_deltas(
    shape: str, index: int, call_id: str, name: str, arguments: dict[str, Any] | str
) -> list[dict[str, Any]]:
    """One call's ``tool_calls`` entries, one per chunk, streamed in ``shape``."""
    raw = _arguments_text(arguments)

    def entry(first: bool, function: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if shape != "no_index":
            out["index"] = 0 if shape == "repeated_index" else index
        if first and shape != "no_id":
            out["id"] = call_id
        if first:
            out["type"] = "function"
        if function:
            out["function"] = function
        return out

    if shape == "args_object":
        value: object = arguments if isinstance(arguments, dict) else raw
        return [entry(True, {"name": name, "arguments": value})]
    if shape == "null_args":
        head = [entry(True, {"name": name, "arguments": None})]
    elif shape == "odd_pieces":
        head = [entry(True, {}), entry(False, {"name": name})]
        return head + [entry(False, {"arguments": ch}) for ch in raw]
    else:
        head = [entry(True, {"name": name, "arguments": ""})]
    pieces = [entry(False, {"arguments": piece}) for piece in _thirds(raw)]
    tail = [entry(False, {"arguments": raw})] if shape == "whole_again" and raw else []
    return head + pieces + tail


class FakeGateway:
    """An OpenAI-compatible chat endpoint over real HTTP, answering from a script.

    Args:
        tokens: the Bearer tokens it accepts; ``None``: no authorization (a local server).
    """

    def __init__(self, tokens: Iterable[str] | None = None) -> None:
        self.tokens: frozenset[str] | None = None if tokens is None else frozenset(tokens)
        #: Every chat request: its JSON body (if an object), plus ``authorized`` (it passed
        #: the token check, or none is needed) and ``bearer`` (it sent a Bearer token).
        self.requests: list[dict[str, Any]] = []
        #: Event streams being sent now (a client that went away is no longer counted).
        self.streams_open = 0
        #: Streams ended because the client went away.
        self.disconnects = 0
        self.url = ""
        self._steps: list[Step] = []
        self._completions = itertools.count(1)
        self._call_ids = itertools.count(1)
        self._changed = trio.Event()

    # -- scripting -----------------------------------------------------------------

    def script(self, *steps: Step) -> None:
        """Append steps: each chat request takes the next one."""
        self._steps.extend(steps)

    @property
    def steps_left(self) -> int:
        return len(self._steps)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` is true (checked after every request and stream end)."""
        while not predicate():
            await self._changed.wait()

    async def wait_requests(self, n: int) -> list[dict[str, Any]]:
        """Wait until ``n`` chat requests have arrived; all of them so far."""
        await self.wait_for(lambda: len(self.requests) >= n)
        return self.requests

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _stream_change(self, *, opened: bool, gone: bool = False) -> None:
        self.streams_open += 1 if opened else -1
        self.disconnects += gone
        self._notify()

    # -- serving -------------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; ``nursery.start`` gives the base URL (``http://HOST:PORT/v1``).

        Served as the control API is (``edge.control.serve_control``).

        Raises:
            ConfigError: the address cannot be bound.
        """
        from ..control.app import serve_control

        bound = False
        try:
            async with trio.open_nursery() as nursery:
                base = await nursery.start(serve_control, self._app(), host, port)
                bound = True
                self.url = f"{base}/v1"
                task_status.started(self.url)
        except* ConfigError:
            if bound:
                raise
            # serve_control's message names the control API and its flags: not this one's.
            raise ConfigError(
                f"cannot serve the fake model gateway on {format_hostport((host, port))}: the "
                "address is in use or not on this machine (--gateway-port 0 takes any free port)"
            ) from None

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    def _authorized(self, request: Request) -> tuple[bool, bool]:
        """(passes the token check, sent a Bearer token)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        bearer = scheme.lower() == "bearer" and bool(token.strip())
        if self.tokens is None:
            return True, bearer
        given = token.strip().encode()
        valid = bearer and any(hmac.compare_digest(given, t.encode()) for t in self.tokens)
        return valid, bearer

    async def _models(self, request: Request) -> Response:
        if not self._authorized(request)[0]:
            return JSONResponse(_error_body(401, "invalid or missing bearer token"), 401)
        models = {self._steps[0].model if self._steps else DEFAULT_MODEL, DEFAULT_MODEL}
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "edge"} for m in models]
        return JSONResponse({"object": "list", "data": sorted(data, key=lambda m: m["id"])})

    async def _chat(self, request: Request) -> Response:
        authorized, bearer = self._authorized(request)
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):
            body = None
        record = dict(body) if isinstance(body, dict) else {}
        record.update(authorized=authorized, bearer=bearer)
        self.requests.append(record)
        self._notify()
        if not authorized:
            return JSONResponse(_error_body(401, "invalid or missing bearer token"), 401)
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            text = "the body must be a JSON object with a messages list"
            return JSONResponse(_error_body(400, text), 400)
        step = self._steps.pop(0) if self._steps else default_step(messages)
        log.debug("chat request %d: %d messages", len(self.requests), len(messages))
        if step.status is not None:
            text = f"the fake gateway was told to answer {step.status}"
            return JSONResponse(_error_body(step.status, text), step.status)
        call_ids = [f"call_fake{next(self._call_ids)}" for _ in step.calls]
        completion = f"chatcmpl-fake{next(self._completions)}"
        if body.get("stream") is True:
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            events = self._chunks(step, completion, call_ids, messages, usage)
            return _EventStream(self, events, step.chunk_delay, step.stall, "text/event-stream")
        if step.stall:
            return _EventStream(self, [], 0.0, True, "application/json")
        if step.error_after is not None:
            text = "the fake gateway broke off the answer"
            return JSONResponse(_error_body(500, text), 500)
        return JSONResponse(self._completion(step, completion, call_ids, messages))

    # -- answers -------------------------------------------------------------------

    def _chunks(
        self,
        step: Step,
        completion: str,
        call_ids: list[str],
        messages: list[Any],
        usage: bool,
    ) -> list[bytes]:
        """The server-sent events of ``step``'s streamed answer."""
        created = int(time.time())

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {
                "id": completion,
                "object": "chat.completion.chunk",
                "created": created,
                "model": step.model,
                "choices": choices,
                **extra,
            }
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        def delta(fields: dict[str, Any], finish: str | None = None) -> bytes:
            return event([{"index": 0, "delta": fields, "finish_reason": finish}])

        words = _WORDS.findall(step.text) or [""]
        events = [delta({"role": "assistant", "content": words[0]})]
        events.extend(delta({"content": word}) for word in words[1:])
        if step.error_after is not None:
            error = _error_body(500, "the fake gateway broke off the answer")
            return [*events[: step.error_after], b"data: " + json.dumps(error).encode() + b"\n\n"]
        for index, (name, arguments) in enumerate(step.calls):
            for entry in _call_deltas(step.shape, index, call_ids[index], name, arguments):
                events.append(delta({"tool_calls": [entry]}))
        events.append(delta({}, step.finish))
        if usage:
            events.append(event([], usage=_usage(messages, len(events))))
        return [*events, b"data: [DONE]\n\n"]

    def _completion(
        self, step: Step, completion: str, call_ids: list[str], messages: list[Any]
    ) -> dict[str, Any]:
        """``step``'s answer as one ``chat.completion``."""
        message: dict[str, Any] = {"role": "assistant", "content": step.text or None}
        if step.calls:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": arguments
                        if step.shape == "args_object" and isinstance(arguments, dict)
                        else _arguments_text(arguments),
                    },
                }
                for (name, arguments), call_id in zip(step.calls, call_ids, strict=True)
            ]
        return {
            "id": completion,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": step.model,
            "choices": [{"index": 0, "message": message, "finish_reason": step.finish}],
            "usage": _usage(messages, len(_WORDS.findall(step.text)) + len(step.calls)),
        }


def _usage(messages: list[Any], completion_tokens: int) -> dict[str, int]:
    """A made-up token count: a word of the messages is a token, a chunk is one."""
    prompt = sum(
        len(_text_of(m.get("content")).split()) for m in messages if isinstance(m, Mapping)
    )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }


class _EventStream(Response):
    """An ASGI response sending ``events`` one by one until done or until the client leaves.

    A watcher task reads ``receive`` for ``http.disconnect``; when it comes, the sending
    is cancelled, so neither a slow stream nor a stall outlives its client.
    """

    def __init__(
        self, gateway: FakeGateway, events: list[bytes], delay: float, stall: bool, media: str
    ) -> None:
        super().__init__(media_type=media, headers={"cache-control": "no-cache"})
        # No length: the body is sent in pieces (chunked), however long it turns out.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._gateway = gateway
        self._events = events
        self._delay = delay
        self._stall = stall

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._gateway._stream_change(opened=True)
        gone = False
        try:
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    nonlocal gone
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    gone = True
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                await self._send_events(send)
                nursery.cancel_scope.cancel()
            if not gone:  # the end, sent after the watcher stopped (it brings a disconnect)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._gateway._stream_change(opened=False, gone=gone)

    async def _send_events(self, send: Send) -> None:
        """The response's start and every event, or until the stall."""
        if self._stall and not self._events:
            await trio.sleep_forever()
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        for n, event in enumerate(self._events):
            if n and self._delay:
                await trio.sleep(self._delay)
            await send({"type": "http.response.body", "body": event, "more_body": True})
            if self._stall:
                await trio.sleep_forever()
