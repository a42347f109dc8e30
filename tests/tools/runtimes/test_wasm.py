"""The wasm runtime with real wasmtime: modules written in WAT here, compiled at test time.

Each module is a WASI preview 1 command written by hand (``wasi_snapshot_preview1``
imports), in a tool directory with its ``tool.toml``, loaded by ``load_manifest``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.daemon import build_executor
from edge.errors import PolicyError, ToolError
from edge.tools.policy import Policy
from edge.tools.registry import CallContext
from edge.tools.runtimes.load import load_declared, tool_spec
from edge.tools.runtimes.manifest import ToolManifest, load_manifest
from edge.tools.runtimes.wasm import WasmRuntime, _Engine

from ...conftest import make_config, until

#: Hard limit on any one test's waits (seconds of the real clock).
LIMIT = 30
#: From cancel to the call's return, at most (seconds): the guest is interrupted, not awaited.
STOPS_WITHIN = 0.5

# Imports and helpers every module shares. Memory: 0..15 iovec and results,
# 16..1023 constant strings, 1024.. buffers.
PRELUDE = r"""
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env_get (param i32 i32) (result i32)))
  (memory (export "memory") 4)
  (data (i32.const 900) "0123456789")
  ;; write(fd, ptr, len) -> errno
  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
  ;; digits(errno): its last two digits at 1001 and 1002 (a space at 1000, a newline at 1003)
  (func $digits (param $errno i32)
    (i32.store8 (i32.const 1000) (i32.const 32))
    (i32.store8 (i32.const 1001) (i32.load8_u (i32.add (i32.const 900)
      (i32.rem_u (i32.div_u (local.get $errno) (i32.const 10)) (i32.const 10)))))
    (i32.store8 (i32.const 1002) (i32.load8_u (i32.add (i32.const 900)
      (i32.rem_u (local.get $errno) (i32.const 10)))))
    (i32.store8 (i32.const 1003) (i32.const 10)))
  ;; fail(ptr, len, errno): "<message> <errno>\n" on stderr, then exit 1
  (func $fail (param $ptr i32) (param $len i32) (param $errno i32)
    (drop (call $write (i32.const 2) (local.get $ptr) (local.get $len)))
    (call $digits (local.get $errno))
    (drop (call $write (i32.const 2) (i32.const 1000) (i32.const 4)))
    (call $proc_exit (i32.const 1)))
  ;; sleep(ns) -> errno, one relative clock subscription at 1024, its event at 1100
  (func $sleep (param $ns i64) (result i32)
    (memory.fill (i32.const 1024) (i32.const 0) (i32.const 48))
    (i64.store (i32.const 1024) (i64.const 7))
    (i32.store (i32.const 1040) (i32.const 1))
    (i64.store (i32.const 1048) (local.get $ns))
    (call $poll (i32.const 1024) (i32.const 1100) (i32.const 1) (i32.const 1200)))
"""


def module(body: str, data: str = "") -> str:
    return f"(module {PRELUDE} {data} {body})"


# Reads all of stdin and answers {"ok":true,"echo":<the call it read>}.
ECHO = module(
    data=r"""(data (i32.const 16) "{\"ok\":true,\"echo\":") (data (i32.const 48) "}")""",
    body=r"""
  (func (export "_start") (local $end i32) (local $n i32)
    (local.set $end (i32.const 4096))
    (block $done
      (loop $more
        (i32.store (i32.const 0) (local.get $end))
        (i32.store (i32.const 4) (i32.sub (i32.const 262144) (local.get $end)))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $end (i32.add (local.get $end) (local.get $n)))
        (br $more)))
    ;; the call's line ends with a newline: leave it out
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 18)))
    (drop (call $write (i32.const 1) (i32.const 4096) (i32.sub (local.get $end) (i32.const 4097))))
    (drop (call $write (i32.const 1) (i32.const 48) (i32.const 1))))""",
)

SPIN = module(r"""(func (export "_start") (loop $forever (br $forever)))""")

# Sleeps 30 s in poll_oneoff (a host call, where no epoch check happens).
SLEEP_LONG = module(r"""(func (export "_start") (drop (call $sleep (i64.const 30000000000))))""")


def sleep_then_answer(ns: int) -> str:
    """Sleeps ``ns``, runs a short loop of wasm, then answers with the sleep's errno."""
    return module(
        data=r"""(data (i32.const 16) "{\"output\":\"slept\",\"errno\":\"")
                 (data (i32.const 48) "\"}")""",
        body=f"""
  (func (export "_start") (local $errno i32) (local $i i32)
    (local.set $errno (call $sleep (i64.const {ns})))
    (loop $busy
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $busy (i32.lt_u (local.get $i) (i32.const 100000))))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 27)))
    (call $digits (local.get $errno))
    (drop (call $write (i32.const 1) (i32.const 1001) (i32.const 2)))
    (drop (call $write (i32.const 1) (i32.const 48) (i32.const 2))))""",
    )


