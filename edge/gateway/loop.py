"""The conversation loop: a turn, the tool calls it asks for (at once), their results, again.

``converse`` runs one question to its answer. The conversation (``messages``,
OpenAI chat messages) is the caller's: the loop appends the assistant's turns
and the tool results to it. Tool calls run through ``run_tool``, which the
caller makes from its own path (the daemon's workers under the cloud's
approval and the local policy, or ``--offline``'s executor under the policy
alone); several calls of one turn run concurrently, their results go back in
the order the model asked for them. A call whose arguments did not parse
becomes an error result the model reads, not a failure of the loop.

What happens is told to ``emit`` as events (plain dicts, the control API's
``/ask`` stream sends them as they are)::

    {"type": "text", "text": "..."}                           a piece of the answer
    {"type": "tool", "id", "name", "args": "short text"}      a call starts
    {"type": "tool_done", "id", "name", "ok": bool, "seconds", "error"?: "..."}
    {"type": "done", "content": "...", "model": "...", "rounds": N, "messages": [...]}
    {"type": "error", "message": "..."}                       (sent by the caller)

``messages`` in ``done`` are the ones this question added (for a client that
keeps the conversation). Cancelling the loop (Ctrl-C, a closed stream) cancels
the turn and every call running.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio

from ..errors import GatewayError
from ..protocol import error_result
from ..protocol.openai import RequestedCall, to_openai_message
from .client import GatewayClient

log = logging.getLogger(__name__)

#: Most turns one question may take (each after the first answers tool results).
MAX_ROUNDS: Final = 24
#: Characters of a call's arguments shown in its line.
SHORT_ARGS: Final = 80

#: Runs one tool call: (name, arguments) → an edge result (``output`` or ``error``).
RunTool = Callable[[str, dict[str, Any]], Awaitable[Mapping[str, Any]]]
#: Receives the loop's events.
Emit = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Answer:
    """How a question ended: the final text, the model, the turns it took."""

    content: str
    model: str | None
    rounds: int
    added: list[dict[str, Any]]


def short_args(args: Mapping[str, Any] | None, raw: str = "") -> str:
    """A call's arguments in one short line (``{"path": "notes.txt"}`` → ``path="notes.txt"``)."""
    if args is None:
        text = raw
    else:
        parts = [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items()]
        text = " ".join(parts)
    text = " ".join(text.split())
    return text if len(text) <= SHORT_ARGS else text[: SHORT_ARGS - 1] + "…"


async def converse(
    client: GatewayClient,
    messages: list[dict[str, Any]],
    *,
    run_tool: RunTool,
    emit: Emit,
    tools: Sequence[dict[str, Any]] = (),
    model: str | None = None,
    max_rounds: int = MAX_ROUNDS,
) -> Answer:
    """Ask until the model answers without tool calls; the new messages are appended.

    Raises:
        GatewayError: a turn failed, or the model kept asking for tools past ``max_rounds``.
    """
    start = len(messages)

    async def text(piece: str) -> None:
        await emit({"type": "text", "text": piece})

    for rounds in range(1, max_rounds + 1):
        turn = await client.turn(messages, tools=tools, model=model, on_text=text)
        messages.append(turn.assistant_message())
        if not turn.calls:
            added = messages[start:]
            await emit(
                {
                    "type": "done",
                    "content": turn.content,
                    "model": turn.model,
                    "rounds": rounds,
                    "messages": added,
                }
            )
            return Answer(turn.content, turn.model, rounds, added)
        results = await _run_calls(turn.calls, run_tool, emit)
        for call, result in zip(turn.calls, results, strict=True):
            messages.append(to_openai_message(call.id, result))
    raise GatewayError(
        f"the model asked for tools {max_rounds} times without answering; stopped there"
    )


async def _run_calls(
    calls: Sequence[RequestedCall], run_tool: RunTool, emit: Emit
) -> list[Mapping[str, Any]]:
    """Every call at once; their results in the calls' order."""
    results: list[Mapping[str, Any]] = [error_result("not run")] * len(calls)

    async def one(i: int, call: RequestedCall) -> None:
        label = call.name or "?"
        await emit(
            {
                "type": "tool",
                "id": call.id,
                "name": label,
                "args": short_args(call.arguments, call.raw_arguments),
            }
        )
        began = trio.current_time()
        if call.problem is not None or call.arguments is None:
            result: Mapping[str, Any] = error_result(call.problem or "arguments did not parse")
        else:
            result = await run_tool(call.name, call.arguments)
        results[i] = result
        done: dict[str, Any] = {
            "type": "tool_done",
            "id": call.id,
            "name": label,
            "ok": "error" not in result,
            "seconds": round(trio.current_time() - began, 3),
        }
        if "error" in result:
            done["error"] = str(result["error"])[:300]
        await emit(done)

    async with trio.open_nursery() as nursery:
        for i, call in enumerate(calls):
            nursery.start_soon(one, i, call)
    return results
