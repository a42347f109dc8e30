"""The workers: every call ends with exactly one reply, however it ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from edge.daemon import build_executor
from edge.nurseries.workers import ToolWorkers, serve_workers

from ..conftest import make_config


async def test_a_call_cancelled_by_its_nursery_still_replies(workspace: Path) -> None:
    executor = build_executor(make_config(workspace))
    replies: list[tuple[Any, dict[str, Any]]] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            workers: ToolWorkers = await nursery.start(serve_workers, executor)
            workers.submit(
                "c1",
                "terminal",
                {"command": "sleep 30"},
                approved=None,
                reply=lambda call_id, result: replies.append((call_id, result)),
            )
            await trio.sleep(0.2)
            assert workers.in_flight == 1
            # No cancel_all and no grace: the whole workers' nursery stops.
            nursery.cancel_scope.cancel()
    assert replies == [("c1", {"error": "cancelled", "cancelled": True})]
    assert workers.in_flight == 0
