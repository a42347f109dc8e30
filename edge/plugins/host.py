"""The host side of one plugin runner: spawn it, hand-shake, serve its RPC, notice its end.

``run_runner`` is one *lifetime* (``edge.supervise``): one runner process from
spawn to exit. Its shape::

    run_runner                    (returns or raises; every path below ends with it)
    ├── the process               python -m edge.plugins.runner, own process group,
    │                             scrubbed environment, stdout unused
    ├── stderr drain              lines into edge's log at a bounded rate, the rest counted
    ├── exit watch                the process's exit wakes the lifetime at once (no polling)
    └── connection                one Unix socket in the 0700 runtime directory, unlinked
        ├── reader                the moment the runner connects (so no second connection)
        ├── writer                the only task that sends; a bounded queue
        ├── pinger                health: no pong within ``ping_timeout`` is a hang
        └── host services         what the manifest declared (log, config, tools.call,
                                  events, agents)

The lifetime raises ``RunnerFailed`` with one line of reason — "plugin weather
crashed (exit code 1; last stderr line: ...)" — for every end it did not ask for;
calls waiting on the runner fail with that reason at once. The runner is
contained like a ``terminal`` call (``edge.tools.contain``: its own cgroup, or
under the daemon as subreaper, else its process group), so whatever a plugin
starts, ``setsid`` included, ends with its runner. On the way out, whatever the
reason, everything in it gets SIGTERM, ``TERM_GRACE`` seconds, then SIGKILL, and
the socket file is removed. ``Runner.stop`` is the polite ladder
(prepare, drain, shutdown, close) a stopping daemon walks first.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final, Protocol

import trio
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from .. import __version__
from ..drain import StderrDrain
from ..errors import PluginCallError, RunnerFailed
from ..protocol.rpc import (
    PROTOCOL,
    Envelope,
    RpcError,
    RpcProtocolError,
    event,
    request,
    response,
)
from ..protocol.strict import json_problem
from ..tools.contain import CallProcesses, Child, Containment
from ..tools.process import spawn_contained
from ..watch import Watched
from .ipc import Channel
from .manifest import PluginManifest

__all__ = [
    "SUPPORTED_SDK",
    "HostServices",
    "HostTiming",
    "Runner",
    "RunnerSpec",
    "Tool",
    "run_runner",
]

log = logging.getLogger(__name__)
#: Where the runners' stderr lines are logged.
STDERR_LOG: Final = logging.getLogger("edge.plugins.stderr")

#: The SDK versions a runner may speak (its ``hello``).
SUPPORTED_SDK: Final = SpecifierSet(">=1.0,<2")
#: Environment variables every runner gets (besides its own three and its manifests' ``env``).
BASE_ENV: Final = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
#: Envelopes waiting to be sent to one runner.
SEND_QUEUE: Final = 64
#: Host-service requests of one runner outstanding at once; beyond, its socket is not
#: read until one is answered (a runner flooding requests waits, the daemon does not grow).
SERVICE_CONCURRENCY: Final = 16
#: Tools one plugin may register.
MAX_TOOLS: Final = 256
#: Log lines (the ``log`` service) of one runner logged per second; the rest are counted.
LOG_LINES_PER_SECOND: Final = 50
#: How a runner is started.
DEFAULT_ARGV: Final = (sys.executable, "-m", "edge.plugins.runner")
#: What a method asks for, by the capability a manifest must declare for it.
SERVICE_CAPABILITY: Final[Mapping[str, str]] = {
    "log": "log",
    "config.get": "config",
    "tools.call": "tools.call",
    "publish": "events",
    "agents.ask": "agents",
}


@dataclass(frozen=True, slots=True)
class HostTiming:
    """How long each step may take (seconds)."""

    #: From spawn to a valid ``hello``.
    hello_timeout: float = 10.0
    #: From ``hello`` to ``ready`` (the plugins' imports).
    load_timeout: float = 30.0
    #: Between health pings.
    ping_interval: float = 5.0
    #: A ping not answered within this is a hung runner.
    ping_timeout: float = 5.0
    #: After EOF, how long to wait for the exit code that describes the crash.
    exit_wait: float = 1.0
    #: stderr lines logged per second at most (the rest are counted).
    stderr_rate: int = 50


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool a plugin registered."""

    name: str
    description: str
    input_schema: dict[str, Any]
    timeout: float | None


@dataclass(frozen=True, slots=True)
class RunnerSpec:
    """What one runner loads and how it is started."""

    name: str
    plugins: tuple[PluginManifest, ...]
    #: The plugins' config, by id (defaults merged with the user's file).
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    argv: tuple[str, ...] = DEFAULT_ARGV

    def label(self) -> str:
        return f"plugin {self.name}" if len(self.plugins) == 1 else f"plugin runner {self.name}"


