"""The real runner (``python -m edge.plugins.runner``) against a minimal host in the test."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from edge.plugin import SDK_VERSION
from edge.protocol.rpc import MAX_FRAME, RpcError

from ..conftest import until
from .conftest import PROMPT, TOKEN, open_runner, plugin_spec, write_plugin

DEMO = """
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import trio

    from edge.plugin import Context, HostError, Plugin

    plugin = Plugin()
    TOKEN_AT_IMPORT = os.environ.get("EDGE_RUNNER_TOKEN")
    SEEN = []


    @plugin.tool
    def add(a: int, b: int = 1) -> dict:
        \"\"\"Add two numbers.\"\"\"
        return {"sum": a + b}


    @plugin.tool
    def env_token() -> dict:
        code = "import os; print(os.environ.get('EDGE_RUNNER_TOKEN'))"
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        return {
            "import": TOKEN_AT_IMPORT,
            "now": os.environ.get("EDGE_RUNNER_TOKEN"),
            "child": child.stdout.strip(),
            "proc": Path("/proc/self/environ").read_bytes().decode(errors="replace"),
        }


    @plugin.tool
    def boom(message: str) -> dict:
        raise ValueError(message)


    @plugin.tool
    async def count(ctx: Context, n: int) -> str:
        for i in range(n):
            ctx.progress(i + 1, n, f"step {i + 1}")
            await trio.sleep(0)
        return "counted"


    @plugin.tool
    def count_sync(ctx: Context, n: int) -> int:
        for i in range(n):
            ctx.progress(i + 1, n)
        return n


    @plugin.tool
    async def forever(ctx: Context) -> dict:
        await trio.sleep_forever()


    @plugin.tool
    def spin(ctx: Context, marker: str) -> dict:
        \"\"\"Block in its thread until cancelled (at most a minute), then leave a mark.\"\"\"
        Path(marker + ".started").touch()
        give_up = time.monotonic() + 60
        while not ctx.cancelled and time.monotonic() < give_up:
            time.sleep(0.01)
        Path(marker).write_text("cancelled" if ctx.cancelled else "gave up")
        return {}


    @plugin.tool
    def config_now(ctx: Context) -> dict:
        return {"config": ctx.config, "seen": SEEN}


    @plugin.on_config
    def changed(config: dict) -> None:
        SEEN.append(config)


    @plugin.hook("capture_status")
    async def on_capture(event: dict) -> None:
        SEEN.append(event)


    @plugin.tool
    async def ask(ctx: Context) -> dict:
        config = await ctx.get_config()
        result = await ctx.call_tool("other", {"x": 1})
        await ctx.publish("demo.done", {"ok": True})
        ctx.log("asked", "warning")
        return {"config": config, "result": result}


    @plugin.tool
    def ask_sync(ctx: Context) -> dict:
        try:
            ctx.publish_sync("demo.sync", {})
        except HostError as exc:
            return {"code": exc.code, "message": exc.message}
        return {"code": None}


    @plugin.tool
    def big() -> str:
        return "x" * (5 * 1024 * 1024)
