"""Plugin-runner benchmark: restart after a crash, call overhead, idle memory.

In one trio process, with real runner processes (``edge.nurseries.plugins``):

- **crash → ready**: the runner is killed (SIGKILL, then a tool calling
  ``os._exit``), and the time is taken until a new runner has registered its
  tools and said ready. The exit is noticed from the process and the socket at
  once; the supervisor restarts the first failure after a good run without a
  delay. (The usual design notices a dead plugin at its next health poll,
  every 30 s.)
- **call overhead**: the same tool body (``add(a, b)``) called through the
  executor as an in-process tool, and as a plugin tool (executor → host →
  Unix socket → runner → pydantic → the function, and back). The overhead is
  the difference of the two p50s; the bare function call is printed too. As a
  floor, the round trip of 100 bytes between this trio process and another
  (one task each side, a socketpair), and the runner's health ping; rows are
  also given as ratios to the floor, which moves with the machine's load.
- **idle memory**: each runner's RSS and PSS after it is ready and idle.

Rows take turns call by call, so both see the same machine.

    python bench/bench_plugins.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from functools import partial
from pathlib import Path
from typing import Any

import trio

from edge.nurseries.plugins import PluginRunners, serve_plugins
from edge.plugins.host import HostTiming
from edge.supervise import RestartPolicy
from edge.tools.execute import Executor
from edge.tools.policy import Policy
from edge.tools.registry import CallContext, ToolRegistry, ToolSpec

PLUGIN = '''
import os
from edge.plugin import Plugin

plugin = Plugin()

@plugin.tool
def add(a: int, b: int = 1) -> dict:
    """Add two numbers."""
    return {"sum": a + b}

@plugin.tool
async def add_async(a: int, b: int = 1) -> dict:
    """Add two numbers, on the runner's trio loop."""
    return {"sum": a + b}

@plugin.tool
def die() -> dict:
    os._exit(1)
