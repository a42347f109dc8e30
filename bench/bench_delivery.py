"""Delivery benchmark: what a clean stop keeps, and what the next start sends again.

Runs ``edge run`` (a subprocess, its own state directory) against the fake
cloud over loopback, sends N ``file_read`` calls (a window of them in flight),
waits for every result, stops edge with SIGTERM at once, counts the results it
kept for the next run, starts it again and counts the results the cloud
receives a second time. Every kept result the cloud already had is a resend.

    python bench/bench_delivery.py [--calls 10000]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import trio

from edge.dev.cloud import FakeCloud

TOKEN = "bench-token"
WINDOW = 256


def kept(state: Path) -> int:
    """Results waiting for the next run: rows of the journal (or lines of an older outbox)."""
    db = state / "edge" / "edge.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM journal_results").fetchone()[0])
    legacy = state / "edge" / "outbox.jsonl"
    return len(legacy.read_text().splitlines()) if legacy.exists() else 0


async def run_edge(cloud: FakeCloud, workdir: Path, env: dict[str, str]) -> trio.Process:
    script = Path(sys.executable).with_name("edge")
    cmd = [str(script) if script.exists() else "edge", "run", "--cloud", cloud.url]
    cmd += ["--token-file", str(workdir / "token"), "--workspace", str(workdir / "ws")]
    cmd += ["--no-control", "--log-level", "ERROR"]
    return await trio.lowlevel.open_process(cmd, env=env)


async def bench(calls: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="edge-bench-delivery-"))
    (workdir / "ws").mkdir()
    (workdir / "ws" / "small.txt").write_text("hello edge\n")
    (workdir / "token").write_text(TOKEN)
    (workdir / "token").chmod(0o600)
    state = workdir / "state"
    env = dict(
        os.environ,
        XDG_CONFIG_HOME=str(workdir / "cfg"),
        XDG_DATA_HOME=str(workdir / "data"),
        XDG_STATE_HOME=str(state),
    )
    async with trio.open_nursery() as nursery:
        cloud: FakeCloud = await nursery.start(FakeCloud([TOKEN]).serve)
        proc = await run_edge(cloud, workdir, env)
        try:
            with trio.fail_after(60):
                await cloud.wait_connected()
            start = time.perf_counter()
            ids: list[int] = []
            for _ in range(calls):
                if len(ids) - len(cloud.results) >= WINDOW:
                    await cloud.wait_for(lambda: len(ids) - len(cloud.results) < WINDOW)
                ids.append(await cloud.start_call("file_read", {"path": "small.txt"}))
            await cloud.wait_for(lambda: len(cloud.results) >= calls)
            wall = time.perf_counter() - start
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
        print(f"{calls} calls, every result received, in {wall:.1f} s ({calls / wall:.0f}/s)")
        left = kept(state)
        print(f"kept after a clean stop (SIGTERM right after the last result): {left}")
        proc = await run_edge(cloud, workdir, env)
        try:
            with trio.move_on_after(max(10.0, left / 500)):
                await cloud.wait_connected(2)
                await cloud.wait_for(lambda: cloud.duplicate_results >= left)
            await trio.sleep(1.0)  # anything more would come at once
            print(f"sent again by the next start (the cloud already had them): "
                  f"{cloud.duplicate_results}")
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    trio.run(bench, args.calls)


if __name__ == "__main__":
    main()
