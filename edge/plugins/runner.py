"""The plugin runner: ``python -m edge.plugins.runner``, the process plugins run in.

edge starts it with ``EDGE_RUNNER_SOCKET`` (the Unix socket to connect to),
``EDGE_RUNNER_TOKEN`` (a one-time token: removed from the environment, and
blanked where ``/proc/<pid>/environ`` shows it, before any plugin code runs) and
``EDGE_RUNNER_NAME`` (for its stderr lines). The runner says ``hello``, imports
each plugin edge names in the answer (which also carries the environment
variables those plugins' manifests declare, and the runner's name: a *spare*,
started with ``EDGE_RUNNER_SPARE=1`` before edge knew what it would run, waits
for that answer as long as it takes), registers its tools and hooks (or reports
``failed``), says ``ready`` and serves edge's requests until ``shutdown`` or
until the socket closes (see ``edge.protocol.rpc`` for the conversation).
stdout is pointed at stderr, which edge logs: a stray ``print`` never reaches
the socket.

Serving: one reader task dispatches envelopes; every request runs in a task of
its own; one writer task sends everything, from a bounded queue (``OUTGOING``).
Async tools run on this trio loop, sync tools and handlers in worker threads
(abandoned on cancel: their context's ``cancelled`` turns true), so ``ping`` is
answered while tools run. Progress and log events never block a tool: when the
queue is full they are dropped and counted.

Importing: each plugin's directory goes first on ``sys.path`` and its entry
module (``main``, ``pkg.tools``) is imported inside a package of its own,
``_edge_plugin_<n>_<id>``, whose ``__path__`` is the plugin directory. Two
plugins whose entries are both called ``main`` are then two modules, and
relative imports (``from . import helpers``) find the plugin's own files. When
one runner holds several plugins, modules a plugin imported from its own
directory by absolute name (``import helpers``) are taken out of
``sys.modules`` once it has loaded, so the next plugin's ``helpers`` is its own;
a plugin that imports its own modules lazily, inside a tool, should import them
relatively. Imports run on the loop thread, before ``ready``.

Results: ``edge.plugin.as_result``; a result that cannot be sent (larger than
``rpc.MAX_FRAME``) is answered with a ``tool_error``.

Exit status: 0 after ``shutdown`` or when edge closes the socket; 2 when the
runner cannot start (no socket, missing environment) or edge breaks the protocol;
3 when edge refuses the ``hello`` (wrong token, SDK version out of range).
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import inspect
import math
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from ..plugin import SDK_VERSION, ArgumentError, Context, HostError, Plugin, as_result
from ..protocol.rpc import Envelope, RpcError, RpcProtocolError, event, request, response
from ..secret import blank_initial_environ
from .ipc import Channel

__all__ = ["PluginLoadError", "Runner", "import_plugin", "main"]

#: Exit status: done (shutdown, or edge closed the socket).
EXIT_OK: Final = 0
#: Exit status: could not start, or edge broke the protocol.
EXIT_BROKEN: Final = 2
#: Exit status: edge refused the hello.
EXIT_REFUSED: Final = 3
#: Envelopes queued for the writer at most (a full queue makes senders wait).
OUTGOING: Final = 64
#: Seconds ``shutdown`` waits for calls still running.
SHUTDOWN_GRACE: Final = 1.0
#: Seconds the last frames (the answer to ``shutdown``) have to leave.
FLUSH_WITHIN: Final = 1.0
#: Seconds edge has to answer the hello (it gives up on the runner sooner).
HELLO_WITHIN: Final = 60.0
#: Worker threads for sync tools and handlers at once (a sync tool that ignores a cancel
#: keeps its thread until it returns; calls beyond this wait, within their deadlines).
THREADS: Final = 32
#: Frames of a tool's traceback written to stderr.
TRACE_FRAMES: Final = 8
#: What an entry module name looks like.
ENTRY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class PluginLoadError(Exception):
    """A plugin could not be imported, or has no ``Plugin``; the message says why."""


@dataclass(slots=True)
class _Loaded:
    """A registered plugin and its current config."""

    id: str
    plugin: Plugin
    config: dict[str, Any]


@dataclass(slots=True)
class _Call:
    """A ``call`` being served: its cancel scope, and its context once made."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    ctx: Context | None = None
    cancel_requested: bool = False
    done: trio.Event = field(default_factory=trio.Event)


