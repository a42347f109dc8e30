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
from dataclasses import dataclass
from pathlib import Path

import trio

from edge.dev.cloud import FakeCloud

TOKEN = "bench-token"
#: Calls the fake cloud keeps in flight during the burst (its own queue of results to
#: read grows with it: a pong waits behind up to this many results in the cloud).
WINDOW = 64


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, value: str, target: str = "", extra: str = "") -> None:
    print(f"{name:<42} {value:>14}   {target:<18} {extra}")


def edge_script() -> str:
    script = Path(sys.executable).with_name("edge")
    return str(script) if script.exists() else "edge"


def workdir_and_env() -> tuple[Path, dict[str, str]]:
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
        # Every peer starts as an installed program does, from cached bytecode (an
        # environment that turns the cache off would make edge, whose own modules are
        # not compiled at install, recompile them at every start).
        PYTHONPYCACHEPREFIX=str(Path(tempfile.gettempdir()) / "edge-bench-pycache"),
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return workdir, env


def edge_cmd(cloud: FakeCloud, workdir: Path) -> list[str]:
    return [
        edge_script(),
        "run",
        "--cloud",
        cloud.url,
        "--token-file",
        str(workdir / "token"),
        "--workspace",
        str(workdir / "ws"),
        "--no-control",
        "--log-level",
        "ERROR",
    ]


def peer_cmd(peer: str, cloud: FakeCloud, workdir: Path) -> list[str]:
    if peer == "edge":
        return edge_cmd(cloud, workdir)
    baseline = str(Path(__file__).with_name("baseline_client.py"))
    return [sys.executable, baseline, peer, cloud.url, TOKEN, str(workdir / "ws")]


@dataclass
class PeerRun:
    handshake: float
    p50: float
    p99: float
    burst_rate: float
    burst_pong_p50: float
    burst_pong_p99: float
    burst_pong_max: float
    burst_refused: int
    rss_growth_kib: int


def handshakes(cloud: FakeCloud) -> int:
    """Handshakes the cloud has seen (a fake cloud older than ``handshakes`` counted reports,
    one per connection then: this runs against a checkout of an earlier edge too)."""
    return getattr(cloud, "handshakes", len(cloud.reports))


