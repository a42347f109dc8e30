"""The ``wasm`` runtime: a WASI command module run in wasmtime, in a fresh store per call.

A wasm tool is a WASI (preview 1) command: its ``_start`` reads the call on
stdin and writes the result on stdout (``edge.tools.runtimes.stdio``). It gets
nothing it was not given: no arguments but its name, only the environment
variables its manifest lists, no network, memory up to its cap, and of the
file system only the directories it was granted
(``[[grants.dirs]]``), each under the path the manifest gives it, read-only
unless ``mode = "rw"``. Every grant must lie inside the policy's roots
(``Policy.resolve``: links followed), checked when the tools are loaded and
again at each call. A module is compiled once, when it is loaded (or when its
file changes), and kept serialized; a call only instantiates it.

The guest runs in a worker thread from trio's thread cache, never abandoned,
so the loop never waits on it and no thread outlives its call. A call's
timeout and the cloud's cancel are both trio cancellation of the calling task;
where trio delivers it (the wait's abort callback, ``_run_interruptible``) the
guest is interrupted through wasmtime's epoch: every store's deadline is one
tick after the epoch it started at, so incrementing the epoch traps the guest
at its next loop or call, the thread returns at once, and ``Cancelled`` goes
on. The epoch belongs to an engine and trips every store of it, so each
running call has an engine of its own: engines are pooled (``_Engine``, at
most ``MAX_IDLE_ENGINES`` kept idle), each with its own copy of the modules it
has run, deserialized from the compiled blob. Measured per call of a trivial
module on a loaded 2-core machine (``bench/bench_wasm.py``, p50):

- one shared engine, cached ``InstancePre``: 0.40 ms, but a cancel would trap
  every running guest;
- an engine per call, the module deserialized into it: 0.68-0.88 ms (a new
  engine 7 us, the deserialize 0.06 ms, a linker with WASI 0.07 ms, and a
  first instantiation on a fresh engine the rest);
- a pooled engine per running call (this module): 0.40-0.47 ms, as the shared
  engine (a new engine's first call pays the deserialize once);
- the store's epoch-deadline callback would allow one shared engine (a cancel
  wakes every guest, the others carry on) but is outside wasmtime-py's public
  API; fuel cannot be taken away from another thread.

Around the guest, ``WasmRuntime.run`` costs 0.6-0.9 ms in all (about 0.1 ms
of it waiting for wasmtime to let go of the output callbacks, see
``_run_guest``). Running it with ``trio.to_thread.run_sync`` and a watcher
task that interrupts on cancel cost 1.1 ms: the nursery and the task alone
were 0.17 ms of it, the thread hand-off 0.17 ms against 0.10 ms for the thread
cache used directly.

A guest blocked in a host call does not reach an epoch check, and WASI's
``poll_oneoff`` (``sleep``) would block the thread for as long as the guest
asked. So ``poll_oneoff`` is edge's own (``_poll_oneoff``): it sleeps on the
engine's stop event and returns early when the call is interrupted. It serves
clock subscriptions only; one on a file descriptor is ``ENOTSUP``. Reads of
stdin come from a memory file (stdout and stderr go to bounded buffers), so
the only other way to block is a FIFO inside a granted directory: do not grant
directories that hold one.

Memory is capped per store (``memory_mb``); ``memory.grow`` past the cap
returns -1 to the guest, which typically aborts (a trap) or exits non-zero.
A failure with the guest's memory within ``MEMORY_SLACK`` of the cap is
reported as the memory limit it is.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import struct
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, final

import trio
import wasmtime

from ...errors import PolicyError, ToolError
from ..process import MAX_CAPTURE_BYTES, MAX_STDERR_BYTES
from .base import entry_problem
from .stdio import call_input, parse_output

if TYPE_CHECKING:
    import outcome

    from ..policy import Policy
    from ..registry import CallContext, ToolResult
    from .manifest import ToolManifest

__all__ = ["MAX_IDLE_ENGINES", "WasmRuntime"]

log = logging.getLogger(__name__)

#: Idle engines kept for the next calls (one runs each concurrent call).
MAX_IDLE_ENGINES: Final = 8
#: How close to its cap a failed guest's memory must be to blame the cap (bytes).
MEMORY_SLACK: Final = 1024 * 1024
#: How long a run waits for wasmtime to release its output callbacks (seconds).
RELEASE_WAIT: Final = 1.0
#: How much of wasmtime's message a compile or trap error quotes (characters).
MESSAGE_CHARS: Final = 300
#: Tables are capped too, at this many elements (8 bytes each).
MAX_TABLE_ELEMENTS: Final = 1_000_000
#: The WASI import module every host function is defined in.
WASI: Final = "wasi_snapshot_preview1"

# WASI preview 1 errno values and layouts used by ``_poll_oneoff``.
_ESUCCESS: Final = 0
_EFAULT: Final = 21
_EINTR: Final = 27
_EINVAL: Final = 28
_ENOTSUP: Final = 58
_SUBSCRIPTION: Final = struct.Struct("<QB7xIxxxxQQH6x")  # 48 bytes: userdata, tag, clock
_EVENT: Final = struct.Struct("<QHB5xQH6x")  # 32 bytes: userdata, error, type, fd_readwrite
_CLOCK_REALTIME: Final = 0
_ABSTIME: Final = 1

_GUTTER: Final = re.compile(r"\s*\d*\s*\|")
_WHERE: Final = re.compile(r"--> <anon>:(\d+):(\d+)")

#: A module file's identity: (size, mtime_ns); a change means a recompile.
_Stamp = tuple[int, int]


@dataclass(frozen=True, slots=True)
class _Exit:
    """How a guest's run ended (in its worker thread), for the call to judge."""

    #: The WASI exit status (0 when ``_start`` returned), or ``None`` after a trap.
    status: int | None
    stdout: bytes
    stderr: bytes
    #: More than ``MAX_CAPTURE_BYTES`` were written to stdout (the rest was refused).
    stdout_overflow: bool = False
    #: wasmtime's message when the guest trapped or could not be instantiated.
    trap: str | None = None
    #: The guest's memory when it ended (bytes), ``None`` if it exports none.
    memory: int | None = None
    #: The guest was interrupted by its call's cancellation.
    interrupted: bool = False
    #: Why the guest could not be given its WASI context (it never ran).
    setup: str | None = None


