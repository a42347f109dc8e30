"""Agents benchmark: a request's round trip over the relay, against a plain tool call.

Runs two ``edge run`` processes (each its own state directory and workspace)
against the fake cloud over loopback, and times, in the same run, one after
another (N of each, sequential):

- a plain ``file_read`` call over the tunnel (``tool_call`` → result);
- the same as an agents' task the cloud asks of edge two (``agent_request`` →
  its events → the final one);
- the same relayed: the cloud asks edge one to ``agent_ask`` edge two, which
  goes up to the cloud, down to edge two, and back the same way.

It prints the median and the 90th percentile of each, in milliseconds.

    python bench/bench_agents.py [--quick] [--n 200]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from edge.dev.cloud import FakeCloud

TOKEN = "bench-token"


async def run_edge(cloud: FakeCloud, home: Path, name: str) -> trio.Process:
    (home / "ws").mkdir(parents=True)
    (home / "ws" / "small.txt").write_text("hello edge\n")
    (home / "token").write_text(TOKEN)
    (home / "token").chmod(0o600)
    config = home / "cfg" / "edge"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(f'[agents]\nname = "{name}"\n')
    env = dict(
        os.environ,
        XDG_CONFIG_HOME=str(home / "cfg"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
    )
    env.pop("EDGE_TOKEN", None)
    script = Path(sys.executable).with_name("edge")
    cmd = [str(script) if script.exists() else "edge", "run", "--cloud", cloud.url]
    cmd += ["--token-file", str(home / "token"), "--workspace", str(home / "ws")]
    cmd += ["--no-control", "--log-level", "ERROR"]
    return await trio.lowlevel.open_process(cmd, env=env)


def agent_named(cloud: FakeCloud, name: str) -> str | None:
    for ident, report in cloud.agents.items():
        if report.get("agent", {}).get("name") == name:
            return ident
    return None


async def timed(n: int, once: Callable[[], Awaitable[Any]]) -> list[float]:
    for _ in range(max(3, n // 20)):  # warm up
        await once()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await once()
        out.append((time.perf_counter() - start) * 1000)
    return out


def show(label: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    print(f"{label:<52} p50 {statistics.median(ms):7.2f} ms   p90 {p90:7.2f} ms   (n={len(ms)})")


async def bench(n: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="edge-bench-agents-"))
    async with trio.open_nursery() as nursery:
        cloud: FakeCloud = await nursery.start(FakeCloud([TOKEN]).serve)
        procs = [
            await run_edge(cloud, workdir / "one", "one"),
            await run_edge(cloud, workdir / "two", "two"),
        ]
        try:
            with trio.fail_after(60):
                await cloud.wait_for(
                    lambda: (
                        agent_named(cloud, "one") is not None
                        and agent_named(cloud, "two") is not None
                    )
                )
            one, two = agent_named(cloud, "one"), agent_named(cloud, "two")
            assert one is not None
            assert two is not None
            args = {"path": "small.txt"}

            async def plain() -> None:
                result = await cloud.call("file_read", args)
                assert "output" in result, result

            async def direct() -> None:
                final = await cloud.agent_final(await cloud.ask_agent(two, "file_read", args))
                assert final["state"] == "completed", final

            async def relayed() -> None:
                task = await cloud.ask_agent(
                    one, "agent_ask", {"agent": "two", "tool": "file_read", "args": args}
                )
                final = await cloud.agent_final(task)
                assert final["state"] == "completed", final

            # The plain calls go to the newest connection: whichever edge that is.
            show("plain tool call over the tunnel (file_read)", await timed(n, plain))
            show("agents' task, cloud → edge (file_read)", await timed(n, direct))
            show("agents' task relayed, cloud → edge → cloud → edge", await timed(n, relayed))
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(10):
                for proc in procs:
                    await proc.wait()
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="round trips of each kind")
    parser.add_argument("--quick", action="store_true", help="30 of each")
    args = parser.parse_args()
    trio.run(bench, 30 if args.quick else args.n)


if __name__ == "__main__":
    main()
