"""Containment benchmark: what holding a call's processes costs, per mechanism.

For every mechanism this machine offers (``edge.tools.contain``: cgroup v2,
subreaper, process group) it measures, in one trio process that has imported
the daemon (so a fork copies a daemon's page tables):

- how long starting ``/bin/true`` blocks the event loop: the spawn runs on the
  loop's own thread (for the parent-death signal), exactly as a ``terminal``
  call's does (``edge.tools.process``);
- the whole ``/bin/true`` call through ``run_captured``: the spawn, the
  output, the stop and the sweep of what is left.

Each mechanism runs with ``setpriv`` (the child runs no Python, so
``subprocess`` uses ``vfork``) and with a ``preexec_fn`` instead (the fallback
where ``setpriv`` is missing: a full ``fork``). The strongest mechanism gets
two more rows: with the per-call records ``edge run`` keeps in its state
directory (two small writes a call, each in a worker thread), and right after
another call of its own instead of after a pause (the kernel makes joining a
cgroup cheap for a few milliseconds after the last join, and costly after
that). The baseline is the process group only, without a ``Containment``
(the command exec'd as it is, no record, no parent-death signal); ratios are
against it.

The rows take turns spawn by spawn and call by call, so that all see the same
machine, and each measurement but the back-to-back row's comes after
``PAUSE`` seconds of idle loop, as a tool call from the cloud usually does.

    python bench/bench_contain.py [--quick] [--ballast MB] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

import edge.daemon  # noqa: F401 - the daemon's imports, for a daemon-sized process
from edge.errors import ConfigError
from edge.tools import procfs
from edge.tools.contain import CallProcesses, Containment
from edge.tools.process import _spawn, run_captured

COMMAND = ["/bin/true"]
#: Seconds of idle loop before each measurement (but the back-to-back row's).
PAUSE = 0.05
#: The mechanisms, strongest last, with the name each row carries.
MECHANISMS = {
    "group": "process group + parent-death signal",
    "subreaper": "subreaper",
    "cgroup": "cgroup v2",
}


@dataclass
class Case:
    """One way of holding a call's processes, and what was measured with it."""

    label: str
    handle: Containment | None
    #: Measured right after an unmeasured spawn or call of its own, not after ``PAUSE``.
    back_to_back: bool = False
    blocks: list[float] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_mb() -> int:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) // 1024


def line(name: str, block: str, call: str, extra: str = "") -> None:
    print(f"{name:<48} {block:>22} {call:>22}   {extra}", flush=True)


def make_cases(state: Path) -> list[Case]:
    """The baseline, then each mechanism available here; the extra rows for the strongest."""
    cases = [Case("process group only (baseline)", None)]
    strongest = None
    for mechanism, name in MECHANISMS.items():
        try:
            handle = Containment.create(None, mechanism=mechanism)
        except ConfigError as exc:
            print(f"{name}: not available here ({exc})")
            continue
        print(f"{name}: {handle.describe()}; setpriv: {handle.setpriv or 'missing'}")
        if handle.setpriv is not None:
            cases.append(Case(f"{name}, setpriv", handle))
        else:
            handle.close()
        fallback = Containment.create(None, mechanism=mechanism)
        fallback.setpriv = None
        cases.append(Case(f"{name}, preexec_fn", fallback))
        strongest = mechanism, name
    if strongest is not None:
        mechanism, name = strongest
        recording = Containment.create(state, mechanism=mechanism)
        print(f"records row: per-call records in {recording.calls_dir}")
        cases.append(Case(f"{name} + records (as edge run)", recording))
        again = Containment.create(None, mechanism=mechanism)
        if again.setpriv is None:
            again.close()
        else:
            cases.append(Case(f"{name}, setpriv, right after another call", again, True))
    return cases


async def spawn_once(case: Case, cwd: str, *, measured: bool = True) -> None:
    if measured and case.back_to_back:
        await spawn_once(case, cwd, measured=False)
    elif measured:
        await trio.sleep(PAUSE)
    call = CallProcesses.group_only() if case.handle is None else case.handle.open_call()
    child = None
    output = None
    try:
        env = call.env(os.environ)
        start = time.perf_counter()
        # No checkpoint inside on the pidfd path: the loop waits exactly this long.
        child, output = await _spawn(COMMAND, cwd, env, call)
        if measured:
            case.blocks.append(time.perf_counter() - start)
        await child.wait()
    finally:
        with trio.CancelScope(shield=True):
            await call.stop(child)
            if output is not None:
                await output.aclose()


async def call_once(case: Case, cwd: str, *, measured: bool = True) -> None:
    if measured and case.back_to_back:
        await call_once(case, cwd, measured=False)
    elif measured:
        await trio.sleep(PAUSE)
    start = time.perf_counter()
    done = await run_captured(COMMAND, cwd=cwd, env=os.environ, processes=case.handle)
    if measured:
        case.calls.append(time.perf_counter() - start)
    assert done.exit_code == 0, done


def report(cases: list[Case], spawn_on_loop: bool) -> None:
    base = cases[0]
    b_block, b_call = pct(base.blocks, 0.5), pct(base.calls, 0.5)
    line("", "spawn blocks the loop", "whole /bin/true call")
    line("mechanism", "p50 / p95 ms", "p50 / p95 ms", "ratio to baseline (p50): spawn, call")
    for case in cases:
        block = f"{pct(case.blocks, 0.5) * 1000:.3f} / {pct(case.blocks, 0.95) * 1000:.3f}"
        call = f"{pct(case.calls, 0.5) * 1000:.2f} / {pct(case.calls, 0.95) * 1000:.2f}"
        ratios = (
            f"{pct(case.blocks, 0.5) / b_block:.1f}x, {pct(case.calls, 0.5) / b_call:.2f}x"
            if case is not base
            else ""
        )
        line(case.label, block if spawn_on_loop else "n/a", call, ratios)
    if not spawn_on_loop:
        print("(no pidfd here: commands start from a worker thread, the loop is not blocked)")


async def measure(cases: list[Case], cwd: str, spawns: int, calls: int) -> None:
    for case in cases:  # warm up every path
        for _ in range(3):
            await spawn_once(case, cwd)
            await call_once(case, cwd)
        case.blocks.clear()
        case.calls.clear()
    for _ in range(spawns):
        for case in cases:
            await spawn_once(case, cwd)
    for _ in range(calls):
        for case in cases:
            await call_once(case, cwd)


async def main(args: argparse.Namespace) -> None:
    ballast = bytearray(args.ballast * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    spawns, calls = (25, 25) if args.quick else (100, 100)
    spawn_on_loop = procfs.pidfd_works()
    with tempfile.TemporaryDirectory(prefix="edge-bench-contain-", dir=args.state_dir) as tmp:
        cases = make_cases(Path(tmp) / "state")
        print(
            f"edge containment benchmark: {COMMAND[0]}, {os.cpu_count()} cores, "
            f"Linux {os.uname().release}, Python {sys.version.split()[0]}, RSS {rss_mb()} MB; "
            f"{spawns} spawns and {calls} calls per row, each after {PAUSE * 1000:g} ms idle"
        )
        try:
            await measure(cases, tmp, spawns, calls)
        finally:
            for case in cases:
                if case.handle is not None:
                    case.handle.close()
        report(cases, spawn_on_loop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer spawns and calls")
    parser.add_argument(
        "--ballast",
        type=int,
        default=0,
        metavar="MB",
        help="grow the process by MB of touched memory first (a fork's cost grows with it)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the records rows keep their records (a temporary directory in DIR; "
        "default: the system's temporary directory)",
    )
    trio.run(main, parser.parse_args())