@final
class _Output:
    """A guest's stdout or stderr, kept in memory: the first or the last ``limit`` bytes."""

    def __init__(self, limit: int, *, keep_tail: bool) -> None:
        self.limit = limit
        self.keep_tail = keep_tail
        self.data = bytearray()
        self.overflow = False

    def __call__(self, chunk: bytes) -> int:
        """Called by wasmtime for each write; a negative errno refuses it."""
        if self.keep_tail:
            self.data += chunk
            if len(self.data) > self.limit:
                del self.data[: len(self.data) - self.limit]
            return len(chunk)
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.overflow = True
            return -errno.EFBIG
        self.data += chunk
        return len(chunk)


@final
class _Engine:
    """A wasmtime engine, its WASI linker and the modules it has run, used by one call at a time.

    A call owns the engine while its guest runs, so the engine's epoch is that
    call's alone: ``interrupt`` (from the trio thread) stops that guest only.
    """

    def __init__(self) -> None:
        self.engine = wasmtime.Engine(_engine_config())
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self.linker.allow_shadowing = True
        i32 = wasmtime.ValType.i32()
        poll_type = wasmtime.FuncType([i32, i32, i32, i32], [i32])
        self.linker.define_func(WASI, "poll_oneoff", poll_type, self._poll, access_caller=True)
        #: Set when the call running here is interrupted; cleared before each call.
        self.stop = threading.Event()
        self.modules: dict[Path, tuple[_Stamp, wasmtime.InstancePre]] = {}

    def interrupt(self) -> None:
        """Stop the guest running here: wake its sleep, trap it at its next epoch check."""
        self.stop.set()
        self.engine.increment_epoch()

    def _poll(self, caller: wasmtime.Caller, subs: int, events: int, count: int, out: int) -> int:
        # A host function must not raise (wasmtime-py hands its exception to
        # whichever thread leaves wasm next): every failure is an errno.
        try:
            return _poll_oneoff(caller, self.stop, subs, events, count, out)
        except Exception:
            return _EFAULT


