"""The executor's own rules: timeouts from args, the tool's limit, errors as results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from edge.daemon import build_executor
from edge.errors import ToolTimeout
from edge.tools.execute import Executor
from edge.tools.registry import CallContext, ToolSpec

from ..conftest import make_config


async def _sleep(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    await trio.sleep(float(args.get("seconds", 0)))
    return {"output": "slept"}


async def _gives_up(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    raise ToolTimeout("the remote side gave up after 3 s", 3.0)


def executor_with(workspace: Path, *specs: ToolSpec) -> Executor:
    executor = build_executor(make_config(workspace))
    for spec in specs:
        executor.registry.add(spec)
    return executor


SLEEP = ToolSpec("nap", "sleeps", {"type": "object"}, _sleep)


async def test_a_timeout_arg_that_is_not_a_number_is_a_clear_error(workspace: Path) -> None:
    executor = executor_with(workspace, SLEEP)
    for bad in ("soon", None, [1], -1, 0):
        result = await executor.call("nap", {"timeout": bad}, approved=None)
        assert "error" in result
        assert '"timeout" must be a' in result["error"]
        assert repr(bad) in result["error"]


async def test_the_timeout_arg_bounds_the_call(workspace: Path, autojump_clock: trio.abc.Clock) -> None:
    executor = executor_with(workspace, SLEEP)
    start = trio.current_time()
    result = await executor.call("nap", {"seconds": 100, "timeout": "2.5"}, approved=None)
    assert result == {"error": "nap timed out after 2.5 s", "timed_out": True}
    assert trio.current_time() - start == 2.5


async def test_the_tools_own_limit_wins(workspace: Path, autojump_clock: trio.abc.Clock) -> None:
    spec = ToolSpec("nap", "sleeps", {"type": "object"}, _sleep, timeout=1.0)
    executor = executor_with(workspace, spec)
    result = await executor.call("nap", {"seconds": 100, "timeout": 50}, approved=None)
    assert result == {"error": "nap timed out after 1 s", "timed_out": True}


async def test_a_tool_that_times_out_by_itself_reports_it(workspace: Path) -> None:
    executor = executor_with(workspace, ToolSpec("far", "far away", {"type": "object"}, _gives_up))
    result = await executor.call("far", {}, approved=None)
    assert result == {"error": "the remote side gave up after 3 s", "timed_out": True}
