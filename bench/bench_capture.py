"""Capture benchmarks: many captures in one edge process, the ASR endpoint in another.

Each capture runs the whole pipeline: a native source (PulseAudio's monitor of
the default sink when a sound server answers, else the shim's test pattern,
which takes the same thread → ring → pipe → trio path), the level meter, the
local recording and the ASR uplink to the fake cloud's endpoint running as a
separate process (`edge dev-cloud`), so its FFTs are not counted here.

Figures: CPU per stream as a share of one core (process CPU time over wall
time, divided by streams, with an idle baseline of the same process measured
in the same run) and as a ratio to the cost of a trio loop that only wakes
50 times a second (the least any per-frame pipeline can cost), the CPU per
added stream, the most concurrent captures without a dropped frame,
frame-in-ring → bytes-on-socket latency (p50/p99; measured when the send call
returns, so an upper bound), and memory per capture.

With the system source, every capture reads the same sink's monitor: edge
opens it once for all of them (``edge.capture.pump``) and its backend thread
puts each fragment in every capture's ring at the same instant: at 64
captures that is a burst of 64 frames every 20 ms, the worst case for
latency. The pattern source's threads run on independent timers. Each level
also says how many full garbage collections (each a pause of tens of
milliseconds here) fell in its measured window.

    python bench/bench_capture.py [--quick] [--pin] [--source system|pattern]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from edge.capture.capture import Capture, CaptureRequest
from edge.capture.sources import AudioFormat, parse_source, probe_native
from edge.capture.uplink import AsrTarget
from edge.errors import CaptureError, first_leaf
from edge.nurseries.captures import serve_captures
from edge.secret import Secret

TOKEN = "bench-token"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return (
        ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")
    )


def line(name: str, value: str, target: str = "", extra: str = "") -> None:
    print(f"{name:<44} {value:>14}   {target:<20} {extra}", flush=True)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for row in f:
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin_apart(endpoint_pid: int) -> str:
    """Run the endpoint on the last core and this process (every thread) on the others.

    The fake endpoint works hardest exactly when edge does (it reads each burst
    as edge writes it): on a shared core it takes edge's time slices in the
    middle of a burst. Returns how it was placed, for the heading.
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return ""
    mine, its = set(cores[:-1]), {cores[-1]}
    os.sched_setaffinity(endpoint_pid, its)
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), mine)
    return f" edge on cores {sorted(mine)}, endpoint on {sorted(its)},"


async def run_level(
    n: int, source: str, asr_url: str, out_dir: Path, seconds: float
) -> dict[str, Any]:
    """``n`` captures for ``seconds``; CPU, drops, latency, memory."""
    fmt = AudioFormat(16000, 1, 20)
    captures: list[Capture] = []
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(serve_captures, lambda event: None)
        rss_before = rss_kib()
        for i in range(n):
            request = CaptureRequest(
                f"bench-{n}-{i}",
                parse_source(source),
                fmt,
                out_dir,
                "wav",
                AsrTarget(asr_url, Secret(TOKEN)),
            )
            captures.append(await handle.start(request))
        await trio.sleep(1.0)  # connections up, first recording blocks written
        for c in captures:
            assert c.uplink is not None
            c.uplink.stats.latencies.clear()
        frames0 = sum(c.frames for c in captures)
        full_gcs0 = gc.get_stats()[2]["collections"]
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        await trio.sleep(seconds)
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
        full_gcs = gc.get_stats()[2]["collections"] - full_gcs0
        frames = sum(c.frames for c in captures) - frames0
        rss_during = rss_kib()
        latencies = [x for c in captures if c.uplink for x in c.uplink.stats.latencies]
        connected = sum(1 for c in captures if c.uplink and c.uplink.stats.connected)
        summaries = await handle.stop_all()
        nursery.cancel_scope.cancel()
    dropped = sum(sum(s["droppedFrames"].values()) for s in summaries)
    return {
        "cpu_share": cpu / wall,
        "frames": frames,
        "expected": n * wall * 50,
        "dropped": dropped,
        "lat": latencies,
        "rss_per": (rss_during - rss_before) / n,
        "connected": connected,
        "complete": sum(1 for s in summaries if s["asr"]["complete"]),
        "full_gcs": full_gcs,
    }


