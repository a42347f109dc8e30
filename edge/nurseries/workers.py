"""The tool-call workers: one task per call in the workers' own nursery.

At most ``max_calls`` calls run at once (a ``CapacityLimiter``); up to
``queue_size`` more wait for a slot in arrival order, and a call beyond that is
answered at once with a "busy" error. Each call has its own cancel scope, so the
cloud can cancel it by id, and a disconnect or shutdown cancels them all; every
call ends with exactly one reply, cancelled ones included, and one log line (the
executor's, ``edge.tools.execute``; a call refused here or cancelled before it got a
slot is noted through the executor as well).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container
from typing import Any, Final

import trio

from ..protocol import error_result
from ..tools.execute import Executor
from ..tools.registry import ToolResult

log = logging.getLogger(__name__)

#: Calls running at once unless configured otherwise.
MAX_CALLS: Final = 64
#: Calls waiting for a slot before new ones are refused as busy.
QUEUE_SIZE: Final = 256

CallId = str | int
Reply = Callable[[CallId, ToolResult], None]
#: Progress of a call: (call id, done, total or None, message or None).
ProgressReport = Callable[[CallId, float, float | None, str | None], None]


class ToolWorkers:
    """Handle on the workers; made by ``serve_workers``."""

    def __init__(
        self, nursery: trio.Nursery, executor: Executor, max_calls: int, queue_size: int
    ) -> None:
        self._nursery = nursery
        self.executor = executor
        self.max_calls = max_calls
        self.queue_size = queue_size
        self._limiter = trio.CapacityLimiter(max_calls)
        self._scopes: dict[CallId, trio.CancelScope] = {}
        self._why_cancelled: dict[CallId, str] = {}
        self._idle = trio.Event()
        self._idle.set()
        self.completed = 0
        self.refused_busy = 0

    @property
    def in_flight(self) -> int:
        """Calls running or waiting for a slot."""
        return len(self._scopes)

    @property
    def running(self) -> int:
        return self._limiter.borrowed_tokens

    def submit(
        self,
        call_id: CallId,
        tool: str,
        args: dict[str, Any],
        *,
        approved: frozenset[str] | None,
        reply: Reply,
        progress: ProgressReport | None = None,
    ) -> None:
        """Start a call (never blocks); ``reply`` is called once with its result."""
        if call_id in self._scopes:
            message = f"a call with id {call_id!r} is already in flight"
            reply(call_id, self.executor.refuse(tool, message, call_id=call_id))
            return
        if len(self._scopes) >= self.max_calls + self.queue_size:
            self.refused_busy += 1
            reply(
                call_id,
                self.executor.refuse(
                    tool,
                    f"busy: {self.max_calls} calls running and {self.queue_size} waiting; "
                    "try again later",
                    call_id=call_id,
                    busy=True,
                ),
            )
            return
        scope = trio.CancelScope()
        if not self._scopes:
            self._idle = trio.Event()
        self._scopes[call_id] = scope
        self._nursery.start_soon(self._run, call_id, tool, args, approved, reply, scope, progress)

    def cancel(self, call_id: CallId, why: str = "cancelled by the cloud") -> bool:
        """Cancel one call; ``False`` when no such call is in flight."""
        scope = self._scopes.get(call_id)
        if scope is None:
            return False
        self._why_cancelled.setdefault(call_id, why)
        scope.cancel()
        return True

    def cancel_all(self, why: str, *, keep: Container[CallId] = ()) -> int:
        """Cancel every call in flight but those in ``keep``; how many were in flight."""
        for call_id in list(self._scopes):
            if call_id not in keep:
                self.cancel(call_id, why)
        return len(self._scopes)

    async def wait_idle(self) -> None:
        """Return once no call is in flight."""
        await self._idle.wait()

    async def _run(
        self,
        call_id: CallId,
        tool: str,
        args: dict[str, Any],
        approved: frozenset[str] | None,
        reply: Reply,
        scope: trio.CancelScope,
        progress: ProgressReport | None,
    ) -> None:
        result: ToolResult | None = None
        report = None
        if progress is not None:

            def report(done: float, total: float | None, message: str | None) -> None:
                progress(call_id, done, total, message)

        running = False
        limiter = self._limiter
        try:
            with scope:
                try:
                    limiter.acquire_nowait()  # a free slot: no schedule point to get it
                except trio.WouldBlock:
                    await limiter.acquire()
                try:
                    running = True
                    result = await self.executor.call(
                        tool, args, approved=approved, call_id=call_id, progress=report
                    )
                finally:
                    limiter.release()
        finally:
            # In the finally, so that a call cancelled from outside (the workers'
            # nursery stopping) still gets its one reply, which the outbox keeps.
            del self._scopes[call_id]
            why = self._why_cancelled.pop(call_id, None)
            if result is None:
                result = error_result(why or "cancelled", cancelled=True)
                if not running:  # cancelled while it waited: the executor never saw it
                    self.executor.note(tool, "cancelled", why, call_id=call_id)
            self.completed += 1
            reply(call_id, result)
            if not self._scopes:
                self._idle.set()


async def serve_workers(
    executor: Executor,
    *,
    max_calls: int = MAX_CALLS,
    queue_size: int = QUEUE_SIZE,
    task_status: trio.TaskStatus[ToolWorkers] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the workers' nursery until cancelled; ``nursery.start`` gives the handle."""
    async with trio.open_nursery() as nursery:
        task_status.started(ToolWorkers(nursery, executor, max_calls, queue_size))
        await trio.sleep_forever()