@dataclass(slots=True)
class _Reply:
    """Where the response to one of the runner's own requests lands."""

    arrived: trio.Event = field(default_factory=trio.Event)
    envelope: Envelope | None = None


class Runner:
    """The runner's side of one connection to edge (``run`` serves it to the end)."""

    def __init__(
        self, channel: Channel, token: str, name: str = "runner", *, spare: bool = False
    ) -> None:
        self.channel = channel
        self.name = name
        #: A spare waits for edge's answer to its hello as long as it takes.
        self.spare = spare
        self.plugins: dict[str, _Loaded] = {}
        self.exit_code: int | None = None
        self._token: str | None = token
        self._out_send, self._out_recv = trio.open_memory_channel[Envelope](OUTGOING)
        self._pending: dict[int, _Reply] = {}
        self._next_id = 0
        self._calls: dict[int, _Call] = {}
        self._preparing = False
        self._dropped = 0
        self._writer_done = trio.Event()
        #: Envelopes handed to the writer and not yet sent (a handoff to a waiting writer
        #: leaves the channel's buffer empty, so the buffer alone cannot tell).
        self._unsent = 0
        self._limiter = trio.CapacityLimiter(THREADS)
        self._loop_thread = threading.get_ident()
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._handlers: dict[str, Callable[[Envelope], Awaitable[None]]] = {
            "call": self._call,
            "ping": self._ping,
            "config": self._config,
            "prepare": self._prepare,
            "shutdown": self._shutdown,
        }

    async def run(self) -> int:
        """Say hello, load the plugins, serve; the exit status."""
        self._loop_thread = threading.get_ident()
        self._trio_token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._writer)
            nursery.start_soon(self._reader)
            nursery.start_soon(self._start)
        return EXIT_OK if self.exit_code is None else self.exit_code

    def say(self, message: str) -> None:
        """One line on stderr (edge logs it)."""
        sys.stderr.write(f"{self.name}: {message}\n")
        sys.stderr.flush()

    def _exit(self, code: int, message: str | None = None) -> None:
        if message is not None:
            self.say(message)
        if self.exit_code is None:
            self.exit_code = code
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    # -- the connection --------------------------------------------------------------------

    async def _reader(self) -> None:
        try:
            while True:
                self._dispatch(await self.channel.receive())
        except EOFError:
            self._exit(EXIT_OK)
        except RpcProtocolError as exc:
            self._exit(EXIT_BROKEN, f"edge sent a malformed frame ({exc}); exiting")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._exit(EXIT_OK, "the connection to edge is gone; exiting")

    async def _writer(self) -> None:
        try:
            async for envelope in self._out_recv:
                try:
                    await self.channel.send(envelope)
                except RpcProtocolError as exc:
                    await self._unsendable(envelope, exc)
                finally:
                    self._unsent -= 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._exit(EXIT_OK, "the connection to edge is gone; exiting")
        self._writer_done.set()

    async def _unsendable(self, envelope: Envelope, exc: RpcProtocolError) -> None:
        """Answer in place of a frame that could not be encoded (too large, not msgpack)."""
        if envelope.kind == "response":
            error = RpcError("tool_error", f"the result could not be sent to edge: {exc}")
            await self.channel.send(response(envelope, error=error))
        elif envelope.kind == "request" and (reply := self._pending.pop(envelope.id, None)):
            error = RpcError("bad_request", f"could not send the request to edge: {exc}")
            reply.envelope = response(envelope, error=error)
            reply.arrived.set()
        else:
            self.say(f"dropped a {envelope.method} event that cannot be sent: {exc}")

    async def _send(self, envelope: Envelope) -> None:
        """Send from this task, unless events are queued or going out: then behind them
        (a call's progress never arrives after its result)."""
        try:
            if self._unsent:
                self._unsent += 1
                try:
                    await self._out_send.send(envelope)
                except BaseException:
                    self._unsent -= 1
                    raise
                return
            try:
                await self.channel.send(envelope)
            except RpcProtocolError as exc:
                await self._unsendable(envelope, exc)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # stopping: nothing more leaves (the reader and writer say why)

    async def _respond(
        self, to: Envelope, payload: Any = None, error: RpcError | None = None
    ) -> None:
        """Answer ``to`` with ``payload`` (``{}`` when none) or ``error``."""
        if payload is None and error is None:
            payload = {}
        await self._send(response(to, payload, error=error))

    def _dispatch(self, envelope: Envelope) -> None:
        assert self._nursery is not None
        if envelope.kind == "response":
            reply = self._pending.pop(envelope.id, None)
            if reply is not None:
                reply.envelope = envelope
                reply.arrived.set()
        elif envelope.kind == "event":
            if envelope.method == "cancel":
                self._cancel(envelope)
            elif envelope.method == "hook":
                self._nursery.start_soon(self._guarded, self._hook, envelope)
            else:
                self.say(f"ignored an unknown event {envelope.method!r} from edge")
        else:
            handler = self._handlers.get(envelope.method, self._unknown)
            if envelope.method == "call":
                # Registered before its task starts, so a cancel right behind it finds it.
                self._calls[envelope.id] = _Call()
            self._nursery.start_soon(self._guarded, handler, envelope)

    async def _guarded(
        self, handler: Callable[[Envelope], Awaitable[None]], envelope: Envelope
    ) -> None:
        """Run a handler; a bug in it is answered ``internal`` and does not stop the runner."""
        try:
            await handler(envelope)
        except Exception as exc:
            self.say(f"internal error serving {envelope.method!r}:\n{_trace(exc)}")
            if envelope.kind == "request":
                await self._respond(envelope, error=RpcError("internal", _describe(exc)))

    # -- the HostLink a Context talks through --------------------------------------------------

    def emit(self, method: str, payload: dict[str, Any], plugin: str) -> None:
        envelope = event(method, payload, plugin=plugin)
        if threading.get_ident() == self._loop_thread:
            self._emit_now(envelope)
        elif self._trio_token is not None:
            try:
                self._trio_token.run_sync_soon(self._emit_now, envelope)
            except trio.RunFinishedError:
                pass  # the runner has stopped; an abandoned thread is still reporting

    def _emit_now(self, envelope: Envelope) -> None:
        try:
            self._out_send.send_nowait(envelope)
            self._unsent += 1
        except trio.WouldBlock:
            self._dropped += 1
            return
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        if self._dropped:
            self.say(f"{self._dropped} progress/log events dropped: edge was not reading them")
            self._dropped = 0

    async def request(self, method: str, payload: dict[str, Any], plugin: str | None = None) -> Any:
        """Send a request to edge and wait for its response's payload.

        Raises:
            HostError: edge answered with an error.
        """
        self._next_id += 1
        request_id = self._next_id
        reply = self._pending[request_id] = _Reply()
        try:
            await self._send(request(request_id, method, payload, plugin=plugin))
            await reply.arrived.wait()
        finally:
            self._pending.pop(request_id, None)
        assert reply.envelope is not None
        if reply.envelope.error is not None:
            raise HostError(reply.envelope.error.code, reply.envelope.error.message)
        return reply.envelope.payload

    # -- start: hello, load, register, ready -----------------------------------------------

    async def _start(self) -> None:
        assert self._token is not None
        hello = {"token": self._token, "sdk": SDK_VERSION, "pid": os.getpid()}
        self._token = None
        try:
            with trio.fail_after(math.inf if self.spare else HELLO_WITHIN):
                answer = await self.request("hello", hello)
        except HostError as exc:
            self._exit(EXIT_REFUSED, f"edge refused this runner: {exc.message}")
            return
        except trio.TooSlowError:
            self._exit(EXIT_BROKEN, f"edge did not answer the hello within {HELLO_WITHIN:g} s")
            return
        plugins = answer.get("plugins") if isinstance(answer, dict) else None
        if not isinstance(plugins, dict):
            self._exit(EXIT_BROKEN, "edge's answer to the hello names no plugins")
            return
        # A spare was started before edge knew which plugins it would run: their
        # manifests' environment variables and the runner's name come with the answer.
        env = answer.get("env")
        if isinstance(env, dict):
            os.environ.update({str(k): str(v) for k, v in env.items()})
        if isinstance(answer.get("name"), str):
            self.name = answer["name"]
        for index, (plugin_id, spec) in enumerate(plugins.items()):
            await self._load(index, str(plugin_id), spec, isolate=len(plugins) > 1)
        await self.request("ready", {})

    async def _load(self, index: int, plugin_id: str, spec: Any, *, isolate: bool) -> None:
        try:
            if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
                raise PluginLoadError("edge gave no plugin directory")
            entry = spec.get("entry", "main")
            config = spec.get("config") or {}
            if not isinstance(entry, str) or not isinstance(config, dict):
                raise PluginLoadError("edge gave a bad entry or config")
            plugin = import_plugin(plugin_id, Path(spec["path"]), entry, index, isolate=isolate)
        except PluginLoadError as exc:
            self.say(f"plugin {plugin_id} failed to load: {exc}")
            await self._send(event("failed", {"message": str(exc)}, plugin=plugin_id))
            return
        tools = [tool.describe() for tool in plugin.tools.values()]
        registration = {"tools": tools, "hooks": sorted(plugin.hooks)}
        try:
            await self.request("register", registration, plugin_id)
        except HostError as exc:
            self.say(f"edge refused to register plugin {plugin_id}: {exc}")
            return
        self.plugins[plugin_id] = _Loaded(plugin_id, plugin, config)

    # -- requests and events from edge -------------------------------------------------------

    async def _unknown(self, envelope: Envelope) -> None:
        error = RpcError("unknown_method", f"the runner has no method {envelope.method!r}")
        await self._respond(envelope, error=error)

    async def _ping(self, envelope: Envelope) -> None:
        await self._respond(envelope)

    async def _prepare(self, envelope: Envelope) -> None:
        self._preparing = True
        await self._respond(envelope)

    async def _shutdown(self, envelope: Envelope) -> None:
        self._preparing = True
        with trio.move_on_after(SHUTDOWN_GRACE + FLUSH_WITHIN):
            await self._respond(envelope)
            with trio.move_on_after(SHUTDOWN_GRACE):
                for call in list(self._calls.values()):
                    await call.done.wait()
            # Closing the queue lets the writer send what is in it, then stop.
            await self._out_send.aclose()
            with trio.move_on_after(FLUSH_WITHIN):
                await self._writer_done.wait()
        self._exit(EXIT_OK)

    def _cancel(self, envelope: Envelope) -> None:
        target = envelope.payload.get("id") if isinstance(envelope.payload, dict) else None
        call = self._calls.get(target) if isinstance(target, int) else None
        if call is not None:
            call.cancel_requested = True
            call.scope.cancel()
            if call.ctx is not None:
                call.ctx.cancel()

    def _plugin(self, envelope: Envelope) -> _Loaded | None:
        return self.plugins.get(envelope.plugin) if envelope.plugin is not None else None

    async def _call(self, envelope: Envelope) -> None:
        call = self._calls[envelope.id]
        try:
            payload, error = await self._run_call(envelope, call)
            await self._respond(envelope, payload, error)
        finally:
            self._calls.pop(envelope.id, None)
            call.done.set()

    async def _run_call(self, envelope: Envelope, call: _Call) -> tuple[Any, RpcError | None]:
        if self._preparing:
            return None, RpcError("busy", "the runner is stopping and takes no new calls")
        payload = envelope.payload
        if not isinstance(payload, dict) or not isinstance(payload.get("tool"), str):
            return None, RpcError("bad_request", "a call needs {tool, args, call_id}")
        args = payload.get("args") or {}
        if not isinstance(args, dict):
            return None, RpcError("bad_request", "a call's args must be a map")
        loaded = self._plugin(envelope)
        tool = loaded.plugin.tools.get(payload["tool"]) if loaded is not None else None
        if loaded is None or tool is None:
            message = f"plugin {envelope.plugin!r} has no tool {payload['tool']!r} here"
            return None, RpcError("unknown_tool", message)
        ctx = call.ctx = Context(
            plugin_id=loaded.id, call_id=payload.get("call_id"), request_id=envelope.id,
            config=lambda: loaded.config, link=self,
        )  # fmt: skip
        if call.scope.cancel_called:  # a cancel came before the call started
            return None, RpcError("cancelled", "the call was cancelled")
        try:
            kwargs = tool.arguments(args, ctx)
        except ArgumentError as exc:
            return None, RpcError("bad_request", str(exc))
        if envelope.deadline is not None:
            left = envelope.deadline - time.monotonic()  # the deadline is on CLOCK_MONOTONIC
            if left <= 0:
                return None, RpcError("timeout", "the call's deadline passed before it started")
            call.scope.deadline = trio.current_time() + left
        elif tool.timeout is not None:
            call.scope.deadline = trio.current_time() + tool.timeout
        try:
            with call.scope:
                if tool.is_async:
                    value = await tool.func(**kwargs)
                else:
                    value = await trio.to_thread.run_sync(
                        functools.partial(tool.func, **kwargs),
                        abandon_on_cancel=True, limiter=self._limiter,
                    )  # fmt: skip
            if not call.scope.cancelled_caught:
                return as_result(value), None
        except (Exception, SystemExit) as exc:
            self.say(f"tool {loaded.id}.{tool.name} raised:\n{_trace(exc)}")
            return None, RpcError("tool_error", _describe(exc))
        except BaseException:
            ctx.cancel()  # the runner is stopping: a sync tool's thread should see it
            raise
        ctx.cancel()
        if call.cancel_requested:
            return None, RpcError("cancelled", "the call was cancelled")
        return None, RpcError("timeout", "the call ran past its deadline")

    async def _config(self, envelope: Envelope) -> None:
        loaded = self._plugin(envelope)
        config = envelope.payload.get("config") if isinstance(envelope.payload, dict) else None
        if loaded is None or not isinstance(config, dict):
            what = "no such plugin here" if loaded is None else "config must be a map"
            await self._respond(envelope, error=RpcError("bad_request", f"config: {what}"))
            return
        loaded.config = config
        handlers = loaded.plugin.config_handlers
        failures = await self._handlers_run(loaded, handlers, config, "on_config")
        error = RpcError("tool_error", "; ".join(failures)) if failures else None
        await self._respond(envelope, None, error)

    async def _hook(self, envelope: Envelope) -> None:
        loaded = self._plugin(envelope)
        data = envelope.payload.get("event") if isinstance(envelope.payload, dict) else None
        if loaded is None or not isinstance(data, dict) or not isinstance(data.get("type"), str):
            self.say("ignored a hook event without a plugin here or an event type")
            return
        handlers = loaded.plugin.hooks.get(data["type"], [])
        await self._handlers_run(loaded, handlers, data, f"hook {data['type']}")

    async def _handlers_run(
        self, loaded: _Loaded, handlers: list[Callable[[dict[str, Any]], Any]],
        argument: dict[str, Any], what: str,
    ) -> list[str]:  # fmt: skip
        """Call each handler with ``argument``; what failed, as messages (also on stderr)."""
        failures = []
        for handler in handlers:
            name = getattr(handler, "__name__", repr(handler))
            try:
                if inspect.iscoroutinefunction(handler):
                    await handler(argument)
                else:
                    await trio.to_thread.run_sync(
                        handler, argument, abandon_on_cancel=True, limiter=self._limiter
                    )
            except (Exception, SystemExit) as exc:
                self.say(f"plugin {loaded.id}: {what} handler {name} raised:\n{_trace(exc)}")
                failures.append(f"{what} handler {name} raised {_describe(exc)}")
        return failures


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _trace(exc: BaseException) -> str:
    """The last ``TRACE_FRAMES`` frames of ``exc``'s traceback, for stderr."""
    return "".join(traceback.format_exception(exc, limit=-TRACE_FRAMES)).rstrip()