async def wakeup_floor(seconds: float) -> float:
    """CPU share of this process while one task sleeps 20 ms at a time: trio's own cost."""
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    for _ in range(round(seconds / 0.02)):
        await trio.sleep(0.02)
    return (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)


async def main(args: argparse.Namespace) -> None:
    source = args.source
    if source is None:
        try:
            await probe_native(parse_source("system"), AudioFormat())
            source = "system"
        except CaptureError:
            source = "pattern"
    port = free_port()
    edge = Path(sys.executable).with_name("edge")
    # Started before any capture, outside the measured windows: blocking here is fine.
    cloud = subprocess.Popen(  # noqa: ASYNC220
        [str(edge), "dev-cloud", "--port", str(port), "--token", TOKEN],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert cloud.stdout is not None
        cloud.stdout.readline()  # "fake cloud on ..."
        pinned = pin_apart(cloud.pid) if args.pin else ""
        asr_url = f"ws://127.0.0.1:{port}/asr"
        seconds = 3.0 if args.quick else 8.0
        print(
            f"edge capture benchmark: source {source}, 16 kHz mono, 20 ms frames,{pinned} "
            f"{os.cpu_count()} cores, {seconds:g} s per level, ASR endpoint in another process"
        )
        with tempfile.TemporaryDirectory() as tmp:
            cpu0, wall0 = cpu_seconds(), time.perf_counter()
            await trio.sleep(seconds / 2)
            idle = (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
            line("idle process (baseline)", f"{idle * 100:.2f} % core")
            floor = await wakeup_floor(seconds / 2) - idle
            line(
                "trio waking 50 times a second (baseline)",
                f"{floor * 100:.2f} % core",
                "",
                "the least one capture can cost: one wake-up per 20 ms frame",
            )
            levels = [1, 16, 32, 64] if args.quick else [1, 16, 32, 64, 96, 128]
            results = {}
            best = 0
            for n in levels:
                try:
                    r = await run_level(n, source, asr_url, Path(tmp), seconds)
                except BaseExceptionGroup as group:
                    refused = group.subgroup(CaptureError)
                    if refused is None:
                        raise
                    first = first_leaf(refused)
                    line(f"{n:>3} captures", "refused", "", f"by the source: {first}")
                    break
                results[n] = r
                per = (r["cpu_share"] - idle) / n * 100
                if n == 1:
                    one = per
                ok = r["dropped"] == 0 and r["connected"] == n
                if ok:
                    best = n
                line(
                    f"{n:>3} captures: CPU per stream",
                    f"{per:.3f} % core",
                    "< 1 % of a core",
                    f"{per / 100 / floor:.1f}x the wake-up floor, "
                    f"total {r['cpu_share'] * 100:.1f} %, {r['dropped']} dropped, "
                    f"p50 {pct(r['lat'], 0.5) * 1000:.2f} ms "
                    f"p99 {pct(r['lat'], 0.99) * 1000:.2f} ms, "
                    f"{r['rss_per']:.0f} KiB/capture, {r['complete']}/{n} transcripts complete, "
                    f"{r['full_gcs']} full GC",
                )
                if not ok:
                    break
            line(
                "most concurrent captures without a drop",
                f"{best}",
                ">= 64 on 2 cores",
                f"(levels tried: {', '.join(map(str, results))})",
            )
            r64 = results.get(64) or results[max(results)]
            top = max(results)
            if top > 1:
                marginal = (results[top]["cpu_share"] - results[1]["cpu_share"]) / (top - 1)
                line(
                    f"CPU per added stream (1 -> {top} captures)",
                    f"{marginal * 100:.3f} % core",
                    "< 1 % of a core",
                    f"(one capture alone: {one:.2f} %)",
                )
            line(
                "frame-to-socket latency p50 (64 captures)", f"{pct(r64['lat'], 0.5) * 1000:.2f} ms"
            )
            line(
                "frame-to-socket latency p99 (64 captures)",
                f"{pct(r64['lat'], 0.99) * 1000:.2f} ms",
                "< 5 ms",
            )
            line("memory per capture (64 captures)", f"{r64['rss_per']:.0f} KiB")
    finally:
        cloud.terminate()
        cloud.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter levels, up to 64 captures")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="keep the ASR endpoint off edge's cores (Linux): its work does not share edge's",
    )
    parser.add_argument(
        "--source", choices=["system", "pattern"], help="default: system if a sound server answers"
    )
    trio.run(main, parser.parse_args())
