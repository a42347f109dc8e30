"""Every tool call is one INFO line and one record, whatever its outcome, never its args or
output; the call log keeps the calls in flight and the last ones finished."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.daemon import build_executor
from edge.errors import ToolError
from edge.nurseries.workers import ToolWorkers, serve_workers
from edge.tools.audit import CallLog, CallRecord, label
from edge.tools.execute import Executor
from edge.tools.registry import CallContext, ToolSpec

from ..conftest import make_config

#: What a caller might pass or a tool might print that must never reach a log line or a record.
SECRET = "sk-live-0123456789abcdef-SECRET"


async def _echo(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    return {"output": f"you said {args.get('text')}"}


async def _fail(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    raise ToolError(f"could not use {args.get('text')}")


async def _answer_error(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    return {"error": f"the server said no to {args.get('text')}"}


async def _nap(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    await trio.sleep(float(args.get("seconds", 0)))
    return {"output": "slept"}


STRICT = {
    "type": "object",
    "properties": {"count": {"type": "integer"}},
    "additionalProperties": False,
}


def executor_with(workspace: Path, calls: CallLog | None) -> Executor:
    executor = build_executor(make_config(workspace), calls=calls)
    for spec in (
        ToolSpec("echo", "echoes", {"type": "object"}, _echo, source="plugin:demo"),
        ToolSpec("fail", "fails", {"type": "object"}, _fail),
        ToolSpec("no", "answers with an error", {"type": "object"}, _answer_error),
        ToolSpec("nap", "sleeps", {"type": "object"}, _nap),
        ToolSpec("strict", "counts", STRICT, _echo),
    ):
        executor.registry.add(spec)
    return executor


def call_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "edge.tools.execute" and hasattr(r, "edge_call")]


async def test_each_outcome_is_one_line_and_one_record_without_args_or_output(
    workspace: Path, caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    caplog.set_level(logging.INFO, logger="edge.tools.execute")
    log = CallLog()
    executor = executor_with(workspace, log)
    secret = {"text": SECRET}

    ok = await executor.call("echo", secret, approved=None, call_id=1)
    assert ok == {"output": f"you said {SECRET}"}
    await executor.call("fail", secret, approved=None, call_id=2)
    await executor.call("no", secret, approved=None, call_id=3)
    await executor.call("nap", {"seconds": 100, "timeout": 2, "text": SECRET}, approved=None,
                        call_id=4)  # fmt: skip
    await executor.call("strict", {"count": SECRET}, approved=None, call_id=5)
    await executor.call("nope", secret, approved=None, call_id=6)
    await executor.call("echo", secret, approved=frozenset({"fail"}), call_id=7)
    with trio.move_on_after(1):
        await executor.call("nap", {"seconds": 100, "text": SECRET}, approved=None, call_id=8)
    await executor.call("echo", secret, approved=None)  # no id: a local call

    lines = call_lines(caplog)
    fields = [r.edge_call for r in lines]  # type: ignore[attr-defined]
    assert [(f["id"], f["tool"], f["outcome"]) for f in fields] == [
        ("1", "echo", "ok"),
        ("2", "fail", "error"),
        ("3", "no", "error"),
        ("4", "nap", "timeout"),
        ("5", "strict", "refused"),
        ("6", "nope", "refused"),
        ("7", "echo", "refused"),
        ("8", "nap", "cancelled"),
        ("local-9", "echo", "ok"),
    ]
    assert all(r.levelno == logging.INFO for r in lines)
    assert fields[0]["chars"] == len(ok["output"])
    assert fields[3]["seconds"] == 2.0
    assert fields[3]["error"] == "limit 2 s"
    assert fields[7]["seconds"] == 1.0
    assert lines[0].getMessage() == f"call 1 echo ok in 0.000 s, {len(ok['output'])} chars"
    assert lines[4].getMessage().endswith(": invalid args")
    assert lines[5].getMessage().endswith(": unknown tool 'nope'")
    assert "not approved by the cloud" in lines[6].getMessage()

    snapshot = log.snapshot()
    assert snapshot["inFlight"] == []
    assert [c["outcome"] for c in snapshot["recent"]] == [
        "ok", "cancelled", "refused", "refused", "refused", "timeout", "error", "error", "ok",
    ]  # fmt: skip
    assert snapshot["recent"][-1]["source"] == "plugin:demo"
    assert snapshot["recent"][3]["source"] == ""  # "nope" is no tool
    assert snapshot["counts"] == {"ok": 2, "error": 2, "timeout": 1, "cancelled": 1, "refused": 3}
    assert SECRET not in caplog.text
    assert SECRET not in json.dumps(snapshot)


async def test_without_a_call_log_calls_are_still_logged(
    workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.tools.execute")
    executor = executor_with(workspace, None)
    await executor.call("echo", {"text": SECRET}, approved=None)
    assert call_lines(caplog)[0].getMessage().startswith("call - echo ok in ")
    assert SECRET not in caplog.text


async def test_a_call_in_flight_is_listed_until_it_ends(workspace: Path) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    def started(record: CallRecord) -> None:
        events.append(("started", record.to_json()))

    def finished(record: CallRecord) -> None:
        events.append(("finished", record.to_json()))

    log = CallLog(on_started=started, on_finished=finished)
    executor = executor_with(workspace, log)
    release = trio.Event()

    async def hold(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        await release.wait()
        return {"output": "done"}

    executor.registry.add(ToolSpec("hold", "waits", {"type": "object"}, hold))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: executor.call("hold", {}, approved=None, call_id="c-1"))
        await trio.testing.wait_all_tasks_blocked()
        running = log.snapshot()["inFlight"]
        assert [(c["id"], c["tool"]) for c in running] == [("c-1", "hold")]
        assert "outcome" not in running[0]
        assert running[0]["seconds"] >= 0
        assert len(log) == 1
        release.set()
    assert log.snapshot()["inFlight"] == []
    assert [kind for kind, _ in events] == ["started", "finished"]
    assert events[1][1]["outcome"] == "ok"
    assert events[1][1]["chars"] == 4
    assert events[0][1]["started"] == events[1][1]["started"]


def test_the_log_keeps_the_last_calls_newest_first() -> None:
    log = CallLog(keep=3)
    for n in range(5):
        log.end(log.begin(n, "echo", "builtin"), "ok", n, None)
    assert [c["id"] for c in log.snapshot()["recent"]] == ["4", "3", "2"]
    assert [c["id"] for c in log.snapshot(limit=2)["recent"]] == ["4", "3"]
    first, second = log.begin("a", "t", "builtin"), log.begin("b", "t", "builtin")
    assert [c["id"] for c in log.snapshot()["inFlight"]] == ["b", "a"]
    log.end(first, "error", 0, "ToolError")
    log.end(second, "ok", 0, None)
    assert log.counts["ok"] == 6
    assert log.counts["error"] == 1


def test_ids_and_names_cannot_forge_a_log_line() -> None:
    assert label("ask-1") == "ask-1"
    assert label(17) == "17"
    assert "\n" not in label("x\nINFO fake line")
    assert label("a b") == "'a b'"
    assert len(label("y" * 500)) < 100


async def test_calls_the_workers_turn_away_are_logged_and_recorded(
    workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.tools.execute")
    log = CallLog()
    executor = executor_with(workspace, log)
    replies: dict[Any, dict[str, Any]] = {}

    def reply(call_id: Any, result: dict[str, Any]) -> None:
        replies[call_id] = result

    async with trio.open_nursery() as nursery:
        workers: ToolWorkers = await nursery.start(
            lambda task_status: serve_workers(
                executor, max_calls=1, queue_size=1, task_status=task_status
            )
        )
        workers.submit("run", "nap", {"seconds": 60}, approved=None, reply=reply)
        await trio.testing.wait_all_tasks_blocked()  # "run" has the one slot
        workers.submit("wait", "nap", {"seconds": 60}, approved=None, reply=reply)
        workers.submit("busy", "nap", {"seconds": 60}, approved=None, reply=reply)
        await trio.testing.wait_all_tasks_blocked()
        assert replies["busy"]["busy"] is True
        workers.cancel("wait")  # cancelled before it had a slot
        workers.cancel("run")
        with trio.fail_after(30):
            await workers.wait_idle()
        nursery.cancel_scope.cancel()
    outcomes = {c["id"]: (c["outcome"], c["error"]) for c in log.snapshot()["recent"]}
    assert outcomes == {
        "busy": ("refused", replies["busy"]["error"]),
        "wait": ("cancelled", "cancelled by the cloud"),
        "run": ("cancelled", None),
    }
    assert sorted(r.edge_call["id"] for r in call_lines(caplog)) == ["busy", "run", "wait"]  # type: ignore[attr-defined]