class HostServices(Protocol):
    """What a runner's plugins may ask the daemon for (after the capability check)."""

    def log(self, plugin: str, level: str, message: str) -> None: ...
    def config(self, plugin: str) -> Mapping[str, Any]: ...
    async def call_tool(self, plugin: str, tool: str, args: dict[str, Any]) -> dict[str, Any]: ...
    def publish(self, plugin: str, type: str, data: Any) -> None: ...


ProgressFn = Callable[[float, float | None, str | None], None]


class _Pending:
    __slots__ = ("done", "envelope", "progress")

    def __init__(self, progress: ProgressFn | None) -> None:
        self.done = trio.Event()
        self.envelope: Envelope | None = None
        self.progress = progress


class Runner:
    """One live runner: made and ended by ``run_runner``; ``call`` is for the tool specs."""

    def __init__(self, spec: RunnerSpec, pid: int, timing: HostTiming) -> None:
        self.spec = spec
        self.pid = pid
        self.timing = timing
        #: Registered tools by plugin id (only plugins that loaded).
        self.tools: dict[str, list[Tool]] = {}
        #: Hook event types by plugin id.
        self.hooks: dict[str, list[str]] = {}
        #: Plugins that did not load in this runner, with the reason.
        self.failed: dict[str, str] = {}
        self.preparing = False
        #: Events posted without waiting (cancel, hook), sent by the writer task.
        self._send, self._outbox = trio.open_memory_channel[Envelope](SEND_QUEUE)
        #: The connection; set once the runner has connected.
        self.channel: Channel | None = None
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._ended: str | None = None
        self._drained: trio.Event | None = None
        #: Called once, the moment the runner ends (set once it is ready).
        self.on_end: Callable[[Runner], None] | None = None
        self.dropped_events = 0
        #: The ``log`` service's rate limit: (window start, lines in it, suppressed).
        self.log_window = [0.0, 0, 0]
        #: Refusals already logged once (plugin, or (plugin, method)): no flood of warnings.
        self.log_refused: set[object] = set()

    @property
    def ended(self) -> str | None:
        """Why the runner ended (``None`` while it serves)."""
        return self._ended

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _id(self) -> int:
        value = self._next_id
        self._next_id += 1
        return value

    async def request(
        self,
        method: str,
        payload: Any = None,
        *,
        plugin: str | None = None,
        progress: ProgressFn | None = None,
    ) -> Any:
        """Send a request and wait for its response's payload.

        Raises:
            PluginCallError: the runner answered with an error, or ended first.
        """
        if self._ended is not None:
            raise PluginCallError(self._ended)
        rid = self._id()
        pending = _Pending(progress)
        self._pending[rid] = pending
        deadline = _monotonic_deadline()
        try:
            await self._deliver(request(rid, method, payload, plugin=plugin, deadline=deadline))
            await pending.done.wait()
        except trio.Cancelled:
            if method == "call" and not pending.done.is_set():
                self._post(event("cancel", {"id": rid}, plugin=plugin))
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise PluginCallError(self._ended or f"{self.spec.label()} is stopping") from None
        finally:
            self._pending.pop(rid, None)
            if not self._pending and self._drained is not None:
                self._drained.set()
        answer = pending.envelope
        if answer is None:  # the runner ended
            raise PluginCallError(self._ended or f"{self.spec.label()} ended")
        if answer.error is not None:
            raise PluginCallError(_error_text(plugin or self.spec.name, method, answer.error))
        return answer.payload

    async def call(
        self,
        plugin: str,
        tool: str,
        args: dict[str, Any],
        *,
        call_id: str | int | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """Run ``tool`` of ``plugin``; the deadline is the caller's cancel scope's."""
        payload = {"tool": tool, "args": args, "call_id": call_id}
        result = await self.request("call", payload, plugin=plugin, progress=progress)
        if not isinstance(result, dict):
            raise PluginCallError(f"plugin {plugin}: {tool} answered {type(result).__name__}")
        problem = json_problem(result)
        if problem is not None:
            message = f"plugin {plugin}: {tool} answered a result JSON cannot carry: {problem}"
            raise PluginCallError(message)
        return result

    async def _deliver(self, envelope: Envelope) -> None:
        """Send ``envelope`` from the calling task (``Channel.send`` keeps frames whole).

        Raises:
            PluginCallError: it cannot be encoded, or the connection is gone.
        """
        if self.channel is None:
            raise PluginCallError(self._ended or f"{self.spec.label()} is not connected")
        try:
            await self.channel.send(envelope)
        except RpcProtocolError as exc:
            label = self.spec.label()
            raise PluginCallError(f"{label}: cannot send {envelope.method}: {exc}") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise PluginCallError(self._ended or f"{self.spec.label()} is gone") from None

    def hook(self, plugin: str, data: dict[str, Any]) -> None:
        """Hand ``data`` (an event) to the plugin's hooks; dropped, counted, on a full queue."""
        self._post(event("hook", {"event": data}, plugin=plugin))

    def _post(self, envelope: Envelope) -> None:
        try:
            self._send.send_nowait(envelope)
        except trio.WouldBlock:
            self.dropped_events += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def stop(self, budget: float) -> None:
        """The polite part of the ladder, within ``budget`` seconds: prepare, drain, shutdown.

        What is left after it (close, SIGTERM, SIGKILL) happens when the
        lifetime is cancelled.
        """
        end = trio.current_time() + budget
        self.preparing = True
        with trio.move_on_at(end - budget / 2):
            await self.request("prepare")
            if self._pending:  # in-flight calls, cancelled or finishing
                self._drained = trio.Event()
                await self._drained.wait()
        with trio.move_on_at(end):
            await self.request("shutdown")

    def _end(self, reason: str) -> None:
        """Fail every waiting request with ``reason``: nothing more comes from this runner."""
        if self._ended is None:
            self._ended = reason
            if self.on_end is not None:
                self.on_end(self)
        for pending in self._pending.values():
            pending.done.set()


def _monotonic_deadline() -> float | None:
    """The caller's trio deadline on CLOCK_MONOTONIC (``None``: it has none)."""
    remaining = trio.current_effective_deadline() - trio.current_time()
    return None if math.isinf(remaining) else time.monotonic() + remaining


def _error_text(plugin: str, method: str, error: RpcError) -> str:
    if error.code == "tool_error":
        return f"plugin {plugin}: {error.message}"
    return f"plugin {plugin}: {method} failed ({error.code}): {error.message}"


def runner_env(spec: RunnerSpec, environ: Mapping[str, str]) -> dict[str, str]:
    """The runner's environment: the basics and what its manifests name (its socket and
    token are added when it starts)."""
    names = set(BASE_ENV)
    for manifest in spec.plugins:
        names.update(manifest.env)
    env = {name: environ[name] for name in sorted(names) if name in environ}
    env.pop("EDGE_TOKEN", None)
    env["EDGE_RUNNER_NAME"] = spec.name
    env["PYTHONUNBUFFERED"] = "1"
    # No bytecode cache: a plugin edited and reloaded within the same second (the cache's
    # resolution) would otherwise run its old code; nor __pycache__ in its directory.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


async def run_runner(
    spec: RunnerSpec,
    services: HostServices,
    runtime_dir: Path,
    *,
    environ: Mapping[str, str],
    on_ready: Callable[[Runner], None],
    on_gone: Callable[[Runner], None],
    timing: HostTiming = HostTiming(),
    spares: SparePool | None = None,
    processes: Containment | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One runner from spawn to exit (a supervisor's lifetime): see the module docstring.

    ``processes`` holds the runner's processes (``None``: its process group
    only). With ``spares``, a runner started ahead (``SparePool``) is taken when one is
    waiting, instead of starting a process now. ``on_ready`` gets the runner
    once its plugins registered and it said ready; ``on_gone`` gets it the
    moment it ends (only after ``on_ready``), before the process is reaped.

    Raises:
        RunnerFailed: the runner did not start, failed the handshake, broke the
            protocol, stopped answering health pings, or exited.
    """
    label = spec.label()
    spare = spares.claim() if spares is not None and spec.argv == DEFAULT_ARGV else None
    started: _Started | None = None
    runner: Runner | None = None
    try:
        if spare is not None:
            await spare.released.wait()  # the pool's tasks let go of its streams
            started = spare.started
            started.stderr.label = label
            log.debug("%s: taking a spare runner (pid %d)", label, started.process.pid)
        else:
            env = runner_env(spec, environ)
            started = await _start_process(spec.argv, env, runtime_dir, label, timing, processes)
        process, stderr = started.process, started.stderr
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(stderr.drain, started.output, close=False))
            exited = trio.Event()
            nursery.start_soon(_watch_exit, process, exited)
            if spare is not None:
                channel, hello = spare.channel, spare.hello
            else:
                channel, hello = await _connect(started, exited, label, timing)
            runner = Runner(spec, process.pid, timing)
            runner.channel = channel
            try:
                try:
                    await _handshake(channel, runner, hello, started.token, label, environ)
                    await _load(channel, runner, label, timing, services)
                except (RunnerFailed, trio.BrokenResourceError) as exc:
                    raise RunnerFailed(
                        await _lost_while_loading(exc, label, process, exited, stderr, timing)
                    ) from None
                task_status.started()
                on_ready(runner)
                runner.on_end = on_gone
                reason = await _serve(channel, runner, services, process, exited, label, stderr)
            finally:
                with trio.CancelScope(shield=True):
                    await channel.aclose()
            nursery.cancel_scope.cancel()
        raise RunnerFailed(reason)
    except RunnerFailed as exc:
        if runner is not None:
            runner._end(str(exc))
        raise
    finally:
        if runner is not None:
            runner._end(f"{label} stopped")
        if started is not None:
            await started.end()


@dataclass(eq=False)
class _Started:
    """A runner process just started: its socket (until it connects), token and stderr."""

    process: Child
    #: Its stdout and stderr (the runner points stdout at stderr).
    output: trio.abc.ReceiveStream
    call: CallProcesses
    listener: trio.socket.SocketType
    socket_path: Path
    token: str
    stderr: StderrDrain

    def close_socket(self) -> None:
        self.listener.close()
        self.socket_path.unlink(missing_ok=True)

    async def end(self) -> None:
        """Every exit path: socket file removed, every process of the runner ended (SIGTERM,
        ``TERM_GRACE``, SIGKILL) and the leader reaped, the pipe closed."""
        self.close_socket()
        with trio.CancelScope(shield=True):
            await self.call.stop(self.process)
            await self.output.aclose()
        if self.stderr.suppressed:
            label, dropped = self.stderr.label, self.stderr.suppressed
            log.warning("%s: %d stderr lines not logged in all (too many)", label, dropped)


async def _start_process(
    argv: tuple[str, ...],
    env: dict[str, str],
    runtime_dir: Path,
    label: str,
    timing: HostTiming,
    processes: Containment | None,
) -> _Started:
    """Bind a fresh socket in ``runtime_dir`` and start ``argv``, contained, told to
    connect to it (its own session, stdin from /dev/null, stdout and stderr one pipe)."""
    socket_path = runtime_dir / f"r{secrets.token_hex(6)}.sock"
    token = secrets.token_urlsafe(32)
    listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    call = CallProcesses.group_only() if processes is None else processes.open_call()
    child: Child | None = None
    try:
        await listener.bind(os.fspath(socket_path))
        os.chmod(socket_path, 0o600)
        listener.listen(1)
        env = {**env, "EDGE_RUNNER_SOCKET": os.fspath(socket_path), "EDGE_RUNNER_TOKEN": token}
        await call.recorded()
        cwd = os.fspath(runtime_dir)
        child, output = await spawn_contained(list(argv), cwd, call.env(env), call)
        await call.started(child.pid)
    except BaseException:
        listener.close()
        socket_path.unlink(missing_ok=True)
        with trio.CancelScope(shield=True):
            await call.stop(child)
        raise
    stderr = StderrDrain(label, STDERR_LOG, timing.stderr_rate)
    return _Started(child, output, call, listener, socket_path, token, stderr)


async def _connect(
    started: _Started, exited: trio.Event, label: str, timing: HostTiming
) -> tuple[Channel, Envelope]:
    """The runner's connection (the socket file goes at once) and its first frame."""
    sock = await _accept(started.listener, started.process, exited, label, started.stderr, timing)
    started.close_socket()  # nobody else may connect
    channel = Channel(trio.SocketStream(sock))
    try:
        hello = await _receive(channel, label, timing.hello_timeout, "hello")
    except BaseException:
        with trio.CancelScope(shield=True):
            await channel.aclose()
        raise
    return channel, hello


@dataclass(eq=False)
class Spare:
    """A runner started ahead, its hello received and not yet answered."""

    started: _Started
    channel: Channel
    hello: Envelope
    #: Set once the pool's tasks stopped reading its stderr and watching its exit.
    released: trio.Event = field(default_factory=trio.Event)


class SparePool:
    """Keeps one runner process started ahead, so a restart skips Python's start-up.

    A runner spends most of its start importing (Python, trio, pydantic, the
    SDK). The spare has done that, connected and said hello; it waits for the
    answer, which names the plugins it is to run and the environment variables
    their manifests declare (its own environment holds only ``BASE_ENV``).
    ``keep`` runs in the plugin nursery: it starts a spare, hands it to the
    first ``claim``, and after ``SPARE_DELAY`` seconds starts the next.
    """

    def __init__(
        self,
        runtime_dir: Path,
        environ: Mapping[str, str],
        timing: HostTiming,
        processes: Containment | None = None,
    ) -> None:
        self.runtime_dir = runtime_dir
        self.environ = environ
        self.timing = timing
        self.processes = processes
        self._spare: Spare | None = None
        self._claimed = trio.Event()
        #: The pid of the spare waiting to be claimed (``None``: none is, now).
        self.waiting: Watched[int | None] = Watched(None)

    @property
    def pid(self) -> int | None:
        return self.waiting.value

    def claim(self) -> Spare | None:
        """The waiting spare (``None`` if there is none now)."""
        spare, self._spare = self._spare, None
        if spare is not None:
            self.waiting.value = None
            self._claimed.set()
        return spare

    async def keep(self) -> None:
        """Keep a spare until cancelled (then the unclaimed one is ended)."""
        label = "plugin runner (spare)"
        while True:
            env = runner_env(RunnerSpec("spare", ()), self.environ)
            env["EDGE_RUNNER_SPARE"] = "1"
            started = await _start_process(
                DEFAULT_ARGV, env, self.runtime_dir, label, self.timing, self.processes
            )
            handed = False
            channel: Channel | None = None
            try:
                process = started.process
                self._claimed = trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(partial(started.stderr.drain, started.output, close=False))
                    exited = trio.Event()
                    nursery.start_soon(_watch_exit, process, exited)
                    channel, hello = await _connect(started, exited, label, self.timing)
                    spare = Spare(started, channel, hello)
                    self._spare = spare
                    self.waiting.value = process.pid
                    await _first(exited.wait, self._claimed.wait)
                    handed = self._spare is not spare
                    self._spare = None
                    self.waiting.value = None
                    nursery.cancel_scope.cancel()
                if handed:
                    spare.released.set()
                else:
                    exit_text = _describe_exit(process.returncode)
                    log.debug("the spare plugin runner exited: %s", exit_text)
            except RunnerFailed as exc:
                log.debug("no spare plugin runner: %s", exc)
            finally:
                if not handed:
                    with trio.CancelScope(shield=True):
                        if channel is not None:
                            await channel.aclose()
                        await started.end()
            await trio.sleep(SPARE_DELAY)


#: Seconds between a spare being taken (or failing) and the next one starting: the
#: runner that took it has the machine to itself meanwhile.
SPARE_DELAY: Final = 1.0


async def _first(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as one of ``waits`` returns."""
    async with trio.open_nursery() as nursery:
        for wait in waits:

            async def one(wait: Callable[[], Awaitable[object]] = wait) -> None:
                await wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(one)


async def _lost_while_loading(
    exc: BaseException,
    label: str,
    process: Child,
    exited: trio.Event,
    stderr: StderrDrain,
    timing: HostTiming,
) -> str:
    """What to say when the connection ended before ``ready``: the crash, if it was one."""
    if isinstance(exc, RunnerFailed) and "closed the connection" not in str(exc):
        return str(exc)  # refused, broke the protocol, too slow: that is the reason
    with trio.move_on_after(timing.exit_wait):
        await exited.wait()
    if exited.is_set():
        await trio.sleep(0.02)  # its last stderr lines
        return _crash_text(label, process, stderr) + " while loading its plugins"
    return f"{label} closed its connection while loading its plugins"


async def _watch_exit(process: Child, exited: trio.Event) -> None:
    await process.wait()
    exited.set()


def _crash_text(label: str, process: Child, stderr: StderrDrain) -> str:
    text = f"{label} crashed ({_describe_exit(process.returncode)}"
    if stderr.tail:
        text += f"; last stderr line: {stderr.tail[-1]}"
    return text + ")"


async def _accept(
    listener: trio.socket.SocketType,
    process: Child,
    exited: trio.Event,
    label: str,
    stderr: StderrDrain,
    timing: HostTiming,
) -> trio.socket.SocketType:
    """The runner's connection, or ``RunnerFailed`` when it exits or takes too long."""
    result: list[trio.socket.SocketType] = []
    async with trio.open_nursery() as race:

        async def accept() -> None:
            sock, _ = await listener.accept()
            result.append(sock)
            race.cancel_scope.cancel()

        async def exit_first() -> None:
            await exited.wait()
            await trio.sleep(0.05)  # the last stderr lines
            race.cancel_scope.cancel()

        race.start_soon(accept)
        race.start_soon(exit_first)
        with trio.move_on_after(timing.hello_timeout):
            await trio.sleep_forever()
        race.cancel_scope.cancel()
    if result:
        return result[0]
    if exited.is_set():
        raise RunnerFailed(_crash_text(label, process, stderr) + " before it connected")
    raise RunnerFailed(f"{label} did not connect within {timing.hello_timeout:g} s")


async def _receive(channel: Channel, label: str, within: float, waiting_for: str) -> Envelope:
    with trio.move_on_after(within):
        try:
            return await channel.receive()
        except RpcProtocolError as exc:
            raise RunnerFailed(f"{label} broke the protocol: {exc}") from None
        except (EOFError, trio.BrokenResourceError) as exc:
            raise RunnerFailed(f"{label} closed the connection before {waiting_for}") from exc
    raise RunnerFailed(f"{label} sent no {waiting_for} within {within:g} s")


async def _handshake(
    channel: Channel,
    runner: Runner,
    hello: Envelope,
    token: str,
    label: str,
    environ: Mapping[str, str],
) -> None:
    """Check ``hello`` (its token in constant time, its SDK version) and answer it."""
    payload = hello.payload if isinstance(hello.payload, dict) else {}
    problem = None
    if hello.kind != "request" or hello.method != "hello":
        problem = f"its first frame was {hello.kind} {hello.method!r}, not a hello"
    elif not isinstance(payload.get("token"), str) or not hmac.compare_digest(
        payload["token"].encode(), token.encode()
    ):
        problem = "its hello carried the wrong session token"
    else:
        sdk = payload.get("sdk")
        try:
            sdk_ok = isinstance(sdk, str) and Version(sdk) in SUPPORTED_SDK
        except InvalidVersion:
            sdk_ok = False
        if not sdk_ok:
            problem = f"it speaks SDK {sdk!r}, and this edge supports SDK {SUPPORTED_SDK}"
    if problem is not None:
        with trio.move_on_after(1):
            await channel.send(response(hello, error=RpcError("bad_request", problem)))
        raise RunnerFailed(f"{label} was refused: {problem}")
    plugins = {
        m.id: {
            "path": os.fspath(m.directory),
            "entry": m.entry,
            "config": dict(runner.spec.configs.get(m.id, m.defaults)),
            "capabilities": sorted(m.capabilities),
        }
        for m in runner.spec.plugins
    }
    declared = {name for m in runner.spec.plugins for name in m.env} - {"EDGE_TOKEN"}
    answer = {
        "protocol": PROTOCOL,
        "host": __version__,
        "name": label,
        "plugins": plugins,
        "env": {name: environ[name] for name in sorted(declared) if name in environ},
    }
    await channel.send(response(hello, answer))


async def _load(
    channel: Channel, runner: Runner, label: str, timing: HostTiming, services: HostServices
) -> None:
    """``register`` and ``failed`` per plugin until ``ready``."""
    ids = {m.id for m in runner.spec.plugins}
    deadline = trio.current_time() + timing.load_timeout
    while True:
        left = max(0.0, deadline - trio.current_time())
        message = await _receive(channel, label, left, "ready")
        if message.method == "ready" and message.kind == "request":
            await channel.send(response(message, {}))
            break
        if message.plugin not in ids:
            raise RunnerFailed(
                f"{label} broke the protocol: {message.method} for {message.plugin!r}"
            )
        if message.method == "failed" and message.kind == "event":
            payload = message.payload if isinstance(message.payload, dict) else {}
            runner.failed[message.plugin] = str(payload.get("message", "did not load"))[:2000]
        elif message.method == "register" and message.kind == "request":
            try:
                tools, hooks = _registration(message.payload)
            except ValueError as exc:
                await channel.send(response(message, error=RpcError("bad_request", str(exc))))
                runner.failed[message.plugin] = f"bad registration: {exc}"
                continue
            runner.tools[message.plugin] = tools
            runner.hooks[message.plugin] = hooks
            await channel.send(response(message, {}))
        elif message.method == "log" and message.kind == "event":
            _log_service(runner, message, services)
        else:
            raise RunnerFailed(f"{label} sent {message.kind} {message.method!r} before ready")
    if runner.failed and not runner.tools:
        reasons = "; ".join(f"{p}: {why}" for p, why in sorted(runner.failed.items()))
        raise RunnerFailed(f"{label} loaded no plugin: {reasons}")


def _registration(payload: Any) -> tuple[list[Tool], list[str]]:
    if not isinstance(payload, dict) or not isinstance(payload.get("tools", []), list):
        raise ValueError("register needs {tools: [...], hooks: [...]}")
    tools = []
    if len(payload.get("tools", [])) > MAX_TOOLS:
        count = len(payload["tools"])
        raise ValueError(f"{count} tools, more than the {MAX_TOOLS} one plugin may have")
    for item in payload.get("tools", []):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"a tool needs a name: {item!r:.200}")
        schema = item.get("input_schema") or {"type": "object"}
        if not isinstance(schema, dict):
            raise ValueError(f"tool {item['name']}: input_schema must be a map")
        timeout = item.get("timeout")
        if timeout is not None and (not isinstance(timeout, int | float) or not timeout > 0):
            raise ValueError(f"tool {item['name']}: timeout must be a positive number")
        tools.append(
            Tool(item["name"], str(item.get("description") or item["name"]), schema,
                 None if timeout is None else float(timeout))
        )  # fmt: skip
    hooks = payload.get("hooks", [])
    if not isinstance(hooks, list) or not all(isinstance(h, str) for h in hooks):
        raise ValueError("hooks must be a list of event types")
    return tools, hooks


def _log_service(runner: Runner, message: Envelope, services: HostServices) -> None:
    plugin = message.plugin or runner.spec.name
    manifest = next((m for m in runner.spec.plugins if m.id == plugin), None)
    if manifest is None or "log" not in manifest.capabilities:
        if plugin not in runner.log_refused:  # once: a refused line in a loop is no log flood
            runner.log_refused.add(plugin)
            log.warning("plugin %s: log lines refused: plugin.toml does not declare 'log'", plugin)
        return
    window = runner.log_window
    now = time.monotonic()
    if now - window[0] >= 1.0:
        if window[2]:
            log.warning("plugin %s: %d log lines not logged (too many)", plugin, window[2])
        window[:] = [now, 0, 0]
    if window[1] >= LOG_LINES_PER_SECOND:
        window[2] += 1
        return
    window[1] += 1
    payload = message.payload if isinstance(message.payload, dict) else {}
    services.log(plugin, str(payload.get("level", "info")), str(payload.get("message", ""))[:4000])


async def _serve(
    channel: Channel,
    runner: Runner,
    services: HostServices,
    process: Child,
    exited: trio.Event,
    label: str,
    stderr: StderrDrain,
) -> str:
    """Serve the connection until it ends; returns the reason it ended."""
    reason: list[str] = []
    slots = trio.Semaphore(SERVICE_CONCURRENCY)

    async with trio.open_nursery() as nursery:

        def end(why: str) -> None:
            if not reason:
                reason.append(why)
                runner._end(why)
            nursery.cancel_scope.cancel()

        async def crashed() -> None:
            await exited.wait()
            await trio.sleep(0.02)  # its last stderr lines
            if runner.preparing and process.returncode == 0:
                await trio.sleep_forever()  # it was told to stop: the stopper cancels us
            end(_crash_text(label, process, stderr))

        async def reader() -> None:
            while True:
                try:
                    message = await channel.receive()
                except RpcProtocolError as exc:
                    log.error("%s: closing its connection: %s", label, exc)
                    end(f"{label} broke the protocol: {exc}")
                    return
                except (EOFError, trio.BrokenResourceError):
                    if runner.preparing:
                        runner._end(f"{label} stopped")
                        await trio.sleep_forever()  # it was told to stop: the stopper cancels us
                    with trio.move_on_after(runner.timing.exit_wait):
                        await exited.wait()
                    await trio.sleep(0.02)
                    if exited.is_set():
                        end(_crash_text(label, process, stderr))
                    else:
                        end(f"{label} closed its connection")
                    return
                if message.kind == "request":
                    await slots.acquire()  # backpressure: the socket waits, not the daemon
                _dispatch(message, runner, services, nursery, slots)

        async def writer() -> None:  # the events posted without waiting: cancel, hook
            async for envelope in runner._outbox:
                try:
                    await channel.send(envelope)
                except RpcProtocolError as exc:  # an event too large to encode
                    log.warning("%s: could not send %s: %s", label, envelope.method, exc)
                except trio.BrokenResourceError as exc:
                    end(f"{label} stopped reading its socket: {exc}")
                    return
                except trio.ClosedResourceError:
                    return  # the reader reports why

        async def pinger() -> None:
            timing = runner.timing
            while True:
                await trio.sleep(timing.ping_interval)
                with trio.move_on_after(timing.ping_timeout) as scope:
                    try:
                        await runner.request("ping")
                    except PluginCallError as exc:  # the channel broke (a send timed out)
                        end(f"{label} stopped reading its socket: {exc}")
                        return
                if scope.cancelled_caught:
                    end(f"{label} stopped answering health pings for {timing.ping_timeout:g} s")
                    return

        nursery.start_soon(crashed)
        nursery.start_soon(reader)
        nursery.start_soon(writer)
        nursery.start_soon(pinger)
    return reason[0] if reason else f"{label} stopped"


def _dispatch(
    message: Envelope,
    runner: Runner,
    services: HostServices,
    nursery: trio.Nursery,
    slots: trio.Semaphore,
) -> None:
    if message.kind == "response":
        pending = runner._pending.get(message.id)
        if pending is not None:
            pending.envelope = message
            pending.done.set()
        return
    if message.kind == "event":
        if message.method == "progress":
            _progress(runner, message)
        elif message.method == "log":
            _log_service(runner, message, services)
        else:
            log.debug("%s: ignoring event %r", runner.spec.label(), message.method)
        return
    nursery.start_soon(_service, message, runner, services, slots)


def _progress(runner: Runner, message: Envelope) -> None:
    payload = message.payload if isinstance(message.payload, dict) else {}
    pending = runner._pending.get(payload.get("id", -1))
    if pending is None or pending.progress is None:
        return
    done, total, text = payload.get("done"), payload.get("total"), payload.get("message")
    if not isinstance(done, int | float) or isinstance(done, bool):
        return
    pending.progress(
        float(done),
        float(total) if isinstance(total, int | float) and not isinstance(total, bool) else None,
        text[:500] if isinstance(text, str) else None,
    )


async def _service(
    message: Envelope, runner: Runner, services: HostServices, slots: trio.Semaphore
) -> None:
    """Answer one host-service request (after the capability check); frees its slot."""
    try:
        result, error = await _service_answer(message, runner, services)
        try:
            await runner._deliver(response(message, result, error=error))
        except PluginCallError as exc:
            if runner.channel is not None and "cannot send" in str(exc):  # too large: say so
                with contextlib.suppress(PluginCallError):
                    failed = RpcError("bad_request", str(exc))
                    await runner._deliver(response(message, error=failed))
    finally:
        slots.release()


async def _service_answer(
    message: Envelope, runner: Runner, services: HostServices
) -> tuple[Any, RpcError | None]:
    plugin = message.plugin or ""
    manifest = next((m for m in runner.spec.plugins if m.id == plugin), None)
    capability = SERVICE_CAPABILITY.get(message.method)
    payload = message.payload if isinstance(message.payload, dict) else {}
    if manifest is None:
        return None, RpcError("bad_request", f"no plugin {plugin!r} in this runner")
    if capability is None or message.method == "log":
        return None, RpcError("unknown_method", f"the daemon has no method {message.method!r}")
    if capability not in manifest.capabilities:
        if (plugin, message.method) not in runner.log_refused:
            runner.log_refused.add((plugin, message.method))
            log.warning(
                "plugin %s: refused %s (capability %r not declared)",
                plugin, message.method, capability,
            )  # fmt: skip
        return None, RpcError(
            "not_declared",
            f"plugin {plugin} may not use {message.method}: its plugin.toml does not declare "
            f"the capability {capability!r}",
        )
    try:
        return await _serve_one(message.method, plugin, payload, services), None
    except ValueError as exc:
        return None, RpcError("bad_request", str(exc))


async def _serve_one(
    method: str, plugin: str, payload: dict[str, Any], services: HostServices
) -> Any:
    if method == "config.get":
        return dict(services.config(plugin))
    if method == "tools.call":
        tool, args = payload.get("tool"), payload.get("args", {})
        if not isinstance(tool, str) or not isinstance(args, dict):
            raise ValueError("tools.call needs {tool: name, args: {...}}")
        return await services.call_tool(plugin, tool, args)
    if method == "agents.ask":
        # Through the agent_ask tool: the executor's path (policy, the cloud's approval,
        # its timeout), and cancelled with the plugin's call, which cancels the request.
        agent, tool = payload.get("agent"), payload.get("tool")
        args, timeout = payload.get("args", {}), payload.get("timeout")
        if not isinstance(agent, str) or not isinstance(tool, str) or not isinstance(args, dict):
            raise ValueError("agents.ask needs {agent: id or name, tool: name, args: {...}}")
        ask: dict[str, Any] = {"agent": agent, "tool": tool, "args": args}
        if timeout is not None:
            ask["timeout"] = timeout
        return await services.call_tool(plugin, "agent_ask", ask)
    if method == "publish":
        kind = payload.get("type")
        if not isinstance(kind, str) or not kind:
            raise ValueError("publish needs {type: name, data: ...}")
        problem = json_problem(payload.get("data"))
        if problem is not None:
            raise ValueError(f"an event's data must be JSON (it goes to /events): {problem}")
        services.publish(plugin, kind, payload.get("data"))
        return {}
    raise ValueError(f"no method {method!r}")  # pragma: no cover - SERVICE_CAPABILITY covers it


def sweep_runtime_dirs(parent: Path, prefix: str) -> int:
    """Remove runtime directories ``<prefix><pid>-*`` of edge processes that are gone."""
    import shutil

    removed = 0
    try:
        entries = list(parent.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_dir() or entry.is_symlink():
            continue
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or entry.stat().st_uid != os.getuid():
            continue
        if _alive(int(pid_text)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