"""


@pytest.fixture
def demo(plugins_dir: Path) -> dict[str, object]:
    return {"demo": plugin_spec(write_plugin(plugins_dir, "demo", DEMO), config={"unit": "C"})}


def error_of(envelope: object) -> RpcError:
    error = getattr(envelope, "error", None)
    assert isinstance(error, RpcError), f"expected an error response, got {envelope}"
    return error


async def test_hello_register_ready(tmp_path: Path, demo: dict[str, object]) -> None:
    async with open_runner(tmp_path, demo) as host:
        assert host.hello == {"token": TOKEN, "sdk": SDK_VERSION, "pid": host.proc.pid}
        registration = host.registered["demo"]
        tools = {tool["name"]: tool for tool in registration["tools"]}
        assert {"add", "boom", "count", "spin", "config_now"} <= set(tools)
        assert tools["add"] == {
            "name": "add",
            "description": "Add two numbers.",
            "input_schema": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 1}},
                "required": ["a"],
                "additionalProperties": False,
            },
            "timeout": None,
        }
        assert "ctx" not in tools["count"]["input_schema"]["properties"]
        assert registration["hooks"] == ["capture_status"]
        assert host.failed == {}


async def test_the_token_is_gone_before_plugin_code_runs(
    tmp_path: Path, demo: dict[str, object]
) -> None:
    async with open_runner(tmp_path, demo) as host:
        reply = await host.call("demo", "env_token")
    assert reply.error is None, host.stderr
    seen = reply.payload
    assert (seen["import"], seen["now"], seen["child"]) == (None, None, "None")
    # Not even in the strings the process started with (what ps e shows).
    assert TOKEN not in seen["proc"]
    assert "EDGE_RUNNER_NAME=test-runner" in seen["proc"]


async def test_a_call_returns_its_result(tmp_path: Path, demo: dict[str, object]) -> None:
    async with open_runner(tmp_path, demo) as host:
        reply = await host.call("demo", "add", {"a": 2, "b": 3})
        assert (reply.error, reply.payload) == (None, {"sum": 5})
        reply = await host.call("demo", "count_sync", {"n": 0})
        assert reply.payload == {"output": "0"}


async def test_a_call_that_raises_is_a_tool_error(tmp_path: Path, demo: dict[str, object]) -> None:
    async with open_runner(tmp_path, demo) as host:
        reply = await host.call("demo", "boom", {"message": "it broke"})
        assert error_of(reply) == RpcError("tool_error", "ValueError: it broke")
        # The runner goes on serving.
        assert (await host.call("demo", "add", {"a": 1})).payload == {"sum": 2}
    assert "ValueError: it broke" in host.stderr


async def test_bad_args_unknown_tools_and_passed_deadlines(
    tmp_path: Path, demo: dict[str, object]
) -> None:
    async with open_runner(tmp_path, demo) as host:
        error = error_of(await host.call("demo", "add", {"a": "2", "c": 1}))
        assert error.code == "bad_request"
        assert "a: Input should be a valid integer (got '2')" in error.message
        assert "c: Extra inputs are not permitted" in error.message
        assert error_of(await host.call("demo", "nope")).code == "unknown_tool"
        assert error_of(await host.call("other", "add", {"a": 1})).code == "unknown_tool"
        late = await host.call("demo", "add", {"a": 1}, deadline=time.monotonic() - 1)
        assert error_of(late).code == "timeout"
        running = await host.call("demo", "forever", deadline=time.monotonic() + 0.5)
        assert error_of(running) == RpcError("timeout", "the call ran past its deadline")
        assert error_of(await host.request("frobnicate", {})).code == "unknown_method"


async def test_progress_events_carry_the_call_id(tmp_path: Path, demo: dict[str, object]) -> None:
    async with open_runner(tmp_path, demo) as host:
        call = await host.start_call("demo", "count", {"n": 3})
        assert (await host.response(call)).payload == {"output": "counted"}
        threaded = await host.start_call("demo", "count_sync", {"n": 2})
        assert (await host.response(threaded)).payload == {"output": "2"}
    progress = [(e.payload["id"], e.payload["done"], e.payload["total"], e.payload["message"])
                for e in host.events if e.method == "progress"]  # fmt: skip
    # Each call's progress comes before its response, so all of it is here, in order.
    assert progress == [
        (call, 1, 3, "step 1"), (call, 2, 3, "step 2"), (call, 3, 3, "step 3"),
        (threaded, 1, 2, None), (threaded, 2, 2, None),
    ]  # fmt: skip
    assert all(e.plugin == "demo" for e in host.events if e.method == "progress")


async def test_cancel_an_async_call(tmp_path: Path, demo: dict[str, object]) -> None:
    async with open_runner(tmp_path, demo) as host:
        call = await host.start_call("demo", "forever")
        await trio.sleep(0.2)
        await host.event("cancel", {"id": call})
        reply = await host.response(call, within=5)
        assert error_of(reply) == RpcError("cancelled", "the call was cancelled")


async def started(marker: Path) -> None:
    """Wait until the spin tool has started (it touches ``<marker>.started``)."""
    with trio.fail_after(PROMPT):
        await until(Path(f"{marker}.started").exists, poll=0.01)


async def test_cancel_a_sync_call_answers_at_once_and_sets_cancelled(
    tmp_path: Path, demo: dict[str, object]
) -> None:
    marker = tmp_path / "spin"
    async with open_runner(tmp_path, demo) as host:
        call = await host.start_call("demo", "spin", {"marker": str(marker)})
        await started(marker)
        await host.event("cancel", {"id": call})
        assert error_of(await host.response(call, within=5)).code == "cancelled"
        with trio.fail_after(PROMPT):  # write_text creates the file, then writes it
            await until(lambda: marker.exists() and marker.read_text() != "", poll=0.01)
        assert marker.read_text() == "cancelled"


async def test_ping_is_answered_while_a_sync_tool_blocks(
    tmp_path: Path, demo: dict[str, object]
) -> None:
    marker = tmp_path / "spin"
    async with open_runner(tmp_path, demo) as host:
        call = await host.start_call("demo", "spin", {"marker": str(marker)})
        await started(marker)
        pong = await host.request("ping", {})
        assert (pong.error, pong.payload) == (None, {})
        assert not marker.exists()  # still blocking
        await host.event("cancel", {"id": call})
        assert error_of(await host.response(call)).code == "cancelled"


async def test_config_push_and_hooks(tmp_path: Path, demo: dict[str, object]) -> None:
    async with open_runner(tmp_path, demo) as host:
        before = await host.call("demo", "config_now")
        assert before.payload == {"config": {"unit": "C"}, "seen": []}
        reply = await host.request("config", {"config": {"unit": "F"}}, plugin="demo")
        assert (reply.error, reply.payload) == (None, {})
        await host.event("hook", {"event": {"type": "capture_status", "n": 1}}, plugin="demo")
        await host.event("hook", {"event": {"type": "unheard", "n": 2}}, plugin="demo")

        # The hook runs in a task of its own: ask until it has been seen.
        with trio.fail_after(PROMPT):
            while True:
                after = (await host.call("demo", "config_now")).payload
                if len(after["seen"]) >= 2:
                    break
                await trio.sleep(0.01)
    assert after == {
        "config": {"unit": "F"}, "seen": [{"unit": "F"}, {"type": "capture_status", "n": 1}]
    }


async def test_requests_to_the_host_and_refusals(tmp_path: Path, demo: dict[str, object]) -> None:
    answers = {
        "config.get": lambda envelope: {"unit": "K"},
        "tools.call": lambda envelope: {"output": f"ran {envelope.payload['tool']}"},
        "publish": lambda envelope: (
            RpcError("not_declared", "events is not declared")
            if envelope.payload["type"] == "demo.sync" else {}
        ),
    }  # fmt: skip
    async with open_runner(tmp_path, demo, answers=answers) as host:
        reply = await host.call("demo", "ask")
        assert reply.payload == {"config": {"unit": "K"}, "result": {"output": "ran other"}}
        refused = await host.call("demo", "ask_sync")
        assert refused.payload == {"code": "not_declared", "message": "events is not declared"}
    methods = [(r.method, r.plugin, r.payload) for r in host.requests]
    assert methods == [
        ("config.get", "demo", {}),
        ("tools.call", "demo", {"tool": "other", "args": {"x": 1}}),
        ("publish", "demo", {"type": "demo.done", "data": {"ok": True}}),
        ("publish", "demo", {"type": "demo.sync", "data": {}}),
    ]
    logs = [(e.plugin, e.payload) for e in host.events if e.method == "log"]
    assert logs == [("demo", {"level": "warning", "message": "asked"})]


async def test_a_result_too_large_to_send_is_a_tool_error(
    tmp_path: Path, demo: dict[str, object]
) -> None:
    async with open_runner(tmp_path, demo) as host:
        error = error_of(await host.call("demo", "big"))
        assert error.code == "tool_error"
        assert f"more than {MAX_FRAME}" in error.message
        assert (await host.call("demo", "add", {"a": 1})).payload == {"sum": 2}


async def test_prepare_then_calls_are_busy(tmp_path: Path, demo: dict[str, object]) -> None:
    async with open_runner(tmp_path, demo) as host:
        assert (await host.request("prepare", {})).payload == {}
        assert error_of(await host.call("demo", "add", {"a": 1})).code == "busy"
        assert (await host.request("ping", {})).payload == {}


async def test_shutdown_exits_0(tmp_path: Path, demo: dict[str, object]) -> None:
    async with open_runner(tmp_path, demo) as host:
        assert (await host.request("shutdown", {})).payload == {}
        assert await host.wait_exit() == 0


async def test_shutdown_waits_for_a_call_at_most_a_moment(
    tmp_path: Path, demo: dict[str, object]
) -> None:
    marker = tmp_path / "spin"
    async with open_runner(tmp_path, demo) as host:
        await host.start_call("demo", "spin", {"marker": str(marker)})
        await started(marker)
        assert (await host.request("shutdown", {})).payload == {}
        assert await host.wait_exit() == 0


async def test_the_runner_exits_when_the_host_closes_the_socket(
    tmp_path: Path, demo: dict[str, object]
) -> None:
    marker = tmp_path / "spin"
    async with open_runner(tmp_path, demo) as host:
        await host.start_call("demo", "spin", {"marker": str(marker)})
        await started(marker)
        await host.channel.aclose()
        assert await host.wait_exit(within=5) == 0


async def test_a_malformed_frame_ends_the_runner(tmp_path: Path, demo: dict[str, object]) -> None:
    async with open_runner(tmp_path, demo) as host:
        await host.channel.stream.send_all(b"\x00\x00\x00\x03abc")
        assert await host.wait_exit() == 2
        await host.wait_for(lambda: "malformed frame" in host.stderr)


async def test_a_wrong_token_is_refused_with_exit_3(
    tmp_path: Path, demo: dict[str, object]
) -> None:
    async with open_runner(tmp_path, demo, token="not-it", wait_ready=False) as host:
        assert await host.wait_exit(within=60) == 3
        await host.wait_for(lambda: "edge refused this runner: wrong token" in host.stderr)
    assert host.registered == {}


TWIN = """
    from edge.plugin import Plugin
    import helpers

    plugin = Plugin()


    @plugin.tool
    def who() -> dict:
        return {"me": helpers.NAME, "module": __name__}
