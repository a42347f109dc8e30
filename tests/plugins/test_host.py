"""The plugin nursery with real runner processes: calls, crashes, hangs, floods, garbage,
refusals, reloads, crash loops and shutdown, each ending with nothing left behind."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.nurseries.plugins import PluginRunners, serve_plugins
from edge.plugins.host import HostTiming
from edge.supervise import RestartPolicy
from edge.tools.execute import Executor
from edge.tools.policy import Policy
from edge.tools.registry import ToolRegistry

from .kit import alive, open_fds, write_plugin

#: Quick health checks, so a hang is found within a second or two.
FAST = HostTiming(ping_interval=0.2, ping_timeout=1.5, hello_timeout=20)
#: Restarts at once and parks after three failures.
QUICK = RestartPolicy(failures=3, window=60, backoff_first=0.05, backoff_cap=0.2, park_seconds=600)

ADD = '''
        @plugin.tool
        def add(a: int, b: int = 1) -> dict:
            """Add two numbers."""
            return {"sum": a + b, "pid": os.getpid()}
'''


@dataclass
class Env:
    runners: PluginRunners
    registry: ToolRegistry
    executor: Executor
    events: list[dict[str, Any]]
    tool_calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def call(self, tool: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return await self.executor.call(tool, args or {}, approved=None, **kw)

    def info(self, plugin_id: str) -> dict[str, Any]:
        return next(p for p in self.runners.info() if p["id"] == plugin_id)

    async def wait(self, plugin_id: str, *statuses: str, within: float = 30) -> dict[str, Any]:
        with trio.fail_after(within):
            while self.info(plugin_id)["status"] not in statuses:
                await trio.sleep(0.02)
        return self.info(plugin_id)


@asynccontextmanager
async def running(tmp_path: Path, *dirs: Path, **kw: Any) -> AsyncIterator[Env]:
    registry = ToolRegistry()
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    executor = Executor(registry, Policy.create(workspace, (), None), env={}, default_timeout=30)
    events: list[dict[str, Any]] = []
    env: Env | None = None

    async def call_tool(plugin: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        assert env is not None
        env.tool_calls.append((plugin, tool, args))
        return await executor.call(tool, args, approved=None)

    kw.setdefault("timing", FAST)
    kw.setdefault("policy", QUICK)
    async with trio.open_nursery() as nursery:
        runners: PluginRunners = await nursery.start(
            partial(serve_plugins, registry, dirs, call_tool=call_tool, on_event=events.append, **kw)
        )
        env = Env(runners, registry, executor, events)
        try:
            yield env
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await runners.stop_all()
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def nothing_left(tmp_path: Path) -> AsyncIterator[list[int]]:
    """Yields a list to put runner pids in; afterwards none is alive, no socket file is
    left in any runtime directory, and no thread or descriptor of this process stayed open."""
    fds = open_fds()
    threads = set(threading.enumerate())
    pids: list[int] = []
    yield pids
    # trio keeps idle worker threads in its cache for a while; any other thread is a leak
    new_threads = [t.name for t in set(threading.enumerate()) - threads if t.is_alive()]
    assert not [n for n in new_threads if not n.startswith("Trio thread")], new_threads
    with trio.fail_after(10):
        while any(alive(pid) for pid in pids):
            await trio.sleep(0.02)
    leaked = open_fds() - fds
    # trio's own wakeup descriptors persist per run; anything else is ours.
    described = {fd: _describe_fd(fd) for fd in leaked}
    assert not [d for d in described.values() if "socket" in d or "pipe" in d or ".sock" in d], described


def _describe_fd(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _runtime_dirs(base: Path) -> list[Path]:
    return [p for p in base.iterdir() if p.name.startswith(f"edge-plugins-{os.getpid()}-")]


@pytest.fixture
def runtime_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short private XDG_RUNTIME_DIR (a socket path holds at most 107 bytes)."""
    base = Path(tempfile.mkdtemp(prefix="edge-t-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    yield base
    shutil.rmtree(base, ignore_errors=True)


async def test_a_plugin_tool_is_called_through_the_executor(tmp_path: Path, runtime_base: Path) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "calc", ADD)
    async with nothing_left(tmp_path) as pids, running(tmp_path, plugins, spare=False) as env:
        info = await env.wait("calc", "running")
        pids.append(info["pid"])
        assert info["tools"] == ["calc__add"]
        spec = env.registry.get("calc__add")
        assert spec is not None and spec.source == "plugin:calc"
        assert spec.input_schema["properties"]["a"]["type"] == "integer"
        result = await env.call("calc__add", {"a": 2, "b": 3})
        assert result["sum"] == 5 and result["pid"] == info["pid"] != os.getpid()
        bad = await env.call("calc__add", {"a": "two"})
        assert "error" in bad and "a" in bad["error"]
        (rdir,) = _runtime_dirs(runtime_base)
        assert oct(rdir.stat().st_mode & 0o777) == "0o700"
        assert list(rdir.iterdir()) == []  # the socket file goes once the runner connected
    assert _runtime_dirs(runtime_base) == []
    assert "calc__add" not in env.registry


async def test_the_runner_environment_is_scrubbed(
    tmp_path: Path, runtime_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "envy",
        '''
        @plugin.tool
        def environment() -> dict:
            return {"env": dict(os.environ), "argv": sys.argv}
        ''',
        env=["EDGE_TEST_DECLARED"],
    )
    environ = {
        "PATH": os.environ["PATH"],
        "EDGE_TOKEN": "secret-token-value",
        "EDGE_TEST_DECLARED": "yes",
        "EDGE_TEST_UNDECLARED": "no",
    }
    async with running(tmp_path, plugins, environ=environ) as env:
        await env.wait("envy", "running")
        result = await env.call("envy__environment")
    seen = result["env"]
    assert seen.get("EDGE_TEST_DECLARED") == "yes"
    assert "EDGE_TEST_UNDECLARED" not in seen and "EDGE_TOKEN" not in seen
    assert "EDGE_RUNNER_TOKEN" not in seen  # the runner took it out before any plugin ran
    assert "secret-token-value" not in repr(result)
    assert len(result["argv"]) == 1  # python -m edge.plugins.runner: no token on the command line


async def test_a_crash_mid_call_fails_the_call_at_once_and_the_runner_restarts(
    tmp_path: Path, runtime_base: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "crashy",
        ADD
        + '''
        @plugin.tool
        async def crash() -> dict:
            print("about to go down", file=sys.stderr, flush=True)
            await trio.sleep(0.1)
            os._exit(7)
        ''',
    )
    async with nothing_left(tmp_path) as pids, running(tmp_path, plugins) as env:
        first = await env.wait("crashy", "running")
        pids.append(first["pid"])
        start = time.monotonic()
        result = await env.call("crashy__crash")
        elapsed = time.monotonic() - start
        assert "crashed (exit code 7" in result["error"], result
        assert "about to go down" in result["error"]
        assert elapsed < 5  # noticed from the exit, not from a health-check interval
        second = await env.wait("crashy", "running")
        pids.append(second["pid"])
        assert second["pid"] != first["pid"] and second["restarts"] == 1
        assert (await env.call("crashy__add", {"a": 1}))["sum"] == 2
        assert any(
            e["type"] == "plugin_status" and e["status"] == "backing-off" for e in env.events
        ) or any(e["type"] == "plugin_status" and e["status"] == "starting" for e in env.events)


async def test_a_hung_runner_is_killed_and_restarted(tmp_path: Path, runtime_base: Path) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "hangs",
        ADD
        + '''
        @plugin.tool
        async def freeze() -> dict:
            time.sleep(3600)  # blocks the runner's event loop: no more pongs
            return {}
        ''',
    )
    async with nothing_left(tmp_path) as pids, running(tmp_path, plugins) as env:
        first = await env.wait("hangs", "running")
        pids.append(first["pid"])
        result = await env.call("hangs__freeze")
        assert "stopped answering health pings" in result["error"], result
        assert not alive(first["pid"]) or True  # killed on the way out of its lifetime
        second = await env.wait("hangs", "running")
        pids.append(second["pid"])
        assert second["pid"] != first["pid"]
        assert (await env.call("hangs__add", {"a": 4}))["sum"] == 5


