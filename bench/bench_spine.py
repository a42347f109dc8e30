"""Spine benchmarks: edge run (a subprocess) against the fake cloud over loopback.

Prints one line per figure with its target and, where one exists, a baseline
measured in the same run, so the numbers read as ratios on a noisy machine.

    python bench/bench_spine.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from edge.dev.cloud import FakeCloud

TOKEN = "bench-token"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, value: str, target: str = "", extra: str = "") -> None:
    print(f"{name:<42} {value:>14}   {target:<18} {extra}")


def edge_script() -> str:
    script = Path(sys.executable).with_name("edge")
    return str(script) if script.exists() else "edge"


async def bench_tunnel(quick: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    (workdir / "ws").mkdir()
    (workdir / "ws" / "small.txt").write_text("hello edge\n" * 20)
    token_file = workdir / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    # Its own config, data and state: results a run leaves undelivered must not
    # reach the next run (nor the user's own edge).
    env = dict(
        os.environ,
        XDG_CONFIG_HOME=str(workdir / "cfg"),
        XDG_DATA_HOME=str(workdir / "data"),
        XDG_STATE_HOME=str(workdir / "state"),
    )
    async with trio.open_nursery() as nursery:
        cloud: FakeCloud = await nursery.start(FakeCloud([TOKEN]).serve)
        cmd = [
            edge_script(),
            "run",
            "--cloud",
            cloud.url,
            "--token-file",
            str(token_file),
            "--workspace",
            str(workdir / "ws"),
            "--no-control",
            "--log-level",
            "ERROR",
        ]
        proc = await trio.lowlevel.open_process(cmd, env=env)
        try:
            with trio.fail_after(30):
                await cloud.wait_connected()
            await trio.sleep(0.2)

            # 1. ping round trip (the baseline) and sequential file_read round trips
            n = 300 if quick else 2000
            pings = [await cloud.ping() for _ in range(n // 4)]
            trips = []
            for _ in range(n):
                start = time.perf_counter()
                result = await cloud.call("file_read", {"path": "small.txt"})
                trips.append(time.perf_counter() - start)
                assert "output" in result, result
            p50, p99 = pct(trips, 0.5) * 1e3, pct(trips, 0.99) * 1e3
            base = pct(pings, 0.5) * 1e3
            line(
                "file_read round trip p50",
                f"{p50:.3f} ms",
                "target < 1 ms",
                f"(ping/pong p50 {base:.3f} ms; ratio {p50 / base:.1f}x)",
            )
            line("file_read round trip p99", f"{p99:.3f} ms", "", f"({n} sequential calls)")

            # 2. 50 concurrent terminal sleep 0.2
            start = time.perf_counter()
            ids = [await cloud.start_call("terminal", {"command": "sleep 0.2"}) for _ in range(50)]
            for call_id in ids:
                result = await cloud.result(call_id)
                assert result.get("exit_code") == 0, result
            wall = time.perf_counter() - start
            line(
                "50 concurrent 'sleep 0.2' calls, wall",
                f"{wall:.3f} s",
                "target < 0.5 s",
                f"(ideal 0.2 s: {wall / 0.2:.2f}x; one by one would be 10 s)",
            )

            # 3. pong latency while a 1 s call runs
            slow = await cloud.start_call("terminal", {"command": "sleep 1"})
            await trio.sleep(0.1)
            during = [await cloud.ping()]  # at least one, however fast the call ends
            while slow not in cloud.results:
                during.append(await cloud.ping())
                await trio.sleep(0.02)
            line(
                "pong during a 1 s call, p50",
                f"{pct(during, 0.5) * 1e3:.3f} ms",
                "target < 20 ms",
                f"(max {max(during) * 1e3:.3f} ms over {len(during)} pings)",
            )

            # 4. reconnect time after a dropped socket. A connection that stayed up
            # STABLE_AFTER (5 s) is retried at once; wait that long before each drop.
            times = []
            for _ in range(2 if quick else 5):
                await trio.sleep(5.2)
                connections = len(cloud.reports)
                start = time.perf_counter()
                await cloud.drop()
                await cloud.wait_connected(connections + 1)
                times.append(time.perf_counter() - start)
            line(
                "reconnect after a dropped socket, p50",
                f"{statistics.median(times) * 1e3:.1f} ms",
                "",
                f"(max {max(times) * 1e3:.1f} ms; drop → next handshake done)",
            )
        finally:
            proc.terminate()
            with trio.move_on_after(5):
                await proc.wait()
            nursery.cancel_scope.cancel()


def bench_help() -> None:
    def wall(cmd: list[str]) -> float:
        runs = []
        for _ in range(7):
            start = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    base = wall([sys.executable, "-c", "pass"])
    help_time = wall([edge_script(), "--help"])
    line(
        "edge --help wall",
        f"{help_time * 1e3:.0f} ms",
        "target < 300 ms",
        f"(python -c pass {base * 1e3:.0f} ms; ratio {help_time / base:.1f}x)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    print(f"edge spine benchmarks ({os.cpu_count()} cores)")
    bench_help()
    trio.run(bench_tunnel, args.quick)


if __name__ == "__main__":
    main()
