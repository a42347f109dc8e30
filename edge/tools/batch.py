"""Run a batch of tool calls, a bounded number at once, results in the calls' order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import trio

from .registry import ToolResult

#: Calls of one batch running at once unless asked otherwise.
BATCH_CONCURRENCY: Final = 8


async def call_batch(
    call: Callable[[str, dict[str, Any]], Awaitable[ToolResult]],
    calls: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    concurrency: int = BATCH_CONCURRENCY,
) -> list[ToolResult]:
    """Run ``call(name, args)`` for each entry, at most ``concurrency`` at once.

    Results come back in the order of ``calls``; ``call`` must not raise
    (``Executor.call`` does not).
    """
    entries = list(calls)
    results: list[ToolResult | None] = [None] * len(entries)
    limiter = trio.CapacityLimiter(max(1, concurrency))

    async def one(i: int, name: str, args: Mapping[str, Any]) -> None:
        async with limiter:
            results[i] = await call(name, dict(args))

    async with trio.open_nursery() as nursery:
        for i, (name, args) in enumerate(entries):
            nursery.start_soon(one, i, name, args)
    return [r if r is not None else {"error": "not run"} for r in results]