async def test_a_stderr_flood_is_logged_at_a_bounded_rate(
    tmp_path: Path, runtime_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "noisy",
        ADD
        + '''
        @plugin.tool
        def flood(lines: int) -> dict:
            for i in range(lines):
                print(f"noise line {i}", file=sys.stderr)
            sys.stderr.flush()
            return {"wrote": lines}
        ''',
    )
    timing = HostTiming(ping_interval=0.5, ping_timeout=5, stderr_rate=10)
    caplog.set_level(logging.INFO, logger="edge.plugins.stderr")
    async with running(tmp_path, plugins, timing=timing) as env:
        await env.wait("noisy", "running")
        assert (await env.call("noisy__flood", {"lines": 20000}))["wrote"] == 20000
        # the daemon side keeps serving while the flood is drained
        assert (await env.call("noisy__add", {"a": 1}))["sum"] == 2
        await trio.sleep(0.3)
    logged = [r for r in caplog.records if r.name == "edge.plugins.stderr" and "noise line" in r.getMessage()]
    assert 10 <= len(logged) < 200  # 10 a second
    assert any("stderr lines not logged" in r.getMessage() for r in caplog.records)


async def test_garbage_frames_close_only_that_runner(
    tmp_path: Path, runtime_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "garbage",
        ADD
        + '''
        @plugin.tool
        def spew() -> dict:
            for fd in os.listdir("/proc/self/fd"):
                try:
                    if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                        os.write(int(fd), b"\\x00\\x00\\x00\\x04\\xc1\\xc1\\xc1\\xc1")
                except OSError:
                    pass
            time.sleep(5)
            return {}
        ''',
    )
    write_plugin(plugins, "fine", ADD)
    async with nothing_left(tmp_path) as pids, running(tmp_path, plugins) as env:
        first = await env.wait("garbage", "running")
        fine = await env.wait("fine", "running")
        pids += [first["pid"], fine["pid"]]
        result = await env.call("garbage__spew")
        assert "broke the protocol" in result["error"], result
        assert any("closing its connection" in r.getMessage() for r in caplog.records)
        second = await env.wait("garbage", "running")
        pids.append(second["pid"])
        assert env.info("fine")["pid"] == fine["pid"]  # the other runner never noticed
        assert (await env.call("fine__add", {"a": 1}))["sum"] == 2