# Grows its memory until refused, then aborts (as an allocator does).
HOG = module(
    r"""(func (export "_start")
    (loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable)"""
)

# Writes 8 MiB to stdout, 64 KiB at a time, ignoring errors.
FLOOD = module(
    r"""(func (export "_start") (local $i i32)
    (loop $more
      (drop (call $write (i32.const 1) (i32.const 4096) (i32.const 65536)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 128)))))"""
)

# Answers {"env":"<its environment, entries joined by ;>"}.
ENVIRON = module(
    data=r"""(data (i32.const 16) "{\"env\":\"") (data (i32.const 48) "\"}")""",
    body=r"""
  (func (export "_start") (local $size i32) (local $i i32)
    (drop (call $env_sizes (i32.const 0) (i32.const 4)))
    (local.set $size (i32.load (i32.const 4)))
    (drop (call $env_get (i32.const 2048) (i32.const 8192)))
    (loop $each
      (if (i32.lt_u (local.get $i) (local.get $size))
        (then
          (if (i32.eqz (i32.load8_u (i32.add (i32.const 8192) (local.get $i))))
            (then (i32.store8 (i32.add (i32.const 8192) (local.get $i)) (i32.const 59))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each))))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 8)))
    (drop (call $write (i32.const 1) (i32.const 8192) (local.get $size)))
    (drop (call $write (i32.const 1) (i32.const 48) (i32.const 2))))""",
)

_RIGHT_FD_READ = 1 << 1
_RIGHT_FD_WRITE = 1 << 6
_O_CREAT_TRUNC = 1 | 8


def file_module(path: str, *, write: bool) -> str:
    """Opens ``path`` beneath the first preopened directory (fd 3): reads it and answers
    {"content": ...}, or writes "hello" to it and answers {"output": "written"}."""
    oflags, rights = (_O_CREAT_TRUNC, _RIGHT_FD_WRITE) if write else (0, _RIGHT_FD_READ)
    encoded = path.encode()
    escaped = "".join(f"\\{b:02x}" for b in encoded)
    use = (
        r"""
      (if (local.tee $errno (call $write (local.get $fd) (i32.const 400) (i32.const 5)))
        (then (call $fail (i32.const 420) (i32.const 15) (local.get $errno))))
      (drop (call $write (i32.const 1) (i32.const 300) (i32.const 20)))"""
        if write
        else r"""
      (i32.store (i32.const 0) (i32.const 4096))
      (i32.store (i32.const 4) (i32.const 4096))
      (if (local.tee $errno
            (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
        (then (call $fail (i32.const 440) (i32.const 14) (local.get $errno))))
      (local.set $n (i32.load (i32.const 8)))
      (drop (call $write (i32.const 1) (i32.const 256) (i32.const 12)))
      (drop (call $write (i32.const 1) (i32.const 4096) (local.get $n)))
      (drop (call $write (i32.const 1) (i32.const 288) (i32.const 2)))"""
    )
    return module(
        data=rf"""
  (data (i32.const 64) "{escaped}")
  (data (i32.const 256) "{{\"content\":\"") (data (i32.const 288) "\"}}")
  (data (i32.const 300) "{{\"output\":\"written\"}}") (data (i32.const 400) "hello")
  (data (i32.const 420) "fd_write failed")
  (data (i32.const 440) "fd_read failed ") (data (i32.const 460) "path_open failed")""",
        body=rf"""
  (func (export "_start") (local $errno i32) (local $fd i32) (local $n i32)
    (if (local.tee $errno (call $path_open (i32.const 3) (i32.const 0)
          (i32.const 64) (i32.const {len(encoded)}) (i32.const {oflags})
          (i64.const {rights}) (i64.const 0) (i32.const 0) (i32.const 16)))
      (then (call $fail (i32.const 460) (i32.const 16) (local.get $errno))))
    (local.set $fd (i32.load (i32.const 16)))
    {use})""",
    )


