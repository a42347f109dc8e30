"""The tool routes: every tool, the effective ones in OpenAI form, calls.

::

    GET  /tools             every registered tool: source, description, schema, allowed
                            (local policy), approved (the cloud), effective (both); then
                            the tools that cannot run, with status and problem
    GET  /tools/openai      the effective tools in OpenAI function-calling form
    POST /tools/batch       {"toolCalls": [OpenAI tool calls], "concurrency"?, "deadline"?}:
                            run them under the cloud's approval and the local policy; a
                            malformed entry gets an error result, the others still run
    POST /tools/call        {"name", "args"?}: one call under the local policy alone, as
                            ``edge tools call`` runs it; needs the local key

``/tools/call`` runs on the daemon's tool-call workers; it skips the cloud's
approval, since the caller proved with the local key (``edge.control.key``)
that it is this machine's user, whose word the policy is. A client that goes
away cancels the call. An unknown tool is a 404 whose error has the closest
name; any other outcome is 200 with the edge result (``"error"`` in it when the
call failed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from ..errors import BadRequest
from ..protocol import error_result
from ..protocol.openai import from_openai_call, to_openai_message
from ..tools.batch import BATCH_CONCURRENCY
from .body import json_reply, read_json
from .key import require_key

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from .guard import Receive
    from .key import LocalKey

#: Calls in one /tools/batch request at most.
MAX_BATCH: Final = 64
#: The longest "deadline" a /tools/batch request may give (seconds).
MAX_BATCH_DEADLINE: Final = 3600.0
#: Largest /tools/call body (a file_write's content fits): bytes.
MAX_CALL_BODY: Final = 8 * 1024 * 1024

#: Runs one call under the local policy alone; its edge result.
CallTool = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class ToolsControl(Protocol):
    """The tools as the control API drives them."""

    def listing(self) -> list[dict[str, Any]]:
        """Every tool with ``allowed``, ``approved`` and ``effective``; then those that
        cannot run, with ``status`` and ``problem``."""

    def unknown_tool(self, name: str) -> str | None:
        """``None`` for a registered tool, else the error (with a "did you mean")."""

    def openai_tools(self) -> list[dict[str, Any]]:
        """The effective tools (approved and allowed) as OpenAI ``tools`` entries."""

    async def call_batch(
        self,
        calls: list[tuple[str, dict[str, Any]] | dict[str, Any]],
        concurrency: int,
        deadline: float | None = None,
    ) -> list[dict[str, Any]]:
        """Run ``(name, arguments)`` calls, ``concurrency`` at once, within ``deadline``
        seconds; one edge result each (an entry that is a result already is kept)."""


def routes(
    target: ToolsControl, call_tool: CallTool | None = None, key: LocalKey | None = None
) -> list[Route]:
    """The /tools/* routes over ``target``; ``POST /tools/call`` runs ``call_tool`` for a
    request that carries ``key`` (without ``call_tool`` the route is not there)."""
    from starlette.routing import Route

    async def listing(request: Request) -> Response:
        return json_reply({"tools": target.listing()})

    async def call(request: Request) -> Response:
        require_key(request.headers, key)
        assert call_tool is not None
        name, args = _call_request(await read_json(request, MAX_CALL_BODY))
        unknown = target.unknown_tool(name)
        if unknown is not None:
            return json_reply({"error": unknown}, status_code=404)
        results: list[dict[str, Any]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, request.receive, nursery.cancel_scope)
            results.append(await call_tool(name, args))
            nursery.cancel_scope.cancel()
        if not results:  # the client went away: nobody reads this
            return json_reply({"error": "cancelled: the client went away"}, status_code=499)
        return json_reply(results[0])

    async def openai(request: Request) -> Response:
        return json_reply({"tools": target.openai_tools()})

    async def batch(request: Request) -> Response:
        raw, calls, concurrency, deadline = _batch_request(await read_json(request))
        results = await target.call_batch(calls, concurrency, deadline)
        messages = [
            to_openai_message(_entry_id(entry, i), result)
            for i, (entry, result) in enumerate(zip(raw, results, strict=True))
        ]
        return json_reply({"results": results, "messages": messages})

    return [
        Route("/tools", listing, methods=["GET"]),
        Route("/tools/openai", openai, methods=["GET"]),
        Route("/tools/batch", batch, methods=["POST"]),
        *([Route("/tools/call", call, methods=["POST"])] if call_tool is not None else []),
    ]


def _call_request(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A /tools/call body's tool name and arguments (``{}`` when absent)."""
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest('"name" must be a tool name')
    args = data.get("args", {})
    if not isinstance(args, dict):
        raise BadRequest('"args" must be a JSON object')
    return name, args


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` when the client goes away (the body has been read already)."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            scope.cancel()
            return


def _batch_request(
    data: dict[str, Any],
) -> tuple[
    list[Any], list[tuple[str, dict[str, Any]] | dict[str, Any]], int, float | None
]:
    """A batch body's raw entries; each as (name, arguments), or as an error result when it
    is malformed (the others still run); the concurrency; the deadline (seconds) or ``None``.

    Raises:
        BadRequest: the body itself is wrong (no list, too many calls, a bad
            ``concurrency`` or ``deadline``): then nothing runs.
    """
    raw = data.get("toolCalls")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_BATCH:
        raise BadRequest(f'"toolCalls" must be a list of 1 to {MAX_BATCH} OpenAI tool calls')
    concurrency = data.get("concurrency", BATCH_CONCURRENCY)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise BadRequest('"concurrency" must be a positive integer')
    deadline = data.get("deadline")
    if deadline is not None and (
        isinstance(deadline, bool)
        or not isinstance(deadline, int | float)
        or not 0 < deadline <= MAX_BATCH_DEADLINE
    ):
        raise BadRequest(f'"deadline" must be a number of seconds above 0, at most '
                         f"{MAX_BATCH_DEADLINE:g}")  # fmt: skip
    calls: list[tuple[str, dict[str, Any]] | dict[str, Any]] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            calls.append(error_result(f"toolCalls[{i}] is not an object"))
            continue
        try:
            calls.append(from_openai_call(entry))
        except ValueError as exc:
            calls.append(error_result(f"toolCalls[{i}]: {exc}"))
    return raw, calls, min(concurrency, MAX_BATCH), None if deadline is None else float(deadline)


def _entry_id(entry: Any, i: int) -> str:
    """The OpenAI tool-call id of a batch entry (its index when it has none)."""
    if isinstance(entry, dict) and isinstance(entry.get("id"), str | int):
        return str(entry["id"])
    return str(i)
