"""Runners that misbehave on purpose (request floods, huge registrations, frames of a
million values, exits while loading) and races around reloads and config: the daemon's
loop keeps running, the runner ends with a clear reason, nothing is left twice."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from .kit import alive, runner_pids, write_plugin
from .test_host import ADD, running, runtime_base  # noqa: F401 - the fixture

FAKE = r'''
import os, socket, struct, sys, time, msgpack
MODE = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["EDGE_RUNNER_SOCKET"])
def frame(d):
    b = msgpack.packb(d, use_bin_type=True)
    return struct.pack(">I", len(b)) + b
def env(kind, id, method, payload=None, plugin=None):
    return {"v": 1, "id": id, "kind": kind, "method": method, "plugin": plugin,
            "deadline": None, "payload": payload, "error": None}
def recv():
    n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
    return msgpack.unpackb(s.recv(n, socket.MSG_WAITALL))
token = os.environ["EDGE_RUNNER_TOKEN"]
s.sendall(frame(env("request", 1, "hello", {"token": token, "sdk": "1.0", "pid": os.getpid()})))
plugin = list(recv()["payload"]["plugins"])[0]
count = 3000 if MODE == "many_tools" else 1
tools = [{"name": f"t{i}", "input_schema": {"type": "object"}} for i in range(count)]
s.sendall(frame(env("request", 2, "register", {"tools": tools}, plugin)))
recv()
s.sendall(frame(env("request", 3, "ready", {})))
recv()
if MODE == "flood":
    i = 10
    while True:
        s.sendall(b"".join(frame(env("request", i + k, "config.get", {}, plugin)) for k in range(500)))
        i += 500
elif MODE == "wide":
    blob = frame(env("event", 0, "x", [{}] * 1_000_000, plugin))
    while True:
        s.sendall(blob)
time.sleep(600)
'''


class Lag:
    """The longest the event loop went without running a task that asks every 50 ms."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def watch(self) -> None:
        while True:
            start = time.monotonic()
            await trio.sleep(0.05)
            self.worst = max(self.worst, time.monotonic() - start - 0.05)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("flood", ("stopped answering health pings", "stopped reading its socket")),
        ("wide", ("more than 100000 values",)),
        ("many_tools", ("3000 tools, more than the 256",)),
    ],
)
async def test_a_hostile_runner_ends_and_the_loop_keeps_running(
    tmp_path: Path, runtime_base: Path, mode: str, reason: tuple[str, ...]  # noqa: F811
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "bad", ADD, capabilities=["config"])
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    lag = Lag()
    async with running(tmp_path, plugins, argv=(sys.executable, str(script), mode)) as env:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lag.watch)
            with trio.fail_after(60):
                while not any(
                    any(r in (e.get("lastError") or "") for r in reason) for e in env.events
                ):
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert lag.worst < 3.0, f"the event loop stalled for {lag.worst:.1f} s"


async def test_a_crash_while_loading_says_so(tmp_path: Path, runtime_base: Path) -> None:  # noqa: F811
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "dies", 'print("importing", file=sys.stderr, flush=True)\nos._exit(7)\n')
    async with running(tmp_path, plugins) as env:
        with trio.fail_after(30):
            while not any("while loading" in (e.get("lastError") or "") for e in env.events):
                await trio.sleep(0.05)
    reasons = [e["lastError"] for e in env.events if "while loading" in (e.get("lastError") or "")]
    assert "crashed (exit code 7; last stderr line: importing) while loading" in reasons[0]


async def test_events_and_results_json_cannot_carry_are_refused(
    tmp_path: Path, runtime_base: Path  # noqa: F811
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "bytes",
        """
        from edge.plugin import HostError

        @plugin.tool
        async def shout(ctx: Context) -> dict:
            try:
                await ctx.publish("blob", b"\\x00\\x01")
            except HostError as exc:
                return {"refused": exc.code, "message": str(exc)}
            return {"refused": None}
        """,
        capabilities=["events"],
    )
    async with running(tmp_path, plugins) as env:
        await env.wait("bytes", "running")
        result = await env.call("bytes__shout")
    assert result["refused"] == "bad_request" and "must be JSON" in result["message"]
    assert not [e for e in env.events if e.get("type") == "plugin_event"]


async def test_two_reloads_at_once_leave_one_runner(tmp_path: Path, runtime_base: Path) -> None:  # noqa: F811
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "twice", ADD)
    async with running(tmp_path, plugins, spare=False) as env:
        first = await env.wait("twice", "running")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(env.runners.reload, "twice")
            nursery.start_soon(env.runners.reload, "twice")
        info = await env.wait("twice", "running")
        runners = [p for p in runner_pids(os.getpid()) if alive(p)]
        assert info["pid"] in runners and first["pid"] not in runners
        assert len(runners) == 1
        assert (await env.call("twice__add", {"a": 1}))["sum"] == 2


async def test_a_reload_that_changes_the_id_is_refused(tmp_path: Path, runtime_base: Path) -> None:  # noqa: F811
    plugins = tmp_path / "plugins"
    directory = write_plugin(plugins, "old", ADD)
    async with running(tmp_path, plugins) as env:
        await env.wait("old", "running")
        manifest = directory / "plugin.toml"
        manifest.write_text(manifest.read_text().replace('id = "old"', 'id = "new"'))
        info: dict[str, Any] = await env.runners.reload("old")
        assert info["status"] == "invalid" and "restart edge to rename" in info["lastError"]
        assert "old__add" not in env.registry and [p["id"] for p in env.runners.info()] == ["old"]


async def test_a_config_change_while_starting_reaches_the_plugin(
    tmp_path: Path, runtime_base: Path  # noqa: F811
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins,
        "slowstart",
        """
        time.sleep(1.5)  # a slow import: the config changes meanwhile

        @plugin.tool
        def units(ctx: Context) -> dict:
            return {"units": ctx.config["units"]}
        """,
        config={"units": "metric"},
    )
    async with running(tmp_path, plugins, spare=False) as env:
        assert env.info("slowstart")["status"] == "starting"
        await env.runners.set_config("slowstart", {"units": "imperial"})
        await env.wait("slowstart", "running")
        with trio.fail_after(10):
            while (await env.call("slowstart__units"))["units"] != "imperial":
                await trio.sleep(0.05)


async def test_reload_finds_a_plugin_added_since_the_start(
    tmp_path: Path, runtime_base: Path  # noqa: F811
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "first", ADD)
    async with running(tmp_path, plugins) as env:
        await env.wait("first", "running")
        with pytest.raises(KeyError):
            await env.runners.reload("later")
        write_plugin(plugins, "later", ADD)
        await env.runners.reload("later")
        await env.wait("later", "running")
        assert (await env.call("later__add", {"a": 1}))["sum"] == 2