def make_tool(
    where: Path, name: str, source: str | bytes, *, entry: str = "module.wat", extra: str = ""
) -> ToolManifest:
    """A tool directory ``where/name`` holding ``tool.toml`` and the module; its manifest."""
    directory = where / name
    directory.mkdir(parents=True)
    target = directory / entry
    if isinstance(source, bytes):
        target.write_bytes(source)
    else:
        target.write_text(source)
    (directory / "tool.toml").write_text(
        f'name = "{name}"\ndescription = "a test module"\nruntime = "wasm"\n'
        f'entry = "{entry}"\n{extra}\n'
    )
    return load_manifest(directory)


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    return tmp_path / "tools"


@pytest.fixture
def policy(workspace: Path) -> Policy:
    return Policy.create(workspace)


@pytest.fixture
def runtime() -> Iterator[WasmRuntime]:
    yield WasmRuntime()
    assert wasm_threads() == []
    assert held_outputs() == []


def held_outputs() -> list[object]:
    """The output callbacks wasmtime still holds (wasmtime-py's own table of them).

    wasmtime calls and releases them from its own threads; one released during
    the interpreter's shutdown aborts the process, so every run waits for its own.
    """
    from wasmtime import _wasi

    return list(_wasi.CUSTOM_OUTPUTS.handles.values())


def context(policy: Policy, env: dict[str, str] | None = None) -> CallContext:
    return CallContext(call_id="c-1", policy=policy, env=env or {})