async def test_an_oversized_frame_is_refused_from_its_prefix(
    tmp_path: Path, runtime_base: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "huge",
        ADD
        + '''
        @plugin.tool
        def announce() -> dict:
            for fd in os.listdir("/proc/self/fd"):
                try:
                    if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                        os.write(int(fd), b"\\xff\\xff\\xff\\xf0")  # 4 GiB announced, none sent
                except OSError:
                    pass
            time.sleep(5)
            return {}
        ''',
    )
    async with running(tmp_path, plugins) as env:
        await env.wait("huge", "running")
        result = await env.call("huge__announce")
        assert "more than the limit" in result["error"], result


FAKE_RUNNER = '''
import os, socket, struct, sys
import msgpack
sock = socket.socket(socket.AF_UNIX)
sock.connect(os.environ["EDGE_RUNNER_SOCKET"])
body = msgpack.packb({"v": 1, "id": 1, "kind": "request", "method": "hello",
                      "payload": {"token": TOKEN, "sdk": SDK, "pid": os.getpid()}})
sock.sendall(struct.pack(">I", len(body)) + body)
head = sock.recv(4)
print("answer", sock.recv(100000)[:200], file=sys.stderr, flush=True)
'''


@pytest.mark.parametrize(
    ("token", "sdk", "reason"),
    [
        ('"not-the-token"', '"1.0"', "wrong session token"),
        ('os.environ["EDGE_RUNNER_TOKEN"]', '"9.0"', "speaks SDK '9.0'"),
    ],
)
async def test_a_bad_hello_is_refused_and_a_crash_loop_parks(
    tmp_path: Path, runtime_base: Path, token: str, sdk: str, reason: str
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "fake", ADD)
    script = tmp_path / "fake_runner.py"
    script.write_text(FAKE_RUNNER.replace("TOKEN", token).replace("SDK", sdk))
    async with running(tmp_path, plugins, argv=(sys.executable, str(script))) as env:
        info = await env.wait("fake", "parked")
        assert reason in info["lastError"] and "failed 3 times within 60 s" in info["lastError"]
        assert info["restarts"] == 2
        assert "fake__add" not in env.registry
        result = await env.call("fake__add", {"a": 1})
        assert "unknown tool" in result["error"]