# -- importing a plugin --------------------------------------------------------------------------


def import_plugin(
    plugin_id: str, directory: Path, entry: str, index: int = 0, *, isolate: bool = False
) -> Plugin:
    """Import a plugin's entry module and return its ``Plugin`` (see the module docstring).

    Args:
        plugin_id: the plugin's id (part of its package name).
        directory: the plugin's directory.
        entry: the entry module's name inside it (``main``, ``pkg.tools``).
        index: makes the package name unique within this process.
        isolate: take the modules it imported from ``directory`` by absolute name out of
            ``sys.modules`` afterwards (for a runner that holds several plugins).

    Raises:
        PluginLoadError: no such directory or module, the import raised, or the module
            holds no ``Plugin`` (or several and none called ``plugin``).
    """
    if not ENTRY.match(entry):
        raise PluginLoadError(f"entry {entry!r} is not a module name (like main or pkg.tools)")
    if not directory.is_dir():
        raise PluginLoadError(f"the plugin directory {directory} does not exist")
    package = f"_edge_plugin_{index}_{re.sub(r'[^A-Za-z0-9_]', '_', plugin_id)}"
    spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
    spec.submodule_search_locations = [str(directory)]
    sys.modules[package] = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(directory))
    before = set(sys.modules)
    try:
        module = importlib.import_module(f"{package}.{entry}")
    except (Exception, SystemExit) as exc:
        raise PluginLoadError(_import_failure(exc, directory, package, entry)) from None
    finally:
        if isolate:
            _forget_own_modules(before, package, directory)
    found = getattr(module, "plugin", None)
    if isinstance(found, Plugin):
        return found
    plugins = {id(v): v for v in vars(module).values() if isinstance(v, Plugin)}
    if len(plugins) == 1:
        return next(iter(plugins.values()))
    if not plugins:
        raise PluginLoadError(f"{entry} holds no edge.plugin.Plugin (add: plugin = Plugin())")
    raise PluginLoadError(
        f"{entry} holds {len(plugins)} Plugin objects: name the one to use `plugin`"
    )


