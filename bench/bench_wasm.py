"""WASM tool benchmark: what a call of a trivial WASI module costs, cached and not.

It measures, for a module that reads the call on stdin and answers a fixed
JSON object (written in WAT, compiled by wasmtime):

- the first call of a fresh ``WasmRuntime``: the compile, its serialization,
  the engine and its deserialization, then the run;
- a call with the compile cached, through ``WasmRuntime.run`` (target: p50
  under 2 ms) and through ``Executor.call`` (lookup, policy, schema, timeout,
  truncation on top);
- how long a spinning guest takes to stop after its call is cancelled;
- the ways a guest can be interrupted, each measured per call in a plain
  thread (no trio): one shared engine (a cancel would trap every running
  guest), an engine per call with the module deserialized into it, and a
  pooled engine per running call (what ``edge.tools.runtimes.wasm`` does).

    python bench/bench_wasm.py [--quick]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import trio
import wasmtime

import edge.daemon  # noqa: F401 - the daemon's imports, for a daemon-sized process
from edge.config import Config
from edge.daemon import build_executor
from edge.tools.policy import Policy
from edge.tools.registry import CallContext
from edge.tools.runtimes.load import load_declared, tool_spec
from edge.tools.runtimes.manifest import ToolManifest, load_manifest
from edge.tools.runtimes.wasm import WasmRuntime, _engine_config

#: Reads stdin to its end, answers {"output":"ok"}.
ANSWER = r"""
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"output\":\"ok\"}\n")
  (func (export "_start")
    (block $done
      (loop $more
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 60000))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br_if $more (i32.load (i32.const 8)))))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""
SPIN = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'
STDIN = b'{"tool": "answer", "args": {}, "callId": 1}\n'


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, values: list[float], note: str = "") -> None:
    p50, p95 = pct(values, 0.5) * 1000, pct(values, 0.95) * 1000
    print(f"{name:<58} {p50:8.3f} {p95:8.3f}   {note}", flush=True)


def make_tool(parent: Path, name: str, wat: str) -> ToolManifest:
    directory = parent / name
    directory.mkdir(parents=True)
    (directory / "module.wat").write_text(wat)
    (directory / "tool.toml").write_text(
        f'name = "{name}"\ndescription = "bench"\nruntime = "wasm"\nentry = "module.wat"\n'
    )
    return load_manifest(directory)


def timed(fn: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(20, n)):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def one_run(engine: wasmtime.Engine, pre: wasmtime.InstancePre, stdin: str) -> None:
    """A call as the runtime makes it, without trio: a store, WASI, instantiate, ``_start``."""
    store = wasmtime.Store(engine)
    store.set_limits(memory_size=64 * 2**20)
    store.set_epoch_deadline(1)
    wasi = wasmtime.WasiConfig()
    out: list[bytes] = []
    wasi.stdout_custom = out.append
    wasi.stderr_custom = out.append
    wasi.stdin_file = stdin
    store.set_wasi(wasi)
    start = pre.instantiate(store).exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    start(store)
    assert b"".join(out) == b'{"output":"ok"}\n'


def linked(engine: wasmtime.Engine, module: wasmtime.Module) -> wasmtime.InstancePre:
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    return linker.instantiate_pre(module)


def interrupt_designs(stdin: str, n: int) -> None:
    shared = wasmtime.Engine(_engine_config())
    module = wasmtime.Module(shared, ANSWER)
    blob = bytes(module.serialize())
    pre = linked(shared, module)
    line("  one shared engine (a cancel traps every guest)",
         timed(lambda: one_run(shared, pre, stdin), n))

    def engine_per_call() -> None:
        engine = wasmtime.Engine(_engine_config())
        one_run(engine, linked(engine, wasmtime.Module.deserialize(engine, blob)), stdin)

    line("  an engine per call, module deserialized", timed(engine_per_call, n))
    line("    of which: wasmtime.Engine()", timed(lambda: wasmtime.Engine(_engine_config()), n))
    spare = wasmtime.Engine(_engine_config())
    line("    of which: Module.deserialize",
         timed(lambda: wasmtime.Module.deserialize(spare, blob), n))
    spare_module = wasmtime.Module.deserialize(spare, blob)
    line("    of which: Linker + define_wasi + instantiate_pre",
         timed(lambda: linked(spare, spare_module), n))
    pooled = [wasmtime.Engine(_engine_config()) for _ in range(2)]
    pres = [linked(e, wasmtime.Module.deserialize(e, blob)) for e in pooled]
    turn = [0]

    def pooled_call() -> None:
        i = turn[0] = (turn[0] + 1) % len(pooled)
        one_run(pooled[i], pres[i], stdin)

    line("  pooled engine per running call (edge)", timed(pooled_call, n))


async def main(args: argparse.Namespace) -> None:
    n = 100 if args.quick else 1000
    firsts = 5 if args.quick else 20
    cancels = 10 if args.quick else 50
    with tempfile.TemporaryDirectory(prefix="edge-bench-wasm-") as tmp:
        root = Path(tmp)
        workspace = root / "ws"
        workspace.mkdir()
        policy = Policy.create(workspace)
        tools = root / "tools"
        answer = make_tool(tools, "answer", ANSWER)
        spin = make_tool(tools, "spin", SPIN)
        ctx = CallContext(call_id=1, policy=policy, env={})
        print(
            f"edge wasm benchmark: wasmtime-py {version('wasmtime')}, "
            f"{os.cpu_count()} cores, Linux {os.uname().release}, Python {sys.version.split()[0]}; "
            f"{n} calls per row"
        )
        print(f"{'':<58} {'p50 ms':>8} {'p95 ms':>8}")

        first: list[float] = []
        compile_only: list[float] = []
        for _ in range(firsts):
            runtime = WasmRuntime()
            start = time.perf_counter()
            await runtime.run(answer, {}, ctx)
            first.append(time.perf_counter() - start)
            fresh = WasmRuntime()
            start = time.perf_counter()
            assert fresh.validate(answer, policy) is None
            compile_only.append(time.perf_counter() - start)
        line("first call of a fresh runtime (compiles)", first)
        line("  validate alone (compile, check, serialize)", compile_only)

        runtime = WasmRuntime()
        assert runtime.validate(answer, policy) is None
        times = []
        for i in range(n + 20):
            start = time.perf_counter()
            result = await runtime.run(answer, {}, ctx)
            if i >= 20:
                times.append(time.perf_counter() - start)
        assert result == {"output": "ok"}, result
        line("cached: WasmRuntime.run", times, "target: p50 under 2 ms")
        assert runtime.compiles == 1

        executor = build_executor(Config(workspace=workspace, control=None))
        for tool in load_declared([tools], executor.policy, {"wasm": runtime}):
            executor.registry.add(tool_spec(tool, runtime))
        times = []
        for i in range(n + 20):
            start = time.perf_counter()
            result = await executor.call("answer", {}, approved=None, call_id=i)
            if i >= 20:
                times.append(time.perf_counter() - start)
        assert result == {"output": "ok"}, result
        line("cached: Executor.call", times)

        gaps = []
        for _ in range(cancels):
            with trio.move_on_after(0.05) as scope:
                await runtime.run(spin, {}, ctx)
            assert scope.cancelled_caught
            gaps.append(trio.current_time() - scope.deadline)
        line("spinning guest: from its timeout to the call's return", gaps)

        stdin = root / "stdin"
        stdin.write_bytes(STDIN)
        print("interrupt designs, per call in a plain thread (no trio):")
        await trio.to_thread.run_sync(functools.partial(interrupt_designs, str(stdin), n))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    trio.run(main, parser.parse_args())