def rss_kib(pid: int) -> int:
    """Resident memory high-water mark of ``pid`` (``VmHWM``), KiB."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1])
    return 0


async def burst(cloud: FakeCloud, calls: int, window: int) -> tuple[float, list[float], int]:
    """``calls`` small calls, up to ``window`` in flight, while pings go every 20 ms:
    (calls per second, pong latencies, calls refused as busy)."""
    first = next_id = 10_000_000 + len(cloud.results)
    last = first + calls
    base = len(cloud.results)
    pongs: list[float] = []
    done = trio.Event()

    def answered() -> int:
        return len(cloud.results) - base

    def room() -> bool:
        return next_id - first - answered() < window

    async def pinger() -> None:
        while not done.is_set():
            pongs.append(await cloud.ping())
            await trio.sleep(0.02)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pinger)
        while next_id < last:
            await cloud.wait_for(room)
            top = min(last, first + answered() + window)
            while next_id < top:
                await cloud.start_call("file_read", {"path": "small.txt"}, call_id=next_id)
                next_id += 1
        await cloud.wait_for(lambda: answered() >= calls)
        wall = time.perf_counter() - start
        done.set()
    refused = sum(
        1 for i in range(first, last) if "busy" in str(cloud.results[i].get("error", ""))
    )
    return calls / wall, pongs, refused


async def run_peer(
    peer: str, cloud: FakeCloud, workdir: Path, env: dict[str, str], n: int, burst_calls: int
) -> PeerRun:
    cmd = peer_cmd(peer, cloud, workdir)
    done = handshakes(cloud)
    start = time.perf_counter()
    proc = await trio.lowlevel.open_process(cmd, env=env)
    try:
        with trio.fail_after(30):
            await cloud.wait_connected(done + 1)
        handshake = time.perf_counter() - start
        await trio.sleep(0.3)  # let what starts beside the handshake settle
        for _ in range(50):  # warm up
            await cloud.call("file_read", {"path": "small.txt"})
        trips = []
        for _ in range(n):
            t0 = time.perf_counter()
            result = await cloud.call("file_read", {"path": "small.txt"})
            trips.append(time.perf_counter() - t0)
            assert "output" in result, result
        before = rss_kib(proc.pid)
        rate, pongs, refused = await burst(cloud, burst_calls, window=WINDOW)
        growth = rss_kib(proc.pid) - before
        return PeerRun(
            handshake,
            pct(trips, 0.5),
            pct(trips, 0.99),
            rate,
            pct(pongs, 0.5),
            pct(pongs, 0.99),
            max(pongs),
            refused,
            growth,
        )
    finally:
        proc.terminate()
        with trio.move_on_after(5):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def bench_peers(quick: bool, rounds: int) -> None:
    """edge beside the two minimal clients, against the same fake cloud, in turns."""
    n = 300 if quick else 1000
    burst_calls = 2000 if quick else 10_000
    workdir, env = workdir_and_env()
    peers = ["asyncio", "trio", "wsproto", "edge"]
    runs: dict[str, list[PeerRun]] = {peer: [] for peer in peers}
    async with trio.open_nursery() as nursery:
        cloud: FakeCloud = await nursery.start(FakeCloud([TOKEN]).serve)
        for peer in peers:  # warm the bytecode cache and the page cache: not measured
            await run_peer(peer, cloud, workdir, env, 10, 10)
        for _ in range(rounds):
            for peer in peers:
                runs[peer].append(await run_peer(peer, cloud, workdir, env, n, burst_calls))
        nursery.cancel_scope.cancel()
    print(
        f"\n{n} sequential file_read calls, then {burst_calls} pipelined ({WINDOW} in flight, "
        f"a ping every 20 ms); {rounds} rounds, peers in turn, one fake cloud"
    )
    print(
        f"{'peer':<8} {'round':>5} {'handshake':>10} {'p50':>9} {'p99':>9} "
        f"{'burst':>12} {'pong p50/p99/max':>20} {'busy':>5} {'RSS +':>8}"
    )
    for peer in peers:
        for i, r in enumerate(runs[peer], 1):
            print(
                f"{peer:<8} {i:>5} {r.handshake * 1e3:>8.0f}ms {r.p50 * 1e6:>7.0f}us "
                f"{r.p99 * 1e6:>7.0f}us {r.burst_rate:>7.0f} /s "
                f"{r.burst_pong_p50 * 1e3:>6.1f}/{r.burst_pong_p99 * 1e3:.1f}/"
                f"{r.burst_pong_max * 1e3:.1f}ms "
                f"{r.burst_refused:>5} {r.rss_growth_kib:>6}KiB"
            )

    def med(peer: str, what: str) -> float:
        return statistics.median(getattr(r, what) for r in runs[peer])

    print()
    line(
        "edge file_read p50 / asyncio client's",
        f"{med('edge', 'p50') / med('asyncio', 'p50'):.2f}x",
        "target <= 1.0x",
        f"(edge {med('edge', 'p50') * 1e6:.0f} us, asyncio {med('asyncio', 'p50') * 1e6:.0f} us)",
    )
    line(
        "edge file_read p99 / asyncio client's",
        f"{med('edge', 'p99') / med('asyncio', 'p99'):.2f}x",
        "target <= 1.0x",
        f"(edge {med('edge', 'p99') * 1e6:.0f} us, asyncio {med('asyncio', 'p99') * 1e6:.0f} us)",
    )
    line(
        "edge file_read p50 / trio-websocket client's",
        f"{med('edge', 'p50') / med('trio', 'p50'):.2f}x",
        "target <= 1.1x",
        f"(trio-websocket {med('trio', 'p50') * 1e6:.0f} us)",
    )
    line(
        "edge first handshake / asyncio client's",
        f"{med('edge', 'handshake') / med('asyncio', 'handshake'):.2f}x",
        "target <= 1.3x",
        f"(edge {med('edge', 'handshake') * 1e3:.0f} ms, asyncio "
        f"{med('asyncio', 'handshake') * 1e3:.0f} ms, from process start)",
    )
    line(
        f"edge burst, {burst_calls} calls",
        f"{med('edge', 'burst_rate'):.0f} /s",
        "target >= 3000 /s",
        f"(asyncio {med('asyncio', 'burst_rate'):.0f} /s, trio-websocket "
        f"{med('trio', 'burst_rate'):.0f} /s)",
    )
    line(
        "edge pong during the burst, p99",
        f"{med('edge', 'burst_pong_p99') * 1e3:.1f} ms",
        "target < 20 ms",
        f"(max {max(r.burst_pong_max for r in runs['edge']) * 1e3:.1f} ms; asyncio p99 "
        f"{med('asyncio', 'burst_pong_p99') * 1e3:.1f} ms; RSS growth max "
        f"{max(r.rss_growth_kib for r in runs['edge'])} KiB)",
    )


async def bench_tunnel(quick: bool) -> None:
    workdir, env = workdir_and_env()
    async with trio.open_nursery() as nursery:
        cloud: FakeCloud = await nursery.start(FakeCloud([TOKEN]).serve)
        cmd = edge_cmd(cloud, workdir)
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
                connections = handshakes(cloud)
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
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the peer comparison")
    parser.add_argument("--peers-only", action="store_true", help="only the peer comparison")
    args = parser.parse_args()
    print(f"edge spine benchmarks ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    if not args.peers_only:
        bench_help()
    trio.run(bench_peers, args.quick, args.rounds)
    if not args.peers_only:
        trio.run(bench_tunnel, args.quick)


if __name__ == "__main__":
    main()
