"""Run a batch of tool calls, a bounded number at once, results in the calls' order."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import trio

from .registry import ToolResult

#: Calls of one batch running at once unless asked otherwise.
BATCH_CONCURRENCY: Final = 8


async def call_batch(
    call: Callable[[str, dict[str, Any]], Awaitable[ToolResult]],
    calls: Iterable[tuple[str, Mapping[str, Any]] | ToolResult],
    *,
    concurrency: int = BATCH_CONCURRENCY,
    deadline: float | None = None,
) -> list[ToolResult]:
    """Run ``call(name, args)`` for each entry, at most ``concurrency`` at once.

    An entry that is already a result (a dict: a malformed call's error) is kept as
    it is, so one bad entry costs the others nothing. Results come back in the order
    of ``calls``; ``call`` must not raise (``Executor.call`` does not). With
    ``deadline`` (seconds), calls still running then are cancelled and those not
    started are not: both answer a ``timed_out`` error naming the deadline.
    """
    entries = list(calls)
    results: list[ToolResult | None] = [
        entry if isinstance(entry, dict) else None for entry in entries
    ]
    limiter = trio.CapacityLimiter(max(1, concurrency))

    async def one(i: int, name: str, args: Mapping[str, Any]) -> None:
        async with limiter:
            results[i] = await call(name, dict(args))

    with trio.move_on_after(deadline if deadline is not None else math.inf):
        async with trio.open_nursery() as nursery:
            for i, entry in enumerate(entries):
                if not isinstance(entry, dict):
                    name, args = entry
                    nursery.start_soon(one, i, name, args)
    late = (
        {"error": f"not finished within the batch's deadline of {deadline:g} s", "timed_out": True}
        if deadline is not None
        else {"error": "not run"}
    )
    return [r if r is not None else dict(late) for r in results]