def wasm_threads() -> list[str]:
    """Threads running a guest now (trio names a worker thread after its job while it runs)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("wasm ")]


async def run(
    runtime: WasmRuntime, manifest: ToolManifest, policy: Policy, **args: Any
) -> dict[str, Any]:
    assert runtime.validate(manifest, policy) is None
    with trio.fail_after(LIMIT):
        return await runtime.run(manifest, args, context(policy))


async def test_a_module_answers_from_what_it_read_on_stdin(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    manifest = make_tool(tools, "echo", ECHO)
    result = await run(runtime, manifest, policy, text="héllo")
    call = {"tool": "echo", "args": {"text": "héllo"}, "callId": "c-1"}
    output = json.dumps({"ok": True, "echo": call}, ensure_ascii=False)
    assert result == {"output": output, "ok": True, "echo": call}


async def test_a_binary_module_runs_like_its_text(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    import wasmtime

    manifest = make_tool(tools, "echo", bytes(wasmtime.wat2wasm(ECHO)), entry="echo.wasm")
    assert (await run(runtime, manifest, policy))["ok"] is True


async def test_a_second_call_does_not_compile_again(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    manifest = make_tool(tools, "echo", ECHO)
    assert runtime.validate(manifest, policy) is None
    assert runtime.compiles == 1
    for _ in range(3):
        assert (await run(runtime, manifest, policy))["ok"] is True
    assert runtime.compiles == 1
    # A changed file is compiled again, once.
    manifest.entry.write_text(ECHO.replace('"{\\"ok\\":true,', '"{\\"ok\\":1,   '))
    os.utime(manifest.entry, ns=(1, 1))
    assert (await run(runtime, manifest, policy))["ok"] == 1
    assert (await run(runtime, manifest, policy))["ok"] == 1
    assert runtime.compiles == 2


async def test_a_module_that_does_not_compile_is_a_clear_problem(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    broken = make_tool(tools, "broken", "(module (func (export \"_start\") (i32.add)")
    problem = runtime.validate(broken, policy)
    assert problem is not None
    assert problem.startswith("module.wat does not compile: ")
    assert "\n" not in problem
    assert len(problem) < 400
    with pytest.raises(ToolError, match=r"module\.wat does not compile"):
        await runtime.run(broken, {}, context(policy))

    garbage = make_tool(tools, "garbage", b"\x00asm\x01\x00\x00\x00\xff\xff", entry="m.wasm")
    assert (runtime.validate(garbage, policy) or "").startswith("m.wasm does not compile: ")


async def test_a_module_that_is_no_wasi_command_is_refused(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    library = make_tool(tools, "library", '(module (func (export "add")))')
    assert runtime.validate(library, policy) == (
        "module.wat is not a WASI command: it exports no _start function"
    )
    odd = make_tool(tools, "odd", '(module (func (export "_start") (param i32)))')
    assert "its _start is not a () -> () function" in (runtime.validate(odd, policy) or "")
    foreign = make_tool(
        tools, "foreign",
        '(module (import "env" "magic" (func)) (func (export "_start")))',
    )  # fmt: skip
    problem = runtime.validate(foreign, policy) or ""
    assert problem.startswith("module.wat cannot be linked: ")
    assert "magic" in problem


async def test_a_missing_entry_is_a_problem(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    manifest = make_tool(tools, "gone", ECHO)
    manifest.entry.unlink()
    assert "does not exist" in (runtime.validate(manifest, policy) or "")


async def test_a_spinning_guest_is_stopped_by_its_timeout(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    manifest = make_tool(tools, "spin", SPIN)
    assert runtime.validate(manifest, policy) is None
    with trio.fail_after(LIMIT):
        with trio.move_on_after(0.3) as scope:
            await runtime.run(manifest, {}, context(policy))
        late = trio.current_time() - scope.deadline
    assert scope.cancelled_caught
    assert late < STOPS_WITHIN
    assert wasm_threads() == []


@pytest.mark.parametrize("source", [SPIN, SLEEP_LONG], ids=["spinning", "sleeping"])
async def test_a_guest_is_stopped_by_a_cancel(
    runtime: WasmRuntime, tools: Path, policy: Policy, source: str
) -> None:
    manifest = make_tool(tools, "stuck", source)
    assert runtime.validate(manifest, policy) is None
    finished = False

    async def call() -> None:
        nonlocal finished
        await runtime.run(manifest, {}, context(policy))
        finished = True

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await until(lambda: wasm_threads() == ["wasm stuck"])
            await trio.sleep(0.1)
            cancelled_at = trio.current_time()
            nursery.cancel_scope.cancel()
        gap = trio.current_time() - cancelled_at
    assert not finished
    assert gap < STOPS_WITHIN
    assert wasm_threads() == []


async def test_cancelling_one_guest_leaves_the_others_running(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    spin = make_tool(tools, "spin", SPIN)
    sleeper = make_tool(tools, "sleeper", sleep_then_answer(600_000_000))
    results: list[dict[str, Any]] = []

    async def sleep_call() -> None:
        results.append(await runtime.run(sleeper, {}, context(policy)))

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleep_call)
            with trio.move_on_after(0.2):
                await runtime.run(spin, {}, context(policy))
    # The spinner's interrupt came while the sleeper slept; it woke, ran wasm and answered.
    assert results == [{"output": "slept", "errno": "00"}]


async def test_a_short_sleep_returns_and_the_guest_answers(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    manifest = make_tool(tools, "nap", sleep_then_answer(20_000_000))
    start = trio.current_time()
    assert await run(runtime, manifest, policy) == {"output": "slept", "errno": "00"}
    assert trio.current_time() - start >= 0.02


async def test_an_ungranted_file_cannot_be_read(
    runtime: WasmRuntime, tools: Path, policy: Policy, workspace: Path
) -> None:
    (workspace / "secret.txt").write_text("TOPSECRET")
    manifest = make_tool(tools, "snoop", file_module(str(workspace / "secret.txt"), write=False))
    with pytest.raises(ToolError) as caught:
        await run(runtime, manifest, policy)
    # No preopened directory: fd 3 is no descriptor (EBADF is 8).
    assert str(caught.value) == "snoop exited with status 1: path_open failed 08"
    assert "TOPSECRET" not in str(caught.value)


async def test_a_read_only_grant_can_be_read_not_written(
    runtime: WasmRuntime, tools: Path, policy: Policy, workspace: Path
) -> None:
    data = workspace / "data"
    data.mkdir()
    (data / "note.txt").write_text("hello from the host")
    grant = f'[[grants.dirs]]\npath = "{data}"\nmode = "ro"\n'
    reader = make_tool(tools, "reader", file_module("note.txt", write=False), extra=grant)
    assert await run(runtime, reader, policy) == {
        "output": '{"content": "hello from the host"}', "content": "hello from the host",
    }  # fmt: skip

    writer = make_tool(tools, "writer", file_module("new.txt", write=True), extra=grant)
    with pytest.raises(ToolError, match=r"^writer exited with status 1: path_open failed \d\d$"):
        await run(runtime, writer, policy)
    assert not (data / "new.txt").exists()

    climber = make_tool(tools, "climber", file_module("../secret.txt", write=False), extra=grant)
    (workspace / "secret.txt").write_text("TOPSECRET")
    with pytest.raises(ToolError, match="path_open failed"):
        await run(runtime, climber, policy)


async def test_a_writable_grant_can_be_written(
    runtime: WasmRuntime, tools: Path, policy: Policy, workspace: Path
) -> None:
    out = workspace / "out"
    out.mkdir()
    grant = '[[grants.dirs]]\npath = "out"\nmode = "rw"\n'  # relative to the workspace
    writer = make_tool(tools, "writer", file_module("new.txt", write=True), extra=grant)
    assert await run(runtime, writer, policy) == {"output": "written"}
    assert (out / "new.txt").read_text() == "hello"


async def test_a_grant_outside_the_roots_is_refused(
    runtime: WasmRuntime, tools: Path, policy: Policy, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    grant = f'[[grants.dirs]]\npath = "{outside}"\n'
    manifest = make_tool(tools, "greedy", file_module("x", write=False), extra=grant)
    assert runtime.validate(manifest, policy) == (
        f"greedy: grant {outside} is outside the allowed roots"
    )
    with pytest.raises(PolicyError, match="outside the allowed roots"):
        await runtime.run(manifest, {}, context(policy))
    missing = make_tool(tools, "missing", ECHO, extra='[[grants.dirs]]\npath = "nope"\n')
    assert runtime.validate(missing, policy) == "missing: grant nope is not a directory"


async def test_a_guest_that_exhausts_its_memory_is_a_clear_error(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    manifest = make_tool(tools, "hog", HOG, extra="memory_mb = 16")
    with pytest.raises(ToolError) as caught:
        await run(runtime, manifest, policy)
    assert str(caught.value).startswith("hog exceeded its memory limit of 16 MiB (")
    assert "unreachable" in str(caught.value)

    greedy = make_tool(tools, "greedy", '(module (memory 512) (func (export "_start")))',
                       extra="memory_mb = 16")  # fmt: skip
    with pytest.raises(ToolError, match=r"^greedy exceeded its memory limit of 16 MiB"):
        await run(runtime, greedy, policy)


async def test_a_trap_is_an_error_with_its_reason(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    manifest = make_tool(
        tools, "divide",
        '(module (func (export "_start") (drop (i32.div_u (i32.const 1) (i32.const 0)))))',
    )  # fmt: skip
    with pytest.raises(ToolError) as caught:
        await run(runtime, manifest, policy)
    assert str(caught.value) == "divide trapped: wasm trap: integer divide by zero"

    # As a Rust panic does: the reason on stderr, then an abort.
    panic = make_tool(tools, "panic", module(
        data=r"""(data (i32.const 16) "starting\npanicked at src/main.rs:3:5\n")""",
        body=r"""(func (export "_start")
          (drop (call $write (i32.const 2) (i32.const 16) (i32.const 37))) unreachable)""",
    ))  # fmt: skip
    with pytest.raises(ToolError) as caught:
        await run(runtime, panic, policy)
    assert str(caught.value) == (
        "panic trapped: wasm trap: wasm `unreachable` instruction executed; "
        "stderr: panicked at src/main.rs:3:5"
    )


async def test_a_flood_on_stdout_is_bounded(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    manifest = make_tool(tools, "flood", FLOOD)
    with pytest.raises(ToolError, match="larger than 4194304 bytes"):
        await run(runtime, manifest, policy)


async def test_only_the_listed_environment_reaches_the_guest(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    manifest = make_tool(tools, "environ", ENVIRON, extra='env = ["GREETING", "UNSET"]')
    assert runtime.validate(manifest, policy) is None
    env = {"GREETING": "hi", "HOME": "/root", "PATH": "/bin"}
    with trio.fail_after(LIMIT):
        result = await runtime.run(manifest, {}, context(policy, env))
    assert result["env"] == "GREETING=hi;"


async def test_no_guest_thread_is_left_after_calls(
    runtime: WasmRuntime, tools: Path, policy: Policy
) -> None:
    echo = make_tool(tools, "echo", ECHO)
    spin = make_tool(tools, "spin", SPIN)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(functools.partial(run, runtime, echo, policy))
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(functools.partial(run, runtime, spin, policy))
            await until(lambda: len(wasm_threads()) == 3)
            nursery.cancel_scope.cancel()
    assert wasm_threads() == []


@pytest.mark.parametrize("source", [ECHO, SPIN, HOG], ids=["answering", "interrupted", "trapped"])
def test_a_run_ends_only_once_wasmtime_let_go_of_the_outputs(tools: Path, source: str) -> None:
    # The guest's thread itself, without trio: nothing between its end and the check.
    runtime = WasmRuntime()
    manifest = make_tool(tools, "guest", source, extra="memory_mb = 2")
    engine = _Engine()
    if source is SPIN:
        threading.Timer(0.05, engine.interrupt).start()
    for _ in range(1 if source is SPIN else 10):
        runtime._run_guest(engine, manifest, b"{}\n", [], [])
        assert held_outputs() == []


# A process that made a call and exits at once (as `edge tools call` does).
CALL_AND_EXIT = """
import sys, trio
from pathlib import Path
from edge.tools.policy import Policy
from edge.tools.registry import CallContext
from edge.tools.runtimes.manifest import load_manifest
from edge.tools.runtimes.wasm import WasmRuntime, _Engine

