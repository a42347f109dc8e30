"""MCP benchmark: what edge's MCP layer adds over the bare SDK client.

Two clients talk to two copies of the same stdio server (edge's test server,
``tests/mcp/servers/behave.py``, tool ``echo``), in one trio process:

- bare: the SDK's ``stdio_client`` + ``ClientSession.call_tool``, nothing else;
- edge: the full path a tunnel call takes after parsing: ``Executor.call``
  (policy, approval, schema check, timeout) → the MCP tool → the session
  task's channel → ``call_tool`` → the result mapped to an edge result.

Latency: sequential calls, bare and edge alternating in rounds so that both
see the same machine; p50/p99 and the difference. Throughput: 16 concurrent
callers for a fixed time, calls per second, bare and edge.

    python bench/bench_mcp.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import trio

from edge.mcp.config import parse_server
from edge.nurseries.mcp import serve_mcp
from edge.tools.execute import Executor
from edge.tools.policy import Policy
from edge.tools.registry import ToolRegistry

SERVER = Path(__file__).resolve().parents[1] / "tests" / "mcp" / "servers" / "behave.py"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, value: str, target: str = "", extra: str = "") -> None:
    print(f"{name:<44} {value:>14}   {target:<18} {extra}", flush=True)


async def main(args: argparse.Namespace) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    rounds, per_round = (10, 50) if args.quick else (30, 100)
    seconds = 2.0 if args.quick else 5.0
    print(
        f"edge MCP benchmark: stdio server {SERVER.name}, tool echo, {os.cpu_count()} cores, "
        f"{rounds} rounds of {per_round} sequential calls each way"
    )
    params = StdioServerParameters(command=sys.executable, args=[str(SERVER)])
    registry = ToolRegistry()
    executor = Executor(registry, Policy.create(Path.cwd()), env={})
    with open(os.devnull, "w") as devnull:  # noqa: ASYNC230 - before anything runs
        async with (
            stdio_client(params, errlog=devnull) as (read, write),
            ClientSession(read, write) as session,
            trio.open_nursery() as nursery,
        ):
            await session.initialize()
            servers = await nursery.start(serve_mcp, registry)
            server = await servers.add(
                parse_server("b", {"command": sys.executable, "args": [str(SERVER)]})
            )
            registered = trio.Event()
            registry.subscribe(lambda: "b__echo" in registry and registered.set())
            with trio.fail_after(30):
                await registered.wait()
            args_ = {"text": "hello"}

            async def bare() -> Any:
                return await session.call_tool("echo", args_)

            async def edge() -> Any:
                result = await executor.call("b__echo", args_, approved=None)
                assert result.get("output") == "hello", result
                return result

            for _ in range(50):  # warm up both paths
                await bare()
                await edge()
            bare_lat: list[float] = []
            edge_lat: list[float] = []
            for _ in range(rounds):
                for fn, into in ((bare, bare_lat), (edge, edge_lat)):
                    for _ in range(per_round):
                        t = time.perf_counter()
                        await fn()
                        into.append(time.perf_counter() - t)
            b50, b99 = pct(bare_lat, 0.5) * 1000, pct(bare_lat, 0.99) * 1000
            e50, e99 = pct(edge_lat, 0.5) * 1000, pct(edge_lat, 0.99) * 1000
            line("bare SDK call p50 / p99", f"{b50:.3f} / {b99:.3f} ms")
            line("edge call p50 / p99", f"{e50:.3f} / {e99:.3f} ms")
            line("edge adds at p50", f"{e50 - b50:.3f} ms", "< 0.5 ms", f"({e50 / b50:.2f}x)")
            line("edge adds at p99", f"{e99 - b99:.3f} ms")

            async def throughput(fn: Any) -> float:
                count = 0

                async def caller() -> None:
                    nonlocal count
                    while True:
                        await fn()
                        count += 1

                async with trio.open_nursery() as callers:
                    for _ in range(16):
                        callers.start_soon(caller)
                    await trio.sleep(seconds)
                    callers.cancel_scope.cancel()
                return count / seconds

            b_rate = await throughput(bare)
            e_rate = await throughput(edge)
            line("16 concurrent callers: bare SDK", f"{b_rate:.0f} calls/s")
            line(
                "16 concurrent callers: edge",
                f"{e_rate:.0f} calls/s",
                "",
                f"({e_rate / b_rate:.2f}x bare)",
            )
            info = server.info()["toolMetrics"]["echo"]
            line(
                "edge's own figures for echo",
                f"p95 {info['p95Ms']} ms",
                "",
                f"{info['calls']} calls",
            )
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds, shorter throughput runs"
    )
    trio.run(main, parser.parse_args())