class WasmRuntime:
    """Runs wasm tools; state of the daemon (one per daemon), never a module global.

    Attributes:
        compiles: how many times a module was compiled (a call on a cached,
            unchanged module compiles nothing).
    """

    kind: str = "wasm"

    def __init__(self) -> None:
        self.compiles = 0
        # Compiles and checks modules; calls run on pooled engines (``_Engine``).
        self._compiler = wasmtime.Engine(_engine_config())
        self._checker = wasmtime.Linker(self._compiler)
        self._checker.define_wasi()
        # Compiled modules, serialized, by entry path; guarded by ``_lock``
        # (``validate`` runs on the loop's thread, compiles at call time in workers).
        self._blobs: dict[Path, tuple[_Stamp, bytes]] = {}
        self._lock = threading.Lock()
        # Used from the loop's thread only.
        self._idle: list[_Engine] = []

    def validate(self, manifest: ToolManifest, policy: Policy) -> str | None:
        """What keeps ``manifest``'s module from running, or ``None``; compiles it (cached)."""
        problem = entry_problem(manifest)
        if problem is not None:
            return problem
        try:
            self._blob(manifest.entry)
            _preopens(manifest, policy)
        except (ToolError, PolicyError) as exc:
            return str(exc)
        return None

    async def run(
        self, manifest: ToolManifest, args: dict[str, Any], ctx: CallContext
    ) -> ToolResult:
        """Run one call of ``manifest``'s module with ``args``.

        Raises:
            ToolError: the module failed to compile or start, trapped, exited
                non-zero, went over its memory cap, or answered badly.
            PolicyError: a grant is no longer inside the policy's roots.
        """
        stdin = call_input(manifest, args, ctx.call_id)
        preopens = _preopens(manifest, ctx.policy)
        env = [(name, ctx.env[name]) for name in manifest.env if name in ctx.env]
        engine = self._idle.pop() if self._idle else _Engine()
        engine.stop.clear()
        guest = functools.partial(self._run_guest, engine, manifest, stdin, preopens, env)
        try:
            done = await _run_interruptible(guest, engine.interrupt, f"wasm {manifest.name}")
        finally:
            if len(self._idle) < MAX_IDLE_ENGINES:
                self._idle.append(engine)
        # An interrupted guest's call was cancelled: the cancellation goes on from here.
        await trio.lowlevel.checkpoint_if_cancelled()
        return _judge(manifest, done)

    def _blob(self, entry: Path) -> tuple[_Stamp, bytes]:
        """The compiled module at ``entry``, serialized: from the cache, or compiled now.

        Raises:
            ToolError: the file cannot be read, does not compile, or is no WASI command.
        """
        try:
            info = entry.stat()
        except OSError as exc:
            raise ToolError(f"{entry.name} cannot be read: {exc.strerror}") from None
        stamp = (info.st_size, info.st_mtime_ns)
        with self._lock:
            cached = self._blobs.get(entry)
        if cached is not None and cached[0] == stamp:
            return cached
        try:
            data = entry.read_bytes()
        except OSError as exc:
            raise ToolError(f"{entry.name} cannot be read: {exc.strerror}") from None
        try:
            module = wasmtime.Module(self._compiler, data)
        except wasmtime.WasmtimeError as exc:
            raise ToolError(f"{entry.name} does not compile: {_brief(str(exc))}") from None
        with self._lock:
            self.compiles += 1
        _check_command(entry.name, module)
        try:
            self._checker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise ToolError(f"{entry.name} cannot be linked: {_brief(str(exc))}") from None
        blob = (stamp, bytes(module.serialize()))
        with self._lock:
            self._blobs[entry] = blob
        return blob

    def _instance_pre(self, engine: _Engine, entry: Path) -> wasmtime.InstancePre:
        """``entry``'s module linked on ``engine``: kept there, or deserialized from the blob."""
        stamp, blob = self._blob(entry)
        kept = engine.modules.get(entry)
        if kept is not None and kept[0] == stamp:
            return kept[1]
        pre = engine.linker.instantiate_pre(wasmtime.Module.deserialize(engine.engine, blob))
        engine.modules[entry] = (stamp, pre)
        return pre

    def _run_guest(
        self,
        engine: _Engine,
        manifest: ToolManifest,
        stdin: bytes,
        preopens: Sequence[tuple[str, str, bool]],
        env: Sequence[tuple[str, str]],
    ) -> _Exit:
        """One run of the guest, in a worker thread; every way it ends is an ``_Exit``.

        Raises:
            ToolError: the module changed since it was loaded and no longer compiles.
        """
        pre = self._instance_pre(engine, manifest.entry)
        # wasmtime calls the output callbacks, and releases them once the store
        # is gone, from its own threads. A release that came during the
        # interpreter's shutdown would abort the process (such a thread is
        # ended by unwinding through Rust), so each run waits for its own.
        stdout = _Output(MAX_CAPTURE_BYTES, keep_tail=False)
        stderr = _Output(MAX_STDERR_BYTES, keep_tail=True)
        released = [threading.Event(), threading.Event()]
        weakref.finalize(stdout, released[0].set)
        weakref.finalize(stderr, released[1].set)
        try:
            return _execute(engine, pre, manifest, stdin, preopens, env, stdout, stderr)
        finally:
            del stdout, stderr
            deadline = time.monotonic() + RELEASE_WAIT
            if not all(event.wait(max(0.0, deadline - time.monotonic())) for event in released):
                log.warning("wasmtime kept the output callbacks of %s", manifest.name)