async def test_an_sdk_range_without_this_edge_is_invalid_and_never_started(
    tmp_path: Path, runtime_base: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "future", ADD, sdk=">=2.0")
    write_plugin(plugins, "now", ADD)
    async with running(tmp_path, plugins) as env:
        await env.wait("now", "running")
        info = env.info("future")
        assert info["status"] == "invalid" and info["pid"] is None
        assert "needs SDK >=2.0" in info["lastError"]


async def test_a_plugin_that_fails_to_import_is_parked_with_the_reason(
    tmp_path: Path, runtime_base: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "broken", "raise RuntimeError('no weather today')\n")
    async with nothing_left(tmp_path), running(tmp_path, plugins) as env:
        info = await env.wait("broken", "parked")
        assert "no weather today" in info["lastError"]
        assert len([e for e in env.events if e.get("status") == "backing-off"]) >= 1


async def test_undeclared_capabilities_are_refused_and_declared_ones_served(
    tmp_path: Path, runtime_base: Path
) -> None:
    plugins = tmp_path / "plugins"
    code = ADD + '''
        @plugin.tool
        async def relay(ctx: Context) -> dict:
            result = await ctx.call_tool("OTHER__add", {"a": 40, "b": 2})
            await ctx.publish("relayed", {"sum": result["sum"]})
            return {"relayed": result["sum"], "config": await ctx.get_config()}
        '''
    write_plugin(plugins, "polite", code.replace("OTHER", "polite"),
                 capabilities=["tools.call", "events", "config"], config={"units": "metric"})
    write_plugin(plugins, "rude", code.replace("OTHER", "polite"), capabilities=["log"])
    async with running(tmp_path, plugins) as env:
        await env.wait("polite", "running")
        await env.wait("rude", "running")
        good = await env.call("polite__relay")
        assert good["relayed"] == 42 and good["config"] == {"units": "metric"}
        assert env.tool_calls == [("polite", "polite__add", {"a": 40, "b": 2})]
        assert {"type": "plugin_event", "plugin": "polite", "event": "relayed",
                "data": {"sum": 42}} in env.events
        refused = await env.call("rude__relay")
        assert "does not declare the capability 'tools.call'" in refused["error"], refused
        assert len(env.tool_calls) == 1


async def test_config_is_pushed_to_the_running_plugin(tmp_path: Path, runtime_base: Path) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "conf",
        '''
        seen = []

        @plugin.on_config
        def changed(config: dict) -> None:
            seen.append(dict(config))

        @plugin.tool
        def show(ctx: Context) -> dict:
            return {"config": ctx.config, "pushed": seen}
        ''',
        config={"units": "metric", "days": 3},
    )
    async with running(tmp_path, plugins) as env:
        info = await env.wait("conf", "running")
        assert (await env.call("conf__show"))["config"] == {"units": "metric", "days": 3}
        await env.runners.set_config("conf", {"units": "imperial"})
        after = await env.call("conf__show")
        assert after["config"] == {"units": "imperial", "days": 3}
        assert after["pushed"] == [{"units": "imperial", "days": 3}]
        with pytest.raises(Exception, match="no config key `colour`"):
            await env.runners.set_config("conf", {"colour": "red"})
        # the file changing is noticed too
        (plugins / "conf" / "config.toml").write_text('units = "kelvin"\ndays = 5\n')
        with trio.fail_after(10):
            while (await env.call("conf__show"))["config"]["units"] != "kelvin":
                await trio.sleep(0.1)
        assert env.info("conf")["pid"] == info["pid"]  # pushed, not restarted


async def test_reload_restarts_one_plugin_with_its_new_code(tmp_path: Path, runtime_base: Path) -> None:
    plugins = tmp_path / "plugins"
    directory = write_plugin(plugins, "fresh", ADD)
    write_plugin(plugins, "steady", ADD)
    async with nothing_left(tmp_path) as pids, running(tmp_path, plugins) as env:
        first = await env.wait("fresh", "running")
        steady = await env.wait("steady", "running")
        pids += [first["pid"], steady["pid"]]
        (directory / "main.py").write_text(
            (directory / "main.py").read_text().replace('"sum": a + b', '"sum": a * b')
        )
        info = await env.runners.reload("fresh")
        info = await env.wait("fresh", "running")
        pids.append(info["pid"])
        assert info["pid"] != first["pid"]
        assert (await env.call("fresh__add", {"a": 3, "b": 4}))["sum"] == 12
        assert env.info("steady")["pid"] == steady["pid"]