def _import_failure(exc: BaseException, directory: Path, package: str, entry: str) -> str:
    """One line: what the import raised and where in the plugin's own files."""
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({_relative(exc.filename, directory)}, line {exc.lineno})"
        return f"cannot import {entry}: SyntaxError: {exc.msg}{where}"
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith(f"{package}."):
        return f"cannot import {entry}: there is no module {entry} in {directory}"
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).is_relative_to(directory):
            where = f" ({_relative(frame.filename, directory)}, line {frame.lineno})"
    return f"cannot import {entry}: {_describe(exc)}{where}"


def _relative(filename: str, directory: Path) -> str:
    path = Path(filename)
    return path.relative_to(directory).as_posix() if path.is_relative_to(directory) else filename


def _forget_own_modules(before: set[str], package: str, directory: Path) -> None:
    """Drop modules imported from ``directory`` by absolute name since ``before``."""
    for name in set(sys.modules) - before:
        if name == package or name.startswith(f"{package}."):
            continue
        filename = getattr(sys.modules[name], "__file__", None)
        if filename and Path(filename).is_relative_to(directory):
            del sys.modules[name]


# -- the process -----------------------------------------------------------------------------


def main() -> int:
    """The runner process: read (and remove) the environment, connect, serve; the exit status."""
    sys.stdout = sys.stderr
    try:
        os.dup2(2, 1)  # children and C code writing to fd 1 reach the log too
    except OSError:
        pass
    blank_initial_environ(b"EDGE_RUNNER_TOKEN")
    token = os.environ.pop("EDGE_RUNNER_TOKEN", None)
    path = os.environ.pop("EDGE_RUNNER_SOCKET", None)
    name = os.environ.get("EDGE_RUNNER_NAME") or "edge plugin runner"
    spare = os.environ.pop("EDGE_RUNNER_SPARE", "") == "1"
    if not token or not path:
        sys.stderr.write(f"{name}: EDGE_RUNNER_SOCKET and EDGE_RUNNER_TOKEN must be set\n")
        return EXIT_BROKEN
    return trio.run(_serve, path, token, name, spare)


