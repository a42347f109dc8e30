"""The tool routes: the effective tools in OpenAI form, and a batch of OpenAI tool calls.

::

    GET  /tools/openai      the effective tools in OpenAI function-calling form
    POST /tools/batch       {"toolCalls": [OpenAI tool calls], "concurrency"?}: run them
                            under the cloud's approval and the local policy
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from ..errors import BadRequest
from ..protocol.openai import from_openai_call, to_openai_message
from ..tools.batch import BATCH_CONCURRENCY
from .body import json_reply, read_json

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

#: Calls in one /tools/batch request at most.
MAX_BATCH: Final = 64


class ToolsControl(Protocol):
    """The tools as the control API drives them."""

    def openai_tools(self) -> list[dict[str, Any]]:
        """The effective tools (approved and allowed) as OpenAI ``tools`` entries."""

    async def call_batch(
        self, calls: list[tuple[str, dict[str, Any]]], concurrency: int
    ) -> list[dict[str, Any]]:
        """Run ``(name, arguments)`` calls, ``concurrency`` at once; one edge result each."""


def routes(target: ToolsControl) -> list[Route]:
    """The /tools/* routes over ``target``."""
    from starlette.routing import Route

    async def openai(request: Request) -> Response:
        return json_reply({"tools": target.openai_tools()})

    async def batch(request: Request) -> Response:
        raw, calls, concurrency = _batch_request(await read_json(request))
        results = await target.call_batch(calls, concurrency)
        messages = [
            to_openai_message(str(entry.get("id", i)), result)
            for i, (entry, result) in enumerate(zip(raw, results, strict=True))
        ]
        return json_reply({"results": results, "messages": messages})

    return [
        Route("/tools/openai", openai, methods=["GET"]),
        Route("/tools/batch", batch, methods=["POST"]),
    ]


def _batch_request(
    data: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]], int]:
    """A batch body's raw OpenAI calls, the same as (name, arguments), and the concurrency."""
    raw = data.get("toolCalls")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_BATCH:
        raise BadRequest(f'"toolCalls" must be a list of 1 to {MAX_BATCH} OpenAI tool calls')
    concurrency = data.get("concurrency", BATCH_CONCURRENCY)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise BadRequest('"concurrency" must be a positive integer')
    calls = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise BadRequest(f"toolCalls[{i}] is not an object")
        try:
            calls.append(from_openai_call(entry))
        except ValueError as exc:
            raise BadRequest(f"toolCalls[{i}]: {exc}") from None
    return raw, calls, min(concurrency, MAX_BATCH)