async def main():
    policy = Policy.create(sys.argv[2])
    ctx = CallContext(1, policy, {})
    print(await WasmRuntime().run(load_manifest(Path(sys.argv[1]) / "echo"), {}, ctx))
    with trio.move_on_after(0.05):  # and one interrupted
        await WasmRuntime().run(load_manifest(Path(sys.argv[1]) / "spin"), {}, ctx)
trio.run(main)
"""


async def test_a_process_exits_cleanly_right_after_a_call(
    tools: Path, workspace: Path, tmp_path: Path
) -> None:
    make_tool(tools, "echo", ECHO)
    make_tool(tools, "spin", SPIN)
    script = tmp_path / "call_and_exit.py"
    script.write_text(CALL_AND_EXIT)
    codes: list[int] = []

    async def once() -> None:
        done = await trio.run_process(
            [sys.executable, str(script), str(tools), str(workspace)],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
        assert b"'ok': True" in done.stdout, done.stderr.decode()
        codes.append(done.returncode)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(once)
    assert codes == [0] * 6  # an abort (wasmtime's thread ended by the shutdown) is -6


async def test_through_the_executor(workspace: Path, tools: Path) -> None:
    executor = build_executor(make_config(workspace))
    runtime = WasmRuntime()
    make_tool(tools, "echo", ECHO)
    make_tool(tools, "spin", SPIN)
    declared = load_declared([tools], executor.policy, {"wasm": runtime})
    assert [(tool.name, tool.problem) for tool in declared] == [("echo", None), ("spin", None)]
    for tool in declared:
        executor.registry.add(tool_spec(tool, runtime))
    with trio.fail_after(LIMIT):
        echoed = await executor.call("echo", {"n": 1}, approved=None, call_id=7)
        assert echoed["echo"] == {"tool": "echo", "args": {"n": 1}, "callId": 7}
        start = trio.current_time()
        timed_out = await executor.call("spin", {"timeout": 0.3}, approved=None)
        late = trio.current_time() - start - 0.3
    assert timed_out == {"error": "spin timed out after 0.3 s", "timed_out": True}
    assert late < STOPS_WITHIN
    assert wasm_threads() == []
    assert runtime.compiles == 2