def warm_up() -> None:
    """Pay the SDK's first-use costs now: a spare does, before it says hello.

    pydantic builds its first schema and validator slowly (it imports and
    compiles what it needs on first use), a fifth of a second here; a spare
    that has done it once registers a restarted plugin's tools at once.
    """

    def sample(a: int, b: float = 1.0, c: str = "", d: bool = False,
               e: list[str] | None = None, f: dict[str, int] | None = None) -> dict[str, Any]:
        return {}  # fmt: skip

    plugin = Plugin()
    plugin.tool(sample)
    for tool in plugin.tools.values():
        tool.describe()
        tool.check({"a": 1, "e": ["x"], "f": {"k": 2}})


async def _serve(path: str, token: str, name: str, spare: bool = False) -> int:
    if spare:
        warm_up()
    try:
        stream = await trio.open_unix_socket(path)
    except OSError as exc:
        sys.stderr.write(f"{name}: cannot connect to edge at {path}: {exc.strerror or exc}\n")
        return EXIT_BROKEN
    async with stream:
        return await Runner(Channel(stream), token, name, spare=spare).run()


if __name__ == "__main__":
    status = main()
    sys.stderr.flush()
    # Threads a plugin started (or a sync tool still running after a cancel) must not hold
    # the process up: edge has said goodbye, or is gone.
    os._exit(status)