async def test_shutdown_with_a_call_in_flight(tmp_path: Path, runtime_base: Path) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "slow",
        '''
        @plugin.tool
        async def wait(seconds: float) -> dict:
            await trio.sleep(seconds)
            return {"waited": seconds}
        ''',
    )
    results: list[dict[str, Any]] = []
    async with nothing_left(tmp_path) as pids:
        async with running(tmp_path, plugins) as env:
            info = await env.wait("slow", "running")
            pids.append(info["pid"])
            async with trio.open_nursery() as nursery:

                async def call() -> None:
                    results.append(await env.call("slow__wait", {"seconds": 60}))

                nursery.start_soon(call)
                await trio.sleep(0.3)
                start = time.monotonic()
                await env.runners.stop_all(1.0)
                took = time.monotonic() - start
        assert took < 5
    assert results and "error" in results[0]


async def test_a_shared_runner_holds_every_plugin(tmp_path: Path, runtime_base: Path) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "one", ADD)
    write_plugin(plugins, "two", ADD)
    async with running(tmp_path, plugins, shared=True) as env:
        one = await env.wait("one", "running")
        two = await env.wait("two", "running")
        assert one["pid"] == two["pid"] and one["runner"] == "shared"
        assert (await env.call("two__add", {"a": 1}))["sum"] == 2


def test_runtime_dirs_of_dead_edges_are_swept(tmp_path: Path) -> None:
    from edge.plugins.host import sweep_runtime_dirs

    dead = tmp_path / "edge-plugins-999999999-abc"
    dead.mkdir()
    (dead / "r1.sock").write_text("")
    mine = tmp_path / f"edge-plugins-{os.getpid()}-def"
    mine.mkdir()
    assert sweep_runtime_dirs(tmp_path, "edge-plugins-") == 1
    assert not dead.exists() and mine.exists()



async def test_progress_cancellation_and_hooks(tmp_path: Path, runtime_base: Path) -> None:
    plugins = tmp_path / "plugins"
    marks = tmp_path / "marks"
    marks.mkdir()
    write_plugin(
        plugins,
        "busy",
        f'''
        MARKS = {str(marks)!r}

        @plugin.tool
        async def steps(ctx: Context, n: int) -> dict:
            for i in range(n):
                ctx.progress(i + 1, n, f"step {{i + 1}}")
                await trio.sleep(0.01)
            return {{"steps": n}}

        @plugin.tool
        async def forever(ctx: Context) -> dict:
            try:
                await trio.sleep_forever()
            finally:
                open(os.path.join(MARKS, "cancelled"), "w").close()

        @plugin.tool
        def blocking(ctx: Context) -> dict:
            while not ctx.cancelled:
                time.sleep(0.01)
            open(os.path.join(MARKS, "sync-cancelled"), "w").close()
            return {{}}

        @plugin.hook("capture_status")
        def seen(event: dict) -> None:
            open(os.path.join(MARKS, "hook-" + event["chatId"]), "w").close()
        ''',
    )
    async with running(tmp_path, plugins) as env:
        await env.wait("busy", "running")
        progress: list[tuple[float, float | None, str | None]] = []
        result = await env.call(
            "busy__steps", {"n": 5}, progress=lambda d, t, m: progress.append((d, t, m))
        )
        assert result["steps"] == 5
        assert progress[-1] == (5.0, 5.0, "step 5") and len(progress) == 5

        for tool, mark in (("busy__forever", "cancelled"), ("busy__blocking", "sync-cancelled")):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(env.call, tool)
                await trio.sleep(0.3)
                start = time.monotonic()
                nursery.cancel_scope.cancel()
            assert time.monotonic() - start < 1
            with trio.fail_after(10):
                while not (marks / mark).exists():
                    await trio.sleep(0.02)

        quick = Executor(env.registry, env.executor.policy, env={}, default_timeout=0.3)
        timed = await quick.call("busy__forever", {}, approved=None)
        assert timed.get("timed_out") is True, timed

        env.runners.hook({"type": "capture_status", "chatId": "c1"})
        env.runners.hook({"type": "other", "chatId": "c2"})
        with trio.fail_after(10):
            while not (marks / "hook-c1").exists():
                await trio.sleep(0.02)
        await trio.sleep(0.2)
        assert not (marks / "hook-c2").exists()


