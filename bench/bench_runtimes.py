"""Declared-tool benchmark (node and native): what a call costs beyond starting its process.

In one trio process that has imported the daemon, with the strongest
``Containment`` this machine offers (as ``edge run`` holds its calls), it
measures the whole call through the executor (policy, schema, the stdio
contract's JSON line in, the process run by ``run_piped``, the answer parsed,
truncation) of:

- a trivial node tool (``index.js`` reads stdin, prints ``{"output": "ok"}``),
  against ``node -e 0`` started the same way (``run_piped``, same
  containment, same environment): the ratio is the price of the contract and
  the executor over a bare node start. A third row starts the tool's own
  script the same way, fed the call's line, to tell node's own stdin and JSON
  handling from edge's part;
- a trivial native tool (a C program compiled here, or a shell script where
  gcc is missing), against ``/bin/true`` started the same way.

The rows take turns call by call, so that all see the same machine, each
after ``PAUSE`` seconds of idle loop. (WASM tools: ``bench/bench_wasm.py``.)

    python bench/bench_runtimes.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

import edge.daemon  # noqa: F401 - the daemon's imports, for a daemon-sized process
from edge.daemon import child_environment
from edge.tools.contain import Containment
from edge.tools.execute import Executor
from edge.tools.policy import Policy
from edge.tools.process import run_piped
from edge.tools.registry import ToolRegistry
from edge.tools.runtimes.load import load_declared, tool_spec
from edge.tools.runtimes.native import NativeRuntime
from edge.tools.runtimes.node import NodeRuntime

#: Seconds of idle loop before each measurement.
PAUSE = 0.02

NODE_TOOL = """\
let input = "";
process.stdin.on("data", (c) => { input += c; });
process.stdin.on("end", () => { JSON.parse(input); process.stdout.write('{"output": "ok"}'); });
"""

C_TOOL = r"""
#include <stdio.h>
int main(void) {
    char buf[4096];
    while (fread(buf, 1, sizeof buf, stdin) > 0) {}
    fputs("{\"output\": \"ok\"}", stdout);
    return 0;
}
"""

SH_TOOL = '#!/bin/sh\ncat >/dev/null\necho \'{"output": "ok"}\'\n'


@dataclass
class Row:
    label: str
    run: Callable[[], Awaitable[None]]
    times: list[float] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write_tools(tools: Path) -> str:
    """The node tool and the native one in ``tools``; returns what the native one is."""
    node = tools / "bench_node"
    node.mkdir(parents=True)
    (node / "tool.toml").write_text(
        'name = "bench_node"\ndescription = "x"\nruntime = "node"\nentry = "index.js"\n'
    )
    (node / "index.js").write_text(NODE_TOOL)
    native = tools / "bench_native"
    native.mkdir()
    gcc = shutil.which("gcc")
    if gcc is not None:
        (native / "tool.c").write_text(C_TOOL)
        subprocess.run([gcc, "-O2", "-o", str(native / "tool"), str(native / "tool.c")], check=True)
        kind = "C program"
    else:
        (native / "tool").write_text(SH_TOOL)
        (native / "tool").chmod(0o755)
        kind = "sh script (no gcc)"
    (native / "tool.toml").write_text(
        'name = "bench_native"\ndescription = "x"\nruntime = "native"\nentry = "tool"\n'
    )
    return kind


async def measure(rows: list[Row], rounds: int) -> None:
    for row in rows:  # warm up every path
        for _ in range(3):
            await row.run()
    for _ in range(rounds):
        for row in rows:
            await trio.sleep(PAUSE)
            start = time.perf_counter()
            await row.run()
            row.times.append(time.perf_counter() - start)


async def main(args: argparse.Namespace) -> None:
    node = shutil.which("node")
    if node is None:
        sys.exit("node is not installed: nothing to compare")
    rounds = 20 if args.quick else 100
    handle = Containment.create(None)
    with tempfile.TemporaryDirectory(prefix="edge-bench-runtimes-") as tmp:
        tools, workspace = Path(tmp) / "tools", Path(tmp) / "ws"
        workspace.mkdir()
        native_kind = write_tools(tools)
        policy = Policy.create(workspace)
        runtimes = {"node": NodeRuntime(), "native": NativeRuntime()}
        registry = ToolRegistry()
        for tool in load_declared([tools], policy, runtimes):
            assert tool.problem is None, tool.problem
            assert tool.runtime is not None
            registry.add(tool_spec(tool, runtimes[tool.runtime]))
        env = child_environment()
        executor = Executor(registry, policy, env, processes=handle)
        bare_env = {"PATH": env.get("PATH", os.defpath), "HOME": env.get("HOME", "/")}

        def tool_call(name: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                result = await executor.call(name, {}, approved=None)
                assert result == {"output": "ok"}, result

            return run

        def started(argv: list[str], stdin: bytes = b"") -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                done = await run_piped(argv, stdin=stdin, cwd=tmp, env=bare_env, processes=handle)
                assert done.exit_code == 0, done

            return run

        def started_with(argv: list[str]) -> Callable[[], Awaitable[None]]:
            """``argv`` fed a call's JSON line, as the tool is, but not through the executor."""
            return started(argv, b'{"tool": "bench_node", "args": {}, "callId": null}\n')

        script = str(tools / "bench_node" / "index.js")
        rows = [
            Row("node -e 0 (run_piped)", started([node, "-e", "0"])),
            Row("node tool call (executor)", tool_call("bench_node")),
            Row("node index.js, its own stdin (run_piped)", started_with([node, script])),
            Row("/bin/true (run_piped)", started(["/bin/true"])),
            Row(f"native tool call (executor, {native_kind})", tool_call("bench_native")),
        ]
        #: Which row each row's ratio is against.
        against = {1: 0, 2: 0, 4: 3}
        print(
            f"edge declared-tool benchmark: {os.cpu_count()} cores, Linux {os.uname().release}, "
            f"Python {sys.version.split()[0]}, node {_node_version(node)}, "
            f"containment {handle.describe()}; {rounds} calls per row, each after "
            f"{PAUSE * 1000:g} ms idle"
        )
        try:
            await measure(rows, rounds)
        finally:
            handle.close()
    print(f"{'':<46} {'p50 ms':>9} {'p95 ms':>9}   ratio (p50)")
    for i, row in enumerate(rows):
        base = rows[against[i]] if i in against else None
        ratio = f"{pct(row.times, 0.5) / pct(base.times, 0.5):.2f}x {base.label}" if base else ""
        p50, p95 = pct(row.times, 0.5) * 1000, pct(row.times, 0.95) * 1000
        print(f"{row.label:<46} {p50:>9.2f} {p95:>9.2f}   {ratio}")


def _node_version(node: str) -> str:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    trio.run(main, parser.parse_args())