def _execute(
    engine: _Engine,
    pre: wasmtime.InstancePre,
    manifest: ToolManifest,
    stdin: bytes,
    preopens: Sequence[tuple[str, str, bool]],
    env: Sequence[tuple[str, str]],
    stdout: _Output,
    stderr: _Output,
) -> _Exit:
    """Instantiate and run the guest in a fresh store, dropped when this returns."""
    store = wasmtime.Store(engine.engine)
    store.set_limits(
        memory_size=manifest.memory_mb * 2**20, table_elements=MAX_TABLE_ELEMENTS, memories=1
    )
    store.set_epoch_deadline(1)
    # An interrupt that came before the deadline was set did not trip it: look.
    if engine.stop.is_set():
        return _Exit(None, b"", b"", interrupted=True)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [manifest.name]
    wasi.env = env
    wasi.stdout_custom = stdout
    wasi.stderr_custom = stderr
    try:
        with _memory_file(stdin) as path:
            wasi.stdin_file = path
        for host, guest, writable in preopens:
            wasi.preopen_dir(host, guest, writable)
    except (OSError, wasmtime.WasmtimeError) as exc:
        return _Exit(None, b"", b"", setup=f"{manifest.name}: cannot set up WASI: {exc}")
    store.set_wasi(wasi)
    status: int | None = 0
    trap = None
    instance = None
    try:
        instance = pre.instantiate(store)
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)
    except wasmtime.ExitTrap as exc:
        status = exc.code
        _drop_frames(exc)
    except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
        status, trap = None, str(exc)
        _drop_frames(exc)
    memory = None
    if instance is not None:
        exported = instance.exports(store).get("memory")
        if isinstance(exported, wasmtime.Memory):
            memory = exported.data_len(store)
    return _Exit(
        status, bytes(stdout.data), bytes(stderr.data), stdout.overflow, trap, memory,
        interrupted=engine.stop.is_set(),
    )  # fmt: skip


