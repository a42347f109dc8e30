"""The plugin nursery: a supervised runner per plugin (or one for all), their tools in the registry.

::

    plugin nursery (serve_plugins)
    ├── runner "weather"   Supervisor.run(run_runner) in its own cancel scope: reload stops just it
    ├── runner "notes"     ...
    └── config watch       each plugin's config.toml, looked at every CONFIG_POLL seconds

A runner's tools are registered as ``<plugin>__<tool>`` with source
``plugin:<id>`` once it is ready, and leave the registry the moment it ends,
so they go through the same executor as every other tool (local policy, cloud
approval, schema, timeout) and the capability report follows. A plugin whose
manifest does not load is listed as ``invalid`` with the reason and never
started. Status changes go to ``on_event`` as ``plugin_status`` events.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from ..errors import ConfigError, PluginCallError
from ..plugins.host import (
    HostTiming,
    Runner,
    RunnerSpec,
    SparePool,
    run_runner,
    sweep_runtime_dirs,
)
from ..plugins.manifest import (
    USER_CONFIG,
    Found,
    PluginManifest,
    discover,
    load_plugin,
    user_config,
    write_user_config,
)
from ..supervise import RestartPolicy, State, Supervisor
from ..tools.contain import Containment
from ..tools.registry import CallContext, ToolRegistry, ToolResult, ToolSpec

log = logging.getLogger(__name__)

#: Seconds between looks at the plugins' config files.
CONFIG_POLL: Final = 2.0
#: Seconds a reload or a stopping daemon gives a runner's polite shutdown.
STOP_BUDGET: Final = 1.0
#: The runner name of the one runner ``shared_runner`` starts.
SHARED: Final = "shared"
#: How runtime directories are named: the prefix, then the daemon's pid.
RUNTIME_PREFIX: Final = "edge-plugins-"
#: The longest runtime base directory used: a Unix socket's path holds at most 107 bytes.
MAX_BASE: Final = 60
#: The separator between a plugin's id and its tool's name in the registry.
SEPARATOR: Final = "__"

CallTool = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]
Status = str  # "invalid" | "failed" | a supervisor status


@dataclass
class Plugin:
    """One plugin directory and what the nursery knows of it."""

    found: Found
    runner: str = ""
    status: Status = "stopped"
    last_error: str | None = None
    tools: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    config_stamp: tuple[int, int] | None = None
    #: The id it is known by (kept across reloads; ``found.id`` otherwise).
    key: str = ""

    @property
    def id(self) -> str:
        return self.key or self.found.id

    @property
    def manifest(self) -> PluginManifest | None:
        return self.found.manifest


@dataclass(eq=False)
class _Slot:
    """One supervised runner."""

    name: str
    plugins: list[str]
    supervisor: Supervisor
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    runner: Runner | None = None
    starts: int = 0


class PluginRunners:
    """Handle on the plugin nursery; made by ``serve_plugins``."""

    def __init__(
        self,
        nursery: trio.Nursery,
        registry: ToolRegistry,
        *,
        call_tool: CallTool,
        on_event: Callable[[dict[str, Any]], None],
        runtime_dir: Path,
        environ: Mapping[str, str],
        shared: bool,
        timing: HostTiming,
        policy: RestartPolicy | None,
        argv: tuple[str, ...] | None,
        spares: SparePool | None = None,
        processes: Containment | None = None,
    ) -> None:
        self._nursery = nursery
        self._registry = registry
        self._call_tool = call_tool
        self._on_event = on_event
        self.runtime_dir = runtime_dir
        self._environ = environ
        self._shared = shared
        self._timing = timing
        self._policy = policy
        self._argv = argv
        #: What holds each runner's processes (``None``: its process group only).
        self.processes = processes
        #: A runner started ahead, for restarts (``None``: every restart starts Python).
        self.spares = spares
        self.plugins: dict[str, Plugin] = {}
        #: Where plugins are looked for (a reload of an unknown id looks again).
        self.dirs: tuple[Path, ...] = ()
        self._slots: dict[str, _Slot] = {}
        self.settled = trio.Event()  # set once no runner is starting any more (for the CLI)
        self._reloads: dict[str, trio.Lock] = {}

    # -- what is there -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.plugins)

    def get(self, plugin_id: str) -> Plugin | None:
        return self.plugins.get(plugin_id)

    def info(self) -> list[dict[str, Any]]:
        """Per plugin: status, runner PID, tools, restarts, last error, manifest basics."""
        out = []
        for plugin in self.plugins.values():
            slot = self._slots.get(plugin.runner)
            manifest = plugin.manifest
            out.append(
                {
                    "id": plugin.id,
                    "status": plugin.status,
                    "version": manifest.version if manifest else None,
                    "description": manifest.description if manifest else "",
                    "directory": os.fspath(plugin.found.directory),
                    "runner": plugin.runner or None,
                    "pid": slot.runner.pid if slot and slot.runner else None,
                    "tools": list(plugin.tools),
                    "restarts": max(0, slot.starts - 1) if slot else 0,
                    "lastError": plugin.last_error,
                    "capabilities": sorted(manifest.capabilities) if manifest else [],
                }
            )
        return out

    def report(self) -> list[dict[str, Any]]:
        """What the capability report says of each plugin."""
        return [
            {
                "name": p["id"],
                "status": p["status"],
                "tools": len(p["tools"]),
                "lastError": p["lastError"],
            }
            for p in self.info()
        ]

    # -- starting and stopping -------------------------------------------------------

    def load(self, found: Iterable[Found]) -> None:
        """Take ``found`` plugins in and start their runners (in the background)."""
        valid = []
        for item in found:
            plugin = Plugin(item)
            self.plugins[plugin.id] = plugin
            if item.manifest is None:
                plugin.status, plugin.last_error = "invalid", item.problem
                log.error("plugin %s not loaded: %s", plugin.id, item.problem)
                self._publish(plugin)
                continue
            if not self._read_config(plugin):
                continue
            valid.append(plugin)
        if self._shared and valid:
            self._start_slot(SHARED, [p.id for p in valid])
        else:
            for plugin in valid:
                self._start_slot(plugin.id, [plugin.id])
        self._check_settled()

    def _read_config(self, plugin: Plugin) -> bool:
        """Read the plugin's config (defaults + the user's file); an unreadable one: invalid."""
        assert plugin.manifest is not None
        plugin.config_stamp = _stamp(plugin.manifest.directory / USER_CONFIG)
        try:
            plugin.config = user_config(plugin.manifest)
        except ConfigError as exc:
            plugin.status, plugin.last_error = "invalid", str(exc)
            log.error("plugin %s not started: %s", plugin.id, exc)
            self._publish(plugin)
            return False
        return True

    def _start_slot(self, name: str, plugin_ids: list[str]) -> None:
        slot = _Slot(
            name,
            plugin_ids,
            Supervisor(
                f"plugin {name}" if len(plugin_ids) == 1 else f"plugin runner {name}",
                self._policy,
                logger=log,
                on_change=lambda state: self._slot_changed(slot, state),
            ),
        )
        self._slots[name] = slot
        for plugin_id in plugin_ids:
            self.plugins[plugin_id].runner = name
            self.plugins[plugin_id].status = "starting"
        self._nursery.start_soon(self._run_slot, slot)

    async def _run_slot(self, slot: _Slot) -> None:
        with slot.scope:
            try:
                await slot.supervisor.run(partial(self._lifetime, slot))
            finally:
                if self._slots.get(slot.name) is slot:
                    del self._slots[slot.name]
                slot.done.set()

    async def _lifetime(self, slot: _Slot, *, task_status: trio.TaskStatus[None]) -> None:
        manifests = tuple(
            p.manifest for p in (self.plugins[i] for i in slot.plugins) if p.manifest is not None
        )
        spec = RunnerSpec(
            slot.name,
            manifests,
            {m.id: self.plugins[m.id].config for m in manifests},
            **({"argv": self._argv} if self._argv else {}),
        )
        slot.starts += 1
        await run_runner(
            spec,
            _Services(self),
            self.runtime_dir,
            environ=self._environ,
            on_ready=partial(self._ready, slot),
            on_gone=partial(self._gone, slot),
            timing=self._timing,
            spares=self.spares,
            processes=self.processes,
            task_status=task_status,
        )

    async def stop_runner(self, name: str, budget: float = STOP_BUDGET) -> None:
        """The shutdown ladder for one runner: polite within ``budget``, then cancelled."""
        slot = self._slots.get(name)
        if slot is None:
            return
        if slot.runner is not None:
            with trio.move_on_after(budget):
                try:
                    await slot.runner.stop(budget)
                except PluginCallError:
                    pass
        slot.scope.cancel()
        await slot.done.wait()

    async def stop_all(self, budget: float = STOP_BUDGET) -> None:
        """Every runner's ladder at once, within ``budget`` seconds for the polite part."""
        async with trio.open_nursery() as nursery:
            for name in list(self._slots):
                nursery.start_soon(self.stop_runner, name, budget)

    async def reload(self, plugin_id: str) -> dict[str, Any]:
        """Stop ``plugin_id``'s runner, read its manifest and config again, start it again.

        A plugin directory added since edge started is found and started.

        Raises:
            KeyError: no such plugin.
        """
        if plugin_id not in self.plugins:
            new = [f for f in discover(self.dirs) if f.id == plugin_id]
            if not new:
                raise KeyError(plugin_id)
            self.load(new[:1])
            log.info("plugin %s: found and started", plugin_id)
            return next(p for p in self.info() if p["id"] == plugin_id)
        plugin = self.plugins[plugin_id]
        key = plugin.runner or plugin_id
        lock = self._reloads.setdefault(key, trio.Lock())
        async with lock:  # two reloads at once: one after the other, never two runners
            runner_name = self.plugins[plugin_id].runner
            if runner_name:
                await self.stop_runner(runner_name)
            ids = self._slot_ids(runner_name, plugin_id)
            for pid in ids:
                self.plugins[pid] = self._reread(self.plugins[pid], runner_name)
            startable = [i for i in ids if self.plugins[i].status != "invalid"]
            if startable and (runner_name or plugin_id) not in self._slots:
                self._start_slot(runner_name or plugin_id, startable)
        log.info("plugin %s: reloaded", plugin_id)
        return next(p for p in self.info() if p["id"] == plugin_id)

    def _reread(self, current: Plugin, runner_name: str) -> Plugin:
        """``current``'s manifest and config read again (invalid, with the reason, if not)."""
        directory = current.found.directory
        try:
            fresh = Found(directory, load_plugin(directory))
        except ConfigError as exc:
            fresh = Found(directory, None, str(exc))
        if fresh.manifest is not None and fresh.manifest.id != current.id:
            problem = (
                f"{directory / 'plugin.toml'} now says id {fresh.manifest.id!r}, not "
                f"{current.id!r}: restart edge to rename a plugin"
            )
            fresh = Found(directory, None, problem)
        reloaded = Plugin(fresh, runner=runner_name, key=current.id)
        if fresh.manifest is None:
            reloaded.status, reloaded.last_error = "invalid", fresh.problem
            self._publish(reloaded)
        else:
            self._read_config(reloaded)
        return reloaded

    def _slot_ids(self, runner_name: str, plugin_id: str) -> list[str]:
        if not runner_name:
            return [plugin_id]
        return [p.id for p in self.plugins.values() if p.runner == runner_name] or [plugin_id]

    # -- reports from the runners ----------------------------------------------------

    def _ready(self, slot: _Slot, runner: Runner) -> None:
        slot.runner = runner
        for plugin_id in slot.plugins:
            plugin = self.plugins[plugin_id]
            if plugin_id in runner.failed:
                plugin.status, plugin.last_error = "failed", runner.failed[plugin_id]
                log.error("plugin %s did not load: %s", plugin_id, plugin.last_error)
            else:
                plugin.status, plugin.last_error = "running", None
                self._register(plugin, runner)
                if runner.spec.configs.get(plugin_id) != plugin.config:  # changed while starting
                    self._nursery.start_soon(self._push_quietly, plugin)
                log.info(
                    "plugin %s is running (pid %d, tools: %s)",
                    plugin_id, runner.pid, ", ".join(plugin.tools) or "none",
                )  # fmt: skip
            self._publish(plugin)
        self._check_settled()

    def _gone(self, slot: _Slot, runner: Runner) -> None:
        if slot.runner is runner:
            slot.runner = None
        for plugin_id in slot.plugins:
            plugin = self.plugins[plugin_id]
            self._unregister(plugin)
            if plugin.runner == slot.name and plugin.status in ("running", "failed"):
                plugin.status = "stopped"  # until the supervisor says what comes next
                plugin.last_error = runner.ended
                self._publish(plugin)

    def _slot_changed(self, slot: _Slot, state: State) -> None:
        for plugin_id in slot.plugins:
            plugin = self.plugins.get(plugin_id)
            if plugin is None or plugin.runner != slot.name:
                continue
            if state.status == "running":
                continue  # _ready sets running or failed per plugin
            plugin.status = state.status
            if state.reason is not None:
                plugin.last_error = state.reason
            self._publish(plugin)
        self._check_settled()

    def _check_settled(self) -> None:
        if all(p.status != "starting" for p in self.plugins.values()):
            self.settled.set()

    def _publish(self, plugin: Plugin) -> None:
        slot = self._slots.get(plugin.runner)
        self._on_event(
            {
                "type": "plugin_status",
                "plugin": plugin.id,
                "status": plugin.status,
                "pid": slot.runner.pid if slot and slot.runner else None,
                "restarts": max(0, slot.starts - 1) if slot else 0,
                "tools": list(plugin.tools),
                "lastError": plugin.last_error,
            }
        )

    # -- tools -----------------------------------------------------------------------

    def _register(self, plugin: Plugin, runner: Runner) -> None:
        with self._registry.batch():  # one capability report for all of them
            self._register_all(plugin, runner)

    def _register_all(self, plugin: Plugin, runner: Runner) -> None:
        self._unregister(plugin)
        for tool in runner.tools.get(plugin.id, []):
            public = f"{plugin.id}{SEPARATOR}{tool.name}"
            existing = self._registry.get(public)
            if existing is not None and existing.source != f"plugin:{plugin.id}":
                log.warning(
                    "plugin %s: tool %s skipped: the name is taken by %s",
                    plugin.id, public, existing.source,
                )  # fmt: skip
                continue
            spec = ToolSpec(
                name=public,
                description=f"[{plugin.id}] {tool.description}",
                input_schema=tool.input_schema,
                run=partial(self._run_tool, plugin.id, tool.name),
                source=f"plugin:{plugin.id}",
                timeout=tool.timeout,
            )
            try:
                self._registry.add(spec)
            except Exception as exc:  # jsonschema.SchemaError: one bad tool, not the others
                log.warning(
                    "plugin %s: tool %s skipped: bad input schema: %s", plugin.id, tool.name, exc
                )
                continue
            plugin.tools.append(public)

    def _unregister(self, plugin: Plugin) -> None:
        with self._registry.batch():
            for public in plugin.tools:
                self._registry.remove(public)
        plugin.tools = []

    async def _run_tool(
        self, plugin_id: str, tool: str, args: dict[str, Any], ctx: CallContext
    ) -> ToolResult:
        plugin = self.plugins.get(plugin_id)
        slot = self._slots.get(plugin.runner) if plugin is not None else None
        runner = slot.runner if slot is not None else None
        if plugin is None or runner is None or plugin.status != "running":
            status = plugin.status if plugin is not None else "gone"
            why = f": {plugin.last_error}" if plugin is not None and plugin.last_error else ""
            raise PluginCallError(f"plugin {plugin_id} is {status}{why}")
        return await runner.call(plugin_id, tool, args, call_id=ctx.call_id, progress=ctx.progress)

    # -- config and hooks -----------------------------------------------------------

    async def set_config(self, plugin_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``values`` into the plugin's ``config.toml`` and push the result to it.

        Raises:
            KeyError: no such plugin.
            ConfigError: the plugin is invalid, a key is not one of its config
                keys, or a value cannot be written.
        """
        plugin = self.plugins[plugin_id]
        if plugin.manifest is None:
            raise ConfigError(f"plugin {plugin_id} is invalid: {plugin.last_error}")
        write_user_config(plugin.manifest, values)
        await self.refresh_config(plugin)
        return dict(plugin.config)

    async def refresh_config(self, plugin: Plugin) -> None:
        """Read the plugin's config file again and push it when it changed."""
        assert plugin.manifest is not None
        plugin.config_stamp = _stamp(plugin.manifest.directory / USER_CONFIG)
        try:
            config = user_config(plugin.manifest)
        except ConfigError as exc:
            log.error("plugin %s: config not changed: %s", plugin.id, exc)
            raise
        if config == plugin.config:
            return
        plugin.config = config
        await self._push_config(plugin)

    async def _push_quietly(self, plugin: Plugin) -> None:
        try:
            await self._push_config(plugin)
        except PluginCallError as exc:
            log.warning("plugin %s: the new config was not taken: %s", plugin.id, exc)

    async def _push_config(self, plugin: Plugin) -> None:
        """Hand the plugin its current config (if it runs; a starting one gets it when ready).

        Raises:
            PluginCallError: the plugin did not take it (its handler raised, it is ending).
        """
        slot = self._slots.get(plugin.runner)
        if slot is not None and slot.runner is not None and plugin.status == "running":
            with trio.move_on_after(5):
                await slot.runner.request("config", {"config": plugin.config}, plugin=plugin.id)
            log.info("plugin %s: config changed", plugin.id)

    async def watch_config(self) -> None:
        """Look at each plugin's config file every ``CONFIG_POLL`` seconds; push what changed."""
        while True:
            await trio.sleep(CONFIG_POLL)
            for plugin in list(self.plugins.values()):
                if plugin.manifest is None:
                    continue
                if _stamp(plugin.manifest.directory / USER_CONFIG) != plugin.config_stamp:
                    try:
                        await self.refresh_config(plugin)
                    except (ConfigError, PluginCallError):
                        pass  # logged; the plugin keeps its config
                    except Exception:  # whatever a file holds, the daemon keeps serving
                        log.exception("plugin %s: config not changed", plugin.id)

    def hook(self, event: Mapping[str, Any]) -> None:
        """Hand ``event`` to every running plugin with a hook for its type."""
        kind = event.get("type")
        if kind == "plugin_status":
            return
        for slot in self._slots.values():
            runner = slot.runner
            if runner is None:
                continue
            for plugin_id, hooks in runner.hooks.items():
                if kind in hooks:
                    runner.hook(plugin_id, dict(event))


class _Services:
    """What runners may ask the daemon for, served by the nursery."""

    def __init__(self, runners: PluginRunners) -> None:
        self._runners = runners

    def log(self, plugin: str, level: str, message: str) -> None:
        number = logging.getLevelName(level.upper())
        logging.getLogger("edge.plugins.log").log(
            number if isinstance(number, int) else logging.INFO, "plugin %s: %s", plugin, message
        )

    def config(self, plugin: str) -> Mapping[str, Any]:
        entry = self._runners.plugins.get(plugin)
        return entry.config if entry is not None else {}

    async def call_tool(self, plugin: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        return await self._runners._call_tool(plugin, tool, args)

    def publish(self, plugin: str, type: str, data: Any) -> None:
        self._runners._on_event(
            {"type": "plugin_event", "plugin": plugin, "event": type, "data": data}
        )


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def make_runtime_dir() -> Path:
    """A new 0700 directory for the runners' sockets (in ``$XDG_RUNTIME_DIR`` when usable),
    after removing the ones edge processes that are gone left behind."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    if not os.path.isdir(base) or not os.access(base, os.W_OK) or len(base) > MAX_BASE:
        base = tempfile.gettempdir()
    sweep_runtime_dirs(Path(base), RUNTIME_PREFIX)
    return Path(tempfile.mkdtemp(prefix=f"{RUNTIME_PREFIX}{os.getpid()}-", dir=base))


async def serve_plugins(
    registry: ToolRegistry,
    dirs: Iterable[Path],
    *,
    call_tool: CallTool,
    on_event: Callable[[dict[str, Any]], None] = lambda event: None,
    environ: Mapping[str, str] | None = None,
    shared: bool = False,
    timing: HostTiming | None = None,
    policy: RestartPolicy | None = None,
    argv: tuple[str, ...] | None = None,
    spare: bool = True,
    only: Collection[str] | None = None,
    processes: Containment | None = None,
    task_status: trio.TaskStatus[PluginRunners] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the plugin nursery until cancelled; ``nursery.start`` gives the handle.

    Runners start in the background: a slow or broken plugin delays nothing
    else. With ``spare`` (and a plugin to run), one runner process is kept
    started ahead (``edge.plugins.host.SparePool``) so that a crashed runner is
    back in a fraction of Python's start-up time. ``only``: just the plugins
    with these ids (``edge tools call``). The runtime directory (0700, the
    runners' sockets) is removed on the way out; ones left by a killed edge are
    removed on the way in. ``processes`` holds each runner's processes as it
    holds a ``terminal`` call's (``None``: the runner's process group only).
    """
    runtime_dir = make_runtime_dir()
    try:
        async with trio.open_nursery() as nursery:
            environ_copy = dict(os.environ if environ is None else environ)
            runners = PluginRunners(
                nursery,
                registry,
                call_tool=call_tool,
                on_event=on_event,
                runtime_dir=runtime_dir,
                environ=environ_copy,
                shared=shared,
                timing=timing or HostTiming(),
                policy=policy,
                argv=argv,
                processes=processes,
            )
            runners.dirs = tuple(dirs)
            found = [f for f in discover(runners.dirs) if only is None or f.id in only]
            if found:
                log.info("plugins: %s", ", ".join(f.id for f in found))
            if spare and any(f.manifest is not None for f in found):
                runners.spares = SparePool(
                    runtime_dir, environ_copy, timing or HostTiming(), processes
                )
                nursery.start_soon(runners.spares.keep)
            runners.load(found)
            nursery.start_soon(runners.watch_config)
            task_status.started(runners)
            await trio.sleep_forever()
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
