"""Pong latency while grep runs a pathological pattern: edge run (a subprocess) and the fake cloud.

grep matches with RE2 (linear time; the GIL is let go while it matches), so
``(a+)+$`` over lines of a's ending in b — minutes per line for a
backtracking engine — must not hold up the daemon's answers to pings.

    python bench/bench_grep_stall.py [--lines N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from edge.dev.cloud import FakeCloud

TOKEN = "bench-token"
#: One line of bait: 32 a's and a b.
BAIT = "a" * 32 + "b\n"


def line(name: str, value: str, target: str = "", extra: str = "") -> None:
    print(f"{name:<44} {value:>12}   {target:<18} {extra}")


def write_bait(path: Path, lines: int) -> None:
    with open(path, "w") as f:
        f.write(BAIT * 3)
        f.write("a" * (3 * 1024 * 1024) + "b\n")
        for _ in range(lines // 1000):
            f.write(BAIT * 1000)


async def pings_until(cloud: FakeCloud, done: trio.Event) -> list[float]:
    found: list[float] = []
    while not done.is_set():
        found.append(await cloud.ping())
        await trio.sleep(0.002)
    return found


async def bench(lines: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="edge-bench-grep-"))
    ws = workdir / "ws"
    ws.mkdir()
    write_bait(ws / "bait.txt", lines)
    token = workdir / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    env = dict(os.environ, XDG_CONFIG_HOME=str(workdir / "cfg"),
               XDG_DATA_HOME=str(workdir / "data"), XDG_STATE_HOME=str(workdir / "state"))
    async with trio.open_nursery() as nursery:
        cloud: FakeCloud = await nursery.start(FakeCloud([TOKEN]).serve)
        cmd = [sys.executable, "-m", "edge", "run", "--cloud", cloud.url, "--token-file",
               str(token), "--workspace", str(ws), "--no-control", "--log-level", "ERROR"]
        proc = await trio.lowlevel.open_process(cmd, env=env)
        try:
            with trio.fail_after(30):
                await cloud.wait_connected()
            await trio.sleep(0.2)
            idle = [await cloud.ping() for _ in range(50)]
            done = trio.Event()
            during: list[float] = []

            async def measure() -> None:
                during.extend(await pings_until(cloud, done))

            nursery.start_soon(measure)
            start = time.perf_counter()
            with trio.fail_after(120):
                result = await cloud.call("grep", {"pattern": r"(a+)+$", "path": "bait.txt"})
            wall = time.perf_counter() - start
            done.set()
            await trio.sleep(0.05)
            assert "error" not in result, result
            line("grep (a+)+$ wall", f"{wall * 1e3:.0f} ms", "",
                 f"({lines + 4} lines, {result['count']} matches)")
            line("pong while idle, p50", f"{statistics.median(idle) * 1e3:.3f} ms")
            line("pong during the grep, p50", f"{statistics.median(during) * 1e3:.3f} ms", "",
                 f"({len(during)} pings)")
            line("pong during the grep, worst", f"{max(during) * 1e3:.3f} ms", "target < 50 ms",
                 "(a backtracking engine: minutes)")
        finally:
            proc.terminate()
            with trio.move_on_after(5):
                await proc.wait()
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=300_000, help="lines of bait to search")
    args = parser.parse_args()
    print(f"edge grep stall benchmark ({os.cpu_count()} cores)")
    trio.run(bench, args.lines)


if __name__ == "__main__":
    main()