'''


ECHO = """
import socket, sys, trio
async def main():
    fd = int(sys.argv[1])
    stream = trio.SocketStream(trio.socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM))
    while data := await stream.receive_some(65536):
        await stream.send_all(data)
trio.run(main)
"""


def start_echo() -> tuple[subprocess.Popen[bytes], trio.SocketStream]:
    """Another trio process echoing on a socketpair: the floor of any round trip."""
    ours, theirs = socket.socketpair()
    child = subprocess.Popen(
        [sys.executable, "-c", ECHO, str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        stdin=subprocess.DEVNULL,
    )
    theirs.close()
    return child, trio.SocketStream(trio.socket.from_stdlib_socket(ours))


def write_plugin(parent: Path, plugin_id: str) -> None:
    directory = parent / plugin_id
    directory.mkdir(parents=True)
    (directory / "plugin.toml").write_text(
        textwrap.dedent(f'''\
        id = "{plugin_id}"
        version = "0.1.0"
        entry = "main"
        sdk = ">=1.0,<2"
        ''')
    )
    (directory / "main.py").write_text(PLUGIN)


def add(a: int, b: int = 1) -> dict[str, int]:
    return {"sum": a + b}


async def in_process(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    return add(**args)


def memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of ``pid`` in MiB."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts[0] in ("Rss:", "Pss:"):
                values[parts[0]] = int(parts[1]) / 1024
    return values["Rss:"], values["Pss:"]


def p50_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.3f} ms"


async def wait_running(runners: PluginRunners, plugin_id: str, not_pid: int | None = None) -> int:
    while True:
        info = next(p for p in runners.info() if p["id"] == plugin_id)
        if info["status"] == "running" and info["pid"] not in (None, not_pid):
            return int(info["pid"])
        await trio.sleep(0.0005)


async def main(quick: bool) -> None:
    restarts = 5 if quick else 20
    calls = 500 if quick else 5000
    base = Path(tempfile.mkdtemp(prefix="edge-bench-", dir="/tmp"))
    os.environ["XDG_RUNTIME_DIR"] = str(base)
    try:
        plugins = base / "plugins"
        for plugin_id in ("bench", "idle1", "idle2"):
            write_plugin(plugins, plugin_id)
        (base / "ws").mkdir()
        registry = ToolRegistry()
        registry.add(ToolSpec("local_add", "add", {"type": "object"}, in_process))
        executor = Executor(registry, Policy.create(base / "ws", (), None), env={})

        async def call_tool(plugin: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
            return await executor.call(tool, args, approved=None)

        async with trio.open_nursery() as nursery:
            runners: PluginRunners = await nursery.start(
                partial(
                    serve_plugins,
                    registry,
                    [plugins],
                    call_tool=call_tool,
                    timing=HostTiming(),
                    policy=RestartPolicy(failures=10_000),  # crashes on purpose: never park
                )
            )
            pid = await wait_running(runners, "bench")
            for other in ("idle1", "idle2"):
                await wait_running(runners, other)

            # -- crash → ready ----------------------------------------------------------
            rows: dict[str, list[float]] = {}
            spares = runners.spares
            assert spares is not None
            for _ in range(restarts):
                for spare in (True, False):
                    for how in ("SIGKILL", "os._exit(1)"):
                        if spare:  # crashes are rare: the spare is there by the next one
                            await spares.waiting.wait_for(lambda pid: pid is not None)
                        else:
                            runners.spares = None
                        start = time.perf_counter()
                        if how == "SIGKILL":
                            os.kill(pid, 9)
                        else:
                            await executor.call("bench__die", {}, approved=None)
                        pid = await wait_running(runners, "bench", not_pid=pid)
                        rows.setdefault(f"{how}, {'spare' if spare else 'no spare'}", []).append(
                            time.perf_counter() - start
                        )
                        runners.spares = spares
                        await trio.sleep(0.2)
            print(f"crash -> restarted and ready ({restarts} each, target < 0.5 s):")
            for name, samples in rows.items():
                worst = max(samples) * 1000
                print(f"  {name:<24} p50 {p50_ms(samples)}, worst {worst:.1f} ms")

            # -- call overhead ----------------------------------------------------------
            args = {"a": 2, "b": 3}
            local, plugin, plugin_async, bare = [], [], [], []
            floor, ping = [], []
            echo, stream = start_echo()
            slot_runner = runners._slots["bench"].runner
            assert slot_runner is not None
            for _ in range(50):  # warm both paths
                await executor.call("local_add", args, approved=None)
                await executor.call("bench__add", args, approved=None)
            for _ in range(calls):
                start = time.perf_counter()
                add(**args)
                bare.append(time.perf_counter() - start)
                start = time.perf_counter()
                await executor.call("local_add", args, approved=None)
                local.append(time.perf_counter() - start)
                start = time.perf_counter()
                result = await executor.call("bench__add", args, approved=None)
                plugin.append(time.perf_counter() - start)
                assert result["sum"] == 5, result
                start = time.perf_counter()
                await executor.call("bench__add_async", args, approved=None)
                plugin_async.append(time.perf_counter() - start)
                start = time.perf_counter()
                await stream.send_all(b"x" * 100)
                await stream.receive_some(65536)
                floor.append(time.perf_counter() - start)
                start = time.perf_counter()
                await slot_runner.request("ping")
                ping.append(time.perf_counter() - start)
            echo.kill()
            echo.wait()
            await stream.aclose()
            overhead = statistics.median(plugin) - statistics.median(local)
            overhead_async = statistics.median(plugin_async) - statistics.median(local)
            base_p50 = statistics.median(floor)

            def row(samples: list[float]) -> str:
                return f"{p50_ms(samples)} ({statistics.median(samples) / base_p50:.1f}x floor)"

            print(f"call p50 ({calls} calls, turn by turn):")
            print(f"  floor: trio<->trio round trip {p50_ms(floor)}")
            print(f"  runner health ping            {row(ping)}")
            print(f"  bare function                 {statistics.median(bare) * 1e6:.2f} µs")
            print(f"  executor, in-process          {p50_ms(local)}")
            print(f"  executor, plugin (def)        {row(plugin)}")
            print(f"  executor, plugin (async def)  {row(plugin_async)}")
            print(f"  plugin overhead: def {overhead * 1000:.3f} ms, async def "
                  f"{overhead_async * 1000:.3f} ms (target < 0.3 ms)")

            # -- idle memory ------------------------------------------------------------
            await trio.sleep(1.0)
            print("idle runner memory:")
            for info in runners.info():
                rss, pss = memory(info["pid"])
                print(f"  {info['id']:<6} RSS {rss:.1f} MiB, PSS {pss:.1f} MiB")
            spare_pid = await spares.waiting.wait_for(lambda pid: pid is not None)
            assert spare_pid is not None
            rss, pss = memory(spare_pid)
            print(f"  {'spare':<6} RSS {rss:.1f} MiB, PSS {pss:.1f} MiB")
            await runners.stop_all()
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    trio.run(main, parser.parse_args().quick)
    sys.exit(0)