"""


async def test_two_plugins_with_the_same_module_names_do_not_collide(
    tmp_path: Path, plugins_dir: Path
) -> None:
    specs = {
        name: plugin_spec(write_plugin(
            plugins_dir, name, TWIN, files={"helpers.py": f"NAME = {name!r}\n"}
        ))
        for name in ("first", "second")
    }  # fmt: skip
    async with open_runner(tmp_path, specs) as host:
        first = await host.call("first", "who")
        second = await host.call("second", "who")
    assert first.payload["me"] == "first"
    assert second.payload["me"] == "second"
    assert first.payload["module"] != second.payload["module"]
    assert set(host.registered) == {"first", "second"}


async def test_a_plugin_that_fails_to_import_does_not_stop_the_others(
    tmp_path: Path, plugins_dir: Path, demo: dict[str, object]
) -> None:
    broken = write_plugin(plugins_dir, "broken", "import json\n\nVALUE = 1 / 0\n")
    empty = write_plugin(plugins_dir, "empty", "VALUE = 1\n")
    missing = plugins_dir / "nothing-here"
    specs = {
        "broken": plugin_spec(broken), **demo, "empty": plugin_spec(empty),
        "missing": plugin_spec(missing),
    }  # fmt: skip
    async with open_runner(tmp_path, specs) as host:
        assert (await host.call("demo", "add", {"a": 1})).payload == {"sum": 2}
        assert error_of(await host.call("broken", "anything")).code == "unknown_tool"
    assert set(host.registered) == {"demo"}
    assert host.failed == {
        "broken": "cannot import main: ZeroDivisionError: division by zero (main.py, line 3)",
        "empty": "main holds no edge.plugin.Plugin (add: plugin = Plugin())",
        "missing": f"the plugin directory {missing} does not exist",
    }
    assert all("\n" not in message for message in host.failed.values())


async def test_a_syntax_error_names_the_line(tmp_path: Path, plugins_dir: Path) -> None:
    bad = write_plugin(plugins_dir, "bad", "x = 1\ndef (:\n", entry="pkg.tools")
    async with open_runner(tmp_path, {"bad": plugin_spec(bad, entry="pkg.tools")}) as host:
        pass
    assert host.failed["bad"].startswith("cannot import pkg.tools: SyntaxError: ")
    assert host.failed["bad"].endswith("(pkg/tools.py, line 2)")


async def test_a_dotted_entry_with_relative_imports(tmp_path: Path, plugins_dir: Path) -> None:
    code = """
        from edge.plugin import Plugin
        from .util import double

        plugin = Plugin()


        @plugin.tool
        def twice(n: int) -> int:
            return double(n)
    """
    directory = write_plugin(
        plugins_dir, "dotted", code, entry="pkg.tools",
        files={"pkg/__init__.py": "", "pkg/util.py": "def double(n):\n    return 2 * n\n"},
    )  # fmt: skip
    async with open_runner(tmp_path, {"dotted": plugin_spec(directory, entry="pkg.tools")}) as host:
        assert (await host.call("dotted", "twice", {"n": 21})).payload == {"output": "42"}


async def test_calls_run_concurrently(tmp_path: Path, demo: dict[str, object]) -> None:
    # Ten blocked calls at once, then one that returns: the runner serves them side by side.
    async with open_runner(tmp_path, demo) as host:
        calls = [await host.start_call("demo", "forever") for _ in range(10)]
        assert (await host.call("demo", "add", {"a": 1})).payload == {"sum": 2}
        for call in calls:
            await host.event("cancel", {"id": call})
        for call in calls:
            assert error_of(await host.response(call)).code == "cancelled"