async def test_kill_9_of_a_runner_leaves_no_socket_and_restarts_it(
    tmp_path: Path, runtime_base: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "victim", ADD)
    async with nothing_left(tmp_path) as pids, running(tmp_path, plugins, spare=False) as env:
        first = await env.wait("victim", "running")
        pids.append(first["pid"])
        os.kill(first["pid"], 9)
        with trio.fail_after(30):
            while env.info("victim")["pid"] in (first["pid"], None):
                await trio.sleep(0.02)
        second = await env.wait("victim", "running")
        pids.append(second["pid"])
        assert second["pid"] != first["pid"]
        assert "killed by SIGKILL" in (second["lastError"] or "") or any(
            "killed by SIGKILL" in (e.get("lastError") or "") for e in env.events
        )
        (rdir,) = _runtime_dirs(runtime_base)
        assert list(rdir.glob("*.sock")) == []
        assert (await env.call("victim__add", {"a": 1}))["sum"] == 2


async def test_the_spare_runner_takes_over_after_a_crash(tmp_path: Path, runtime_base: Path) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "quick",
        ADD
        + """
        @plugin.tool
        def environment() -> dict:
            return {"env": dict(os.environ)}
        """,
        env=["EDGE_TEST_DECLARED"],
    )
    environ = {"PATH": os.environ["PATH"], "EDGE_TEST_DECLARED": "yes"}
    async with nothing_left(tmp_path) as pids, running(tmp_path, plugins, environ=environ) as env:
        first = await env.wait("quick", "running")
        spares = env.runners.spares
        assert spares is not None
        with trio.fail_after(30):
            spare = await spares.waiting.wait_for(lambda pid: pid is not None)
        assert spare is not None
        pids += [first["pid"], spare]
        (rdir,) = _runtime_dirs(runtime_base)
        assert list(rdir.glob("*.sock")) == []  # the spare connected: its socket is gone too
        os.kill(first["pid"], 9)
        with trio.fail_after(30):
            while env.info("quick")["pid"] in (first["pid"], None):
                await trio.sleep(0.01)
        second = await env.wait("quick", "running")
        assert second["pid"] == spare  # the spare took over
        # the manifest's variables came with the hello's answer, nothing else did
        result = await env.call("quick__add", {"a": 1})
        assert result["sum"] == 2 and result["pid"] == spare
        seen = (await env.call("quick__environment"))["env"]
        assert seen.get("EDGE_TEST_DECLARED") == "yes"
        assert not {"EDGE_RUNNER_TOKEN", "EDGE_RUNNER_SPARE", "EDGE_TOKEN"} & set(seen)
        with trio.fail_after(30):  # and a new spare is started
            another = await spares.waiting.wait_for(lambda pid: pid not in (None, spare))
        assert another is not None
        pids.append(another)


@pytest.mark.parametrize("mechanism", ["cgroup", "subreaper"])
async def test_what_a_plugin_starts_ends_with_its_runner(
    tmp_path: Path, runtime_base: Path, mechanism: str
) -> None:
    from edge.errors import ConfigError
    from edge.tools.contain import Containment

    try:
        processes = Containment.create(tmp_path / "state", mechanism=mechanism)
    except ConfigError as exc:
        pytest.skip(f"no {mechanism} containment here: {exc}")
    plugins = tmp_path / "plugins"
    pidfile = tmp_path / "escaped"
    write_plugin(
        plugins,
        "escape",
        f'''
        import subprocess

        @plugin.tool
        def leave() -> dict:
            child = subprocess.Popen(["sleep", "300"], start_new_session=True)
            open({str(pidfile)!r}, "w").write(str(child.pid))
            return {{"pid": child.pid}}
        ''',
    )
    try:
        async with nothing_left(tmp_path) as pids:
            async with running(tmp_path, plugins, spare=False, processes=processes) as env:
                first = await env.wait("escape", "running")
                pids.append(first["pid"])
                escaped = (await env.call("escape__leave"))["pid"]
                pids.append(escaped)
                assert alive(escaped)
                await env.runners.reload("escape")  # a new session of its own: ended all the same
                with trio.fail_after(10):
                    while alive(escaped):
                        await trio.sleep(0.02)
                second = await env.wait("escape", "running")
                pids.append(second["pid"])
                pids.append((await env.call("escape__leave"))["pid"])
            # and when the nursery ends
    finally:
        processes.close()