async def _run_interruptible(
    fn: Callable[[], _Exit], interrupt: Callable[[], None], name: str
) -> _Exit:
    """``fn()`` in a worker thread named ``name``; a cancel calls ``interrupt`` and waits on.

    What ``trio.to_thread.run_sync(..., abandon_on_cancel=False)`` does, with
    the cancel turned into an ``interrupt`` right where trio delivers it (the
    abort callback) instead of in a watcher task beside the thread, which costs
    a nursery and a task per call. The thread comes from trio's thread cache;
    the calls it runs are bounded by the executor's workers. ``Cancelled`` is
    raised at the caller's next checkpoint, once ``fn`` has returned.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()

    def deliver(result: outcome.Outcome[_Exit]) -> None:
        # The task waits for this uncancellably, so the run is still going.
        token.run_sync_soon(trio.lowlevel.reschedule, task, result)

    def abort(raise_cancel: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
        interrupt()
        return trio.lowlevel.Abort.FAILED

    trio.lowlevel.start_thread_soon(fn, deliver, name=name)
    done: _Exit = await trio.lowlevel.wait_task_rescheduled(abort)
    return done


def _judge(manifest: ToolManifest, done: _Exit) -> ToolResult:
    """The call's result from how its guest ended.

    Raises:
        ToolError: for every end but a clean answer.
    """
    name = manifest.name
    if done.setup is not None:
        raise ToolError(done.setup)
    if done.interrupted:
        raise ToolError(f"{name} was interrupted")
    failed = done.trap is not None or done.status != 0
    limit = manifest.memory_mb * 2**20
    if failed and done.memory is not None and done.memory + MEMORY_SLACK > limit:
        why = _brief(done.trap) if done.trap is not None else f"exit status {done.status}"
        raise ToolError(
            f"{name} exceeded its memory limit of {manifest.memory_mb} MiB ({why})"
        )
    if done.trap is not None:
        if "memory minimum size" in done.trap:  # the module asks for more than the cap
            raise ToolError(
                f"{name} exceeded its memory limit of {manifest.memory_mb} MiB "
                f"({_brief(done.trap)})"
            )
        tail = _last_line(done.stderr)
        raise ToolError(f"{name} trapped: {_brief(done.trap)}{'; stderr: ' + tail if tail else ''}")
    if done.stdout_overflow:
        raise ToolError(f"{name}: the answer on stdout is larger than {MAX_CAPTURE_BYTES} bytes")
    return parse_output(name, done.stdout, done.stderr, done.status)


def _preopens(manifest: ToolManifest, policy: Policy) -> list[tuple[str, str, bool]]:
    """(host directory, guest path, writable) for each grant, checked against the policy.

    Raises:
        PolicyError: a grant lies outside the policy's roots.
        ToolError: a grant is not an existing directory.
    """
    preopens = []
    for grant in manifest.grants:
        shown = str(grant.path)
        try:
            host = policy.resolve(shown)
        except PolicyError:
            raise PolicyError(
                f"{manifest.name}: grant {shown} is outside the allowed roots"
            ) from None
        if not host.is_dir():
            raise ToolError(f"{manifest.name}: grant {shown} is not a directory")
        preopens.append((str(host), shown, grant.writable))
    return preopens


def _check_command(shown: str, module: wasmtime.Module) -> None:
    """Raise ``ToolError`` unless ``module`` exports ``_start`` as a function of no values."""
    for export in module.exports:
        if export.name == "_start":
            kind = export.type
            if isinstance(kind, wasmtime.FuncType) and not kind.params and not kind.results:
                return
            raise ToolError(f"{shown} is not a WASI command: its _start is not a () -> () function")
    raise ToolError(f"{shown} is not a WASI command: it exports no _start function")


def _drop_frames(exc: BaseException) -> None:
    """Free what the frames of ``exc``'s traceback hold now, the store among them.

    wasmtime-py raises a trap from a generator whose frame keeps the trap, a
    reference cycle that only the garbage collector would break, and until
    then the store and its WASI context (the output callbacks) would live on.
    """
    traceback.clear_frames(exc.__traceback__)
    exc.__traceback__ = None


def _engine_config() -> wasmtime.Config:
    config = wasmtime.Config()
    config.epoch_interruption = True
    return config


@contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path that reads ``data``: a memory file, or a private temporary file where none."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("edge-wasm-stdin", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(prefix="edge-wasm-stdin-") as f:
        f.write(data)
        f.flush()
        yield f.name


def _poll_oneoff(
    caller: wasmtime.Caller, stop: threading.Event, subs: int, events: int, count: int, out: int
) -> int:
    """WASI ``poll_oneoff`` for clock subscriptions: sleep on ``stop``, return early if it is set.

    The layouts are WASI preview 1's ``subscription`` and ``event``
    (https://github.com/WebAssembly/WASI/blob/main/legacy/preview1/docs.md).
    """
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory):
        return _EFAULT
    if count == 0:
        return _EINVAL
    size = memory.data_len(caller)
    end = subs + count * _SUBSCRIPTION.size
    if subs < 0 or end > size or events < 0 or events + count * _EVENT.size > size:
        return _EFAULT
    if out < 0 or out + 4 > size:
        return _EFAULT
    raw = bytes(memory.read(caller, subs, end))
    now = time.time_ns()
    deadlines = []
    for i in range(count):
        userdata, tag, clock, timeout, _precision, flags = _SUBSCRIPTION.unpack_from(
            raw, i * _SUBSCRIPTION.size
        )
        if tag != 0:
            return _ENOTSUP  # a file descriptor: its readiness is not served here
        if clock > 3:
            return _EINVAL
        if flags & _ABSTIME:
            if clock != _CLOCK_REALTIME:
                return _ENOTSUP
            wait = (timeout - now) / 1e9
        else:
            wait = timeout / 1e9
        deadlines.append((max(wait, 0.0), userdata))
    first = min(wait for wait, _ in deadlines)
    if stop.wait(min(first, threading.TIMEOUT_MAX)):
        return _EINTR
    fired = [userdata for wait, userdata in deadlines if wait <= first]
    packed = b"".join(_EVENT.pack(userdata, 0, 0, 0, 0) for userdata in fired)
    memory.write(caller, packed, events)
    memory.write(caller, struct.pack("<I", len(fired)), out)
    return _ESUCCESS


def _last_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:MESSAGE_CHARS] if lines else ""


def _brief(message: str) -> str:
    """wasmtime's message without its backtrace: the cause, bounded."""
    if "Caused by:" in message:
        message = message.split("Caused by:", 1)[1]
    lines = [
        line.strip()
        for line in message.splitlines()
        if line.strip() and not _GUTTER.match(line)  # the quoted source under a WAT error
    ]
    text = _WHERE.sub(r"(line \1, column \2)", " ".join(lines[:3]))
    return text[:MESSAGE_CHARS] + ("..." if len(text) > MESSAGE_CHARS else "")
