"""The daemon: the root nursery. It builds the children, starts them and routes their reports.

::

    root nursery
    ├── tool-call workers   (edge.nurseries.workers)
    ├── captures            (edge.nurseries.captures: {chat_id: capture}, each its own nursery)
    ├── MCP servers         (edge.nurseries.mcp: one supervised session task per server)
    ├── plugin runners      (edge.nurseries.plugins: one supervised runner process per plugin)
    ├── scheduler           (edge.scheduler: tool runs on a timetable, kept in the store)
    ├── tunnel              (edge.nurseries.tunnel)
    ├── updates             (edge.nurseries.updates: the daily check, the install on request)
    └── control API         (edge.control; /ask drives edge.gateway under the tunnel's token)

State belongs here: the tool registry, the cloud's approval (``ToolGate``), the
cloud's ASR endpoint, the event hub, the record of tool calls (``CallLog``).
Children never import the daemon: they report through the hooks and callbacks
it hands them (tunnel frames and status, worker replies, capture and MCP
events), and the control API drives them through one small protocol per route
area (``edge.control.ControlTargets``).
Plugin runners register their tools in the same registry as MCP servers do;
events the daemon publishes also reach the plugins that hooked them.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import os
import platform
import secrets
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import trio

from . import __version__, exitcodes
from .agents.relay import agent_ask_tool, serve_agents
from .build import build_info
from .config import TOKEN_ENV, Config
from .control.key import LocalKey
from .errors import ConfigError
from .events import EventHub
from .nurseries.journal import Journal
from .nurseries.tunnel import Tunnel, TunnelHooks, TunnelOptions, TunnelStatus, serve_tunnel
from .nurseries.workers import ProgressReport, ToolWorkers, serve_workers
from .protocol import (
    MAX_OUTPUT_CHARS,
    ApprovedTools,
    Cancel,
    Connected,
    Frame,
    Request,
    Response,
    ToolCall,
    capability_report as build_capability_report,
    error_result,
    schedule as schedule_frames,
)
from .secret import Secret
from .store import Store, hold_run_lock, open_store_in
from .supervise import Supervisor
from .tools.audit import CallLog, CallRecord
from .tools.builtin import BUILTIN_TOOLS
from .tools.contain import Containment
from .tools.execute import Executor
from .tools.gate import ToolGate, mcp_problems, plugin_problems
from .tools.policy import Policy
from .tools.registry import ToolRegistry

if TYPE_CHECKING:
    # What edge starts beside the tunnel is imported where it is started, after the
    # first handshake is under way (``Daemon._start_children``): not on the path to it.
    from .agents.relay import Agents
    from .agents.tasks import AgentTask, AgentTasks, Report
    from .capture.capture import CaptureEvent
    from .capture.uplink import AsrTarget, UplinkOptions
    from .control import ControlTargets
    from .gateway.desk import GatewayClients
    from .mcp import Timing
    from .nurseries.captures import Captures
    from .nurseries.mcp import McpServers
    from .nurseries.plugins import PluginRunners
    from .nurseries.updates import UpdateOptions, Updates
    from .scheduler.records import RunRow, TaskRow
    from .scheduler.scheduler import Scheduler
    from .tools.runtimes.load import DeclaredTool
    from .update.install import Installation

log = logging.getLogger(__name__)

#: Seconds the first handshake may take before the rest of the children start anyway.
FIRST_HANDSHAKE_HEAD_START: Final = 2.0
#: Seconds a stopping daemon gives cancelled calls to report and the outbox to drain.
SHUTDOWN_GRACE: Final = 0.5
#: Seconds a stopping daemon gives captures to finish their files and transcripts.
CAPTURE_GRACE: Final = 6.0
#: Seconds a stopping daemon gives plugin runners to stop politely (then SIGTERM, SIGKILL),
#: at the same time as the results' grace.
PLUGIN_GRACE: Final = 0.3
#: Seconds an update waits for running calls and captures to finish before it stops them.
UPDATE_DRAIN_LIMIT: Final = 900.0
#: What new work is told while an update drains and installs.
UPDATING: Final = "edge is updating and takes no new work until it has restarted; try again shortly"
#: Where an older edge kept undelivered results (imported into the store once, then removed).
OUTBOX_FILE: Final = "outbox.jsonl"


def child_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for tool subprocesses: the daemon's, without its token."""
    env = dict(os.environ if environ is None else environ)
    env.pop(TOKEN_ENV, None)
    return env


def build_registry(
    config: Config | None = None,
    policy: Policy | None = None,
    *,
    declared: list[DeclaredTool] | None = None,
) -> ToolRegistry:
    """The built-in tools and, given ``config`` and ``policy``, the valid declared tools
    of ``config.tool_dirs`` (``edge.tools.runtimes``).

    Every declared tool found, valid or not, is appended to ``declared`` when it
    is given: the daemon reports them, ``edge tools list`` shows them.
    """
    registry = ToolRegistry()
    for spec in BUILTIN_TOOLS:
        registry.add(spec)
    # A directory that does not exist holds no tools: then the runtimes (wasmtime among
    # them) are not even imported.
    if config is None or policy is None or not any(d.is_dir() for d in config.tool_dirs):
        return registry
    from .tools.runtimes.load import build_runtimes, load_declared, tool_spec

    runtimes = build_runtimes()
    found = load_declared(config.tool_dirs, policy, runtimes, reserved=registry.names())
    for tool in found:
        if tool.problem is not None or tool.runtime is None:
            log.warning(
                "declared tool %s (%s) is not offered: %s", tool.name, tool.directory, tool.problem
            )
            continue
        registry.add(tool_spec(tool, runtimes[tool.runtime]))
        log.debug("declared tool %s (%s) from %s", tool.name, tool.runtime, tool.directory)
    if declared is not None:
        declared.extend(found)
    return registry


def build_executor(
    config: Config,
    registry: ToolRegistry | None = None,
    *,
    declared: list[DeclaredTool] | None = None,
    calls: CallLog | None = None,
) -> Executor:
    """The executor for ``config``; without ``registry``, one with the built-in and the
    declared tools (``build_registry``, which appends what it found to ``declared``);
    ``calls`` records every call it runs (``GET /calls``).

    Raises:
        ConfigError: the workspace cannot be created (one ``edge: error:`` line, exit 2).
    """
    try:
        config.workspace.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "it is not a directory" if config.workspace.exists() else exc.strerror or str(exc)
        raise ConfigError(f"cannot create the workspace {config.workspace}: {why}") from None
    policy = Policy.create(config.workspace, config.extra_roots, config.allow_tools)
    return Executor(
        registry=registry or build_registry(config, policy, declared=declared),
        policy=policy,
        env=child_environment(),
        default_timeout=config.call_timeout,
        processes=Containment.create(config.state_dir),
        calls=calls,
    )


def _warn_unknown_allowed(
    allowed: frozenset[str] | None, tools: frozenset[str], prefixes: list[str]
) -> None:
    """Warn about ``allow_tools`` names that match none of ``tools`` (the built-in and
    declared ones) and no tool of an MCP server or plugin named in ``prefixes``, whose
    tools (``PREFIX__TOOL``) come later."""
    for name in sorted(allowed or ()):
        known = any(fnmatch.fnmatchcase(tool, name) for tool in tools)
        later = any(
            name.startswith(f"{prefix}__") or fnmatch.fnmatchcase(f"{prefix}__x", name)
            for prefix in prefixes
        )
        if not known and not later:
            log.warning(
                "policy.allow_tools names %r, which is no built-in or declared tool and no "
                "tool of a configured MCP server or plugin: it allows nothing",
                name,
            )


@dataclass(frozen=True, slots=True)
class _TunnelDesk:
    """The ``/tunnel`` routes: the tunnel, the approval it carries and the calls it brought."""

    tunnel: Tunnel
    gate: ToolGate
    workers: ToolWorkers
    #: The calls edge itself runs (``/ask``, ``/tools/call``): a disconnect leaves them be.
    own_calls: set[str]
    #: Forgets what the last cloud named (its ASR endpoint, gateway, manifest): they must not
    #: get the token of another cloud.
    forget_cloud: Callable[[], None]
    #: The captures, whose state ``info`` shows.
    captures: Captures

    def info(self) -> dict[str, Any]:
        """The tunnel, the approval, and each capture's state: what a drop left running
        (``[capture] on_disconnect``), with its ASR link (``asr.state``, backlog)."""
        captures = [
            {k: c.get(k) for k in ("chatId", "source", "state", "seconds", "file", "asr")}
            for c in self.captures.status()
        ]
        return {**self.tunnel.info(), **self.gate.info(), "captures": captures}

    def activate(self, jwt: str, url: str) -> None:
        log.info("tunnel: new credentials for %s", url)
        self.forget_cloud()
        self.tunnel.activate(Secret(jwt), url)

    def disconnect(self) -> None:
        log.info("tunnel: disconnect requested")
        self.forget_cloud()
        self.tunnel.disconnect()
        self.workers.cancel_all("cancelled: the tunnel was disconnected", keep=self.own_calls)


@dataclass(frozen=True, slots=True)
class _ScheduleDesk:
    """The ``/schedule`` routes: the scheduler, and the local policy a new task is held to."""

    current: Callable[[], Scheduler | None]
    executor: Executor

    @property
    def scheduler(self) -> Scheduler | None:
        return self.current()

    def refusal(self, tool: str) -> str | None:
        if tool not in self.executor.registry:
            return self.executor.registry.unknown(tool)  # with the closest name
        return self.executor.refusal(tool, None)


class Daemon:
    """``edge run``: start with ``await nursery.start(daemon.run)``, stop with ``stop()``."""

    def __init__(
        self,
        config: Config,
        *,
        tunnel_options: TunnelOptions | None = None,
        uplink_options: UplinkOptions | None = None,
        mcp_timing: Timing | None = None,
        update_options: UpdateOptions | None = None,
        installation: Installation | None = None,
    ) -> None:
        self.config = config
        self._update_options = update_options
        self._installation = installation
        #: What ``edge run`` exits with once the daemon has stopped (``exitcodes``).
        self.exit_code = exitcodes.OK
        #: Set once ``run`` has returned (stopped by ``stop``, or by itself after an update).
        self.stopped = trio.Event()
        self._tunnel_options = tunnel_options
        self._uplink_options = uplink_options
        self._mcp_timing = mcp_timing
        #: The declared tools of ``config.tool_dirs``, valid or not (``edge.tools.runtimes``).
        self.declared: list[DeclaredTool] = []
        #: Every tool call: in flight and the last finished (GET /calls, call_* events).
        self.calls = CallLog(
            on_started=self._on_call, on_finished=self._on_call, clock=trio.current_time
        )
        self.executor = build_executor(config, declared=self.declared, calls=self.calls)
        self.registry = self.executor.registry
        self.registry.add(agent_ask_tool(self._agent_tasks))
        self.gate = ToolGate(
            self.executor, declared=self.declared, unavailable=self._unavailable_tools
        )
        self.events = EventHub()
        self.started_at = time.monotonic()
        #: The package version and the git commit edge runs from (``edge.build``).
        self.build = build_info()
        self.control_url: str | None = None
        self.audio_sources: list[dict[str, Any]] = []
        self.cloud_asr_url: str | None = None
        #: The model gateway and the versions manifest the cloud named in ``connected``.
        self.cloud_gateway_url: str | None = None
        self.cloud_versions_url: str | None = None
        #: Ids of /ask's tool calls: not guessable, so a cloud's cancel never meets them.
        self._ask_ids = (f"ask-{secrets.token_hex(6)}-{n}" for n in itertools.count(1))
        #: Ids of the calls edge itself runs on the workers (``_own_call``): not the cloud's to
        #: cancel, by id or by disconnecting.
        self._own_calls: set[str] = set()
        #: The model gateway's HTTP clients (made when the children start: httpx is imported
        #: then, off the path to the first handshake).
        self._gateway_clients: GatewayClients | None = None
        self._tunnel: Tunnel | None = None
        self._workers: ToolWorkers | None = None
        self._captures: Captures | None = None
        self._mcp: McpServers | None = None
        self._plugins: PluginRunners | None = None
        self._updates: Updates | None = None
        #: The scheduler while it runs (``None`` while its supervisor restarts it).
        self._scheduler: Scheduler | None = None
        self._scheduling = Supervisor("scheduler", logger=log)
        self._agents: Agents | None = None
        #: The store this run keeps its state in (``None``: in memory only).
        self._store: Store | None = None
        #: Set when the scheduler has cloud tasks' runs to report (``_report_runs``).
        self._report_wanted = trio.Event()
        #: Whether the cloud's approval has come on the live connection (a cloud task then
        #: runs under it; until then, and while disconnected, under the one it was made with).
        self._approval_live = False
        #: Why new work is refused (an update is draining or installing), else ``None``.
        self._refusing: str | None = None
        self._root: trio.Nursery | None = None
        self._targets: ControlTargets | None = None
        self._state = AsyncExitStack()  # the store, open while running
        #: This run's local key (``edge.control.key``), in the state directory while running.
        self.key = LocalKey()
        #: This run's CSRF token: the dashboard page holds it, its state changes send it.
        self.csrf_token = secrets.token_urlsafe(32)
        #: The extensions' JSON-RPC methods the cloud may call (``Request`` frames), by name;
        #: each child that serves some registers its handlers here when it starts.
        self._methods: dict[str, Callable[[Request], None]] = {}
        #: Who gets the cloud's responses to edge's own requests (``Response`` frames): each
        #: returns whether the response was its own.
        self._responses: list[Callable[[Response], bool]] = []
        self._stop_asked = False  # POST /stop came (``edge stop``)
        self._connected = False  # the tunnel's last status was CONNECTED

    # -- children ----------------------------------------------------------------

    @property
    def tunnel(self) -> Tunnel:
        assert self._tunnel is not None, "the daemon is not running"
        return self._tunnel

    @property
    def workers(self) -> ToolWorkers:
        assert self._workers is not None, "the daemon is not running"
        return self._workers

    @property
    def mcp(self) -> McpServers:
        assert self._mcp is not None, "the daemon is not running"
        return self._mcp

    @property
    def plugins(self) -> PluginRunners:
        assert self._plugins is not None, "the daemon is not running"
        return self._plugins

    @property
    def captures(self) -> Captures:
        assert self._captures is not None, "the daemon is not running"
        return self._captures

    @property
    def agents(self) -> AgentTasks:
        """The agents' tasks (``edge.agents``): what the control API shows and drives."""
        assert self._agents is not None, "the daemon is not running"
        return self._agents.tasks

    @property
    def scheduler(self) -> Scheduler:
        assert self._scheduler is not None, "the daemon is not running"
        return self._scheduler

    @property
    def targets(self) -> ControlTargets:
        """What the control API drives (also when it is not served)."""
        assert self._targets is not None, "the daemon is not running"
        return self._targets

    @property
    def approved(self) -> frozenset[str]:
        """What the cloud approved on the live connection."""
        return self.gate.approved

    def effective_tools(self) -> frozenset[str]:
        return self.gate.effective()

    async def run(self, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the root nursery until ``stop()`` or cancellation."""
        if self.executor.processes is not None:
            await self.executor.processes.sweep_leftovers()  # a killed run's, before any call
        journal = await self._open_journal()
        try:
            async with trio.open_nursery() as root:
                self._root = root
                await self._start_children(root, journal)
                self._announce_start()
                task_status.started(self)
        finally:
            self._root = None
            try:
                with trio.CancelScope(shield=True):
                    if self._gateway_clients is not None:
                        await self._gateway_clients.aclose()
                await self._close_journal(journal)
            finally:
                if self.executor.processes is not None:
                    self.executor.processes.close()
                # Last: ``edge stop`` takes the key file's going as the sign that all is done.
                self.key.remove()
                self.stopped.set()

    async def _open_journal(self) -> Journal:
        """The tunnel's journal in the store of the state directory (in memory without one)."""
        state_dir = self.config.state_dir
        try:
            store = await self._state.enter_async_context(open_store_in(state_dir))
            self._store = store
            if store is not None and state_dir is not None:
                try:  # so that `edge schedule` never edits the store behind this daemon
                    self._state.enter_context(hold_run_lock(state_dir))
                except OSError as exc:
                    log.warning("cannot hold the run lock in %s: %s", state_dir, exc)
            journal = Journal(store)
            await journal.recover(None if state_dir is None else state_dir / OUTBOX_FILE)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._state.aclose()
            raise
        return journal

    async def _close_journal(self, journal: Journal) -> None:
        """Journal the last results (calls cancelled on the way out), then close the store."""
        with trio.CancelScope(shield=True):
            await journal.close()
            await self._state.aclose()

    async def _start_children(self, root: trio.Nursery, journal: Journal) -> None:
        """The workers, the tunnel and the agents first, then the first handshake goes while
        the rest starts (``_start_the_rest``); the report is announced again once it is up."""
        cfg = self.config
        self._workers = await root.start(
            partial(
                serve_workers, self.executor, max_calls=cfg.max_calls, queue_size=cfg.queue_size
            )
        )
        hooks = TunnelHooks(self.capability_report, self._on_frame, self._on_status)
        self._tunnel = await root.start(
            partial(serve_tunnel, hooks, self._tunnel_options, journal=journal)
        )
        self.registry.subscribe(self._tunnel.announce)
        # The agents before the handshake: the first report names this edge's agent id.
        self._agents = await root.start(
            partial(serve_agents, self._tunnel, self._agent_call, refusal=self._agent_refusal,
                    store=self._store, name=cfg.agent_name)
        )  # fmt: skip
        self._methods.update(self._agents.relay.methods())
        self._responses.append(self._agents.relay.on_response)
        for method in ("schedule_add", "schedule_remove", "schedule_list"):
            self._methods[method] = self._on_schedule_request  # "not running" until it is
        if cfg.cloud_url and cfg.token:
            tunnel = self._tunnel
            tunnel.activate(cfg.token, cfg.cloud_url)
            # What starts next imports and starts much (MCP's SDK, plugin runners, the
            # control API): let the handshake go first, for a bounded while.
            with trio.move_on_after(FIRST_HANDSHAKE_HEAD_START):
                await tunnel.state.wait_for(
                    lambda status: status in (TunnelStatus.CONNECTED, TunnelStatus.UNAUTHORIZED)
                    or tunnel.reason is not None
                )
        with self.registry.batch():
            await self._start_the_rest(root)
        self._tunnel.announce()  # audio sources, MCP servers, plugins, declared tools

    async def _start_the_rest(self, root: trio.Nursery) -> None:
        from .agents.token import serving_token
        from .capture.sources import probe_sources
        from .control import AgentsControl, ControlTargets, build_app, serve_control
        from .gateway.desk import AskDesk, GatewayClients
        from .nurseries import updates
        from .nurseries.captures import RecordingDefaults, serve_captures
        from .nurseries.mcp import serve_mcp
        from .nurseries.plugins import serve_plugins

        cfg = self.config
        agents = self._agents
        assert agents is not None  # started before the handshake
        self._gateway_clients = GatewayClients()
        defaults = RecordingDefaults(cfg.recordings_dir, self._asr_for)
        self._captures = await root.start(
            partial(
                serve_captures,
                self._on_capture_event,
                uplink_options=self._uplink_options,
                defaults=defaults,
                on_levels=self.events.publish,  # the dashboard's meters, 4 a second
                listening=lambda: len(self.events) > 0,
            )
        )
        self._mcp = await root.start(  # mcp.json is followed while running (edge mcp add)
            partial(
                serve_mcp,
                self.registry,
                path=cfg.mcp_file,
                on_event=self._on_mcp_event,
                timing=self._mcp_timing_of(cfg),
            )
        )
        self._plugins = await root.start(
            partial(
                serve_plugins,
                self.registry,
                cfg.plugin_dirs,
                call_tool=self._plugin_call,
                on_event=self._on_plugin_event,
                environ=self.executor.env,
                shared=cfg.shared_runner,
                processes=self.executor.processes,
            )
        )
        prefixes = [s.name for s in self._mcp] + list(self._plugins.plugins)
        _warn_unknown_allowed(cfg.allow_tools, self.registry.names(), prefixes)
        root.start_soon(self._scheduling.run, self._scheduler_lifetime)
        await self._scheduling.state.wait_for(lambda s: s.status not in ("stopped", "starting"))
        self.audio_sources = await probe_sources()
        root.start_soon(self._report_runs, self.tunnel)
        ask = AskDesk(
            token=lambda: self.tunnel.token,
            url=lambda: cfg.gateway_url or self.cloud_gateway_url,
            tools=self.gate.openai_tools,
            run_tool=self._ask_tool,
            model=cfg.gateway_model,
            clients=self._gateway_clients,
        )
        self._targets = ControlTargets(
            health=self.health,
            tunnel=_TunnelDesk(
                self.tunnel,
                self.gate,
                self.workers,
                self._own_calls,
                self._forget_cloud,
                self._captures,
            ),
            record=self._captures,
            mcp=self._mcp,
            tools=self.gate,
            events=self.events,
            plugins=self._plugins,
            ask=ask,
            key=self.key,
            stop=self._stop_from_control,
            calls=self.calls,
            call_tool=self._local_tool,
            schedule=_ScheduleDesk(lambda: self._scheduler, self.executor),
            agents=AgentsControl(agents.tasks, serving_token(cfg.state_dir),
                                 self.gate.offer, __version__),  # tools: the local policy's
        )
        self._updates = await root.start(
            partial(
                updates.serve_updates,
                self._update_options or updates.UpdateOptions.from_config(cfg),
                manifest_url=lambda: cfg.update_manifest or self.cloud_versions_url,
                drain=self._drain_for_update,
                resume=self._resume_after_update,
                on_installed=self._updated,
                publish=self._publish,
                installation=self._installation,
            )
        )
        self._targets = replace(self._targets, update=self._updates)
        if cfg.control is not None:
            app = build_app(self._targets, cfg.allowed_origins, csrf_token=self.csrf_token)
            self.control_url = await root.start(serve_control, app, *cfg.control)
            if cfg.state_dir is not None:
                port = int(self.control_url.rsplit(":", 1)[1].rstrip("/"))
                try:
                    self.key.write(cfg.state_dir, port)
                except OSError as exc:
                    log.warning("cannot write the local key into %s: %s", cfg.state_dir, exc)

    def _mcp_timing_of(self, cfg: Config) -> Timing | None:
        """The MCP servers' timing, with config.toml's ``[mcp]`` health rule if it sets one."""
        if cfg.mcp_health is None:
            return self._mcp_timing
        from .mcp import Timing

        return replace(self._mcp_timing or Timing(), health=cfg.mcp_health)

    def _announce_start(self) -> None:
        cfg = self.config
        control = (
            f"control API on {self.control_url} (dashboard: {self.control_url}/)"
            if self.control_url
            else "no control API"
        )
        if cfg.cloud_url and cfg.token:
            tunnel = f"tunnel connecting to {cfg.cloud_url}"
        elif cfg.cloud_url:
            tunnel = f"tunnel idle: no token for {cfg.cloud_url} (set EDGE_TOKEN or --token-file)"
        elif self.control_url:
            tunnel = f"tunnel idle: waiting for POST {self.control_url}/tunnel/activate"
        else:
            tunnel = "tunnel idle: no --cloud and no control API, nothing will connect"
        log.info(
            "edge %s: %s; %s; workspace %s; %d tools offered",
            __version__,
            control,
            tunnel,
            cfg.workspace,
            len(self.gate.offered()),
        )
        if self.executor.processes is not None:
            log.info("processes of terminal and code calls: %s", self.executor.processes.describe())

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Cancel every call, give their results ``grace`` seconds to go out, then stop all.

        "Go out" means sent and confirmed by a pong, so that the journal keeps for
        the next run only what the cloud may not have; the last quarter of the
        grace is for closing the connection politely.
        """
        if self._root is None:
            return
        if self._updates is not None:
            self._updates.abort()  # an update not yet installing is not installed
        if self._captures is not None and len(self._captures):
            with trio.move_on_after(CAPTURE_GRACE):
                await self._captures.stop_all()
        if self._workers is not None:
            self._workers.cancel_all("cancelled: edge is shutting down")
        deadline = trio.current_time() + grace
        async with trio.open_nursery() as stopping:
            if self._plugins is not None:  # their ladder, beside the results' way out
                stopping.start_soon(self._plugins.stop_all, min(grace, PLUGIN_GRACE))
            with trio.move_on_at(deadline - grace / 4):
                if self._workers is not None:
                    await self._workers.wait_idle()
                if self._tunnel is not None and self._tunnel.status is TunnelStatus.CONNECTED:
                    await self._tunnel.drain()
            with trio.move_on_at(deadline):
                if self._tunnel is not None and self._tunnel.status is TunnelStatus.CONNECTED:
                    await self._tunnel.close()
        self._root.cancel_scope.cancel()

    # -- what the children report, and what the cloud sees ---------------------------

    def capability_report(self) -> dict[str, Any]:
        cfg = self.config
        return build_capability_report(
            platform=f"{sys.platform}-{platform.machine()}",
            edge_version=__version__,
            edge_commit=self.build["commit"],
            hostname=socket.gethostname(),
            audio_sources=self.audio_sources,
            tools=self.gate.offer(),
            limits={
                "maxConcurrentCalls": cfg.max_calls,
                "queuedCalls": cfg.queue_size,
                "maxOutputChars": MAX_OUTPUT_CHARS,
                "defaultTimeout": cfg.call_timeout,
            },
            mcp_servers=self._mcp.report() if self._mcp is not None else (),
            declared_tools=_report_declared(self.declared),
            plugins=self._plugins.report() if self._plugins is not None else (),
            agent=self._agents.identity.to_json() if self._agents is not None else None,
        )

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "commit": self.build["commit"],
            "uptime": round(time.monotonic() - self.started_at, 3),
            "tunnel": str(self.tunnel.status),
            "tools": len(self.gate.effective()),
            "offeredTools": len(self.gate.offered()),
            "callsInFlight": self.workers.in_flight,
            "captures": len(self.captures),
            "mcpServers": len(self.mcp),
            "plugins": len(self.plugins),
            "schedules": len(self._scheduler.tasks()) if self._scheduler is not None else 0,
            "processes": (
                "process group only"
                if self.executor.processes is None
                else self.executor.processes.describe()
            ),
        }

    def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, ToolCall):
            self.tunnel.accepted(frame.id, frame.tool)  # journaled until its result is
            if self._refusing is not None:
                refused = self.executor.refuse(
                    frame.tool, self._refusing, call_id=frame.id, busy=True
                )
                self.tunnel.send_result(frame.id, refused)
                return
            self.workers.submit(
                frame.id,
                frame.tool,
                frame.args,
                approved=self.gate.approved,
                reply=self.tunnel.send_result,
                progress=self.tunnel.send_progress,
            )
        elif isinstance(frame, Cancel):
            if frame.id in self._own_calls or not self.workers.cancel(frame.id):
                log.debug("cancel for %r: no such call in flight", frame.id)
        elif isinstance(frame, Connected):
            self.cloud_asr_url = frame.asr_url
            self.cloud_gateway_url = frame.gateway_url
            self.cloud_versions_url = frame.versions_url
        elif isinstance(frame, ApprovedTools):
            self.gate.approve(frame.tools)
            self._approval_live = self._connected
        elif isinstance(frame, Request):
            self._on_request(frame)
        elif isinstance(frame, Response):
            if not any(handler(frame) for handler in self._responses):
                log.debug("response to %r: no request of edge's has that id", frame.id)
        else:
            log.debug("ignoring frame %r", frame)

    def _on_request(self, frame: Request) -> None:
        """An extension's request or notification from the cloud, to the child that serves
        its method; a request for a method no child serves now gets an error answer."""
        handler = self._methods.get(frame.method)
        if handler is not None:
            handler(frame)
        elif frame.id is not None:
            why = f"{frame.method} is not served by this edge now"
            self.tunnel.send_result(frame.id, error_result(why))
        else:
            log.debug("%s notification: not served by this edge now", frame.method)

    def _on_status(self, status: TunnelStatus, reason: str | None, at: str) -> None:
        self._approval_live = False  # each connection brings its own
        if status is not TunnelStatus.CONNECTED:
            self.gate.revoke()
            dropped, self._connected = self._connected, False
            if dropped and self.config.capture_on_disconnect == "stop":
                self._stop_captures_on_drop()
        else:
            self._connected = True
            if self._agents is not None:
                self._agents.relay.on_connected()  # replays of what outbound tasks missed
        log.debug("tunnel status: %s%s", status, f" ({reason})" if reason else "")
        self._publish({"type": "tunnel_status", "status": str(status), "reason": reason, "at": at})

    def _stop_captures_on_drop(self) -> None:
        """``[capture] on_disconnect = "stop"``: the tunnel dropped, so every capture ends
        (its file finished, its transcript as far as it got), in the root nursery."""
        if self._root is None or self._captures is None or not len(self._captures):
            return
        log.info("tunnel dropped: stopping %d capture(s) ([capture] on_disconnect)",
                 len(self._captures))  # fmt: skip
        self._root.start_soon(self._captures.stop_all)

    def _publish(self, event: dict[str, Any]) -> None:
        """An event for /events subscribers, and for the plugins that hooked its type."""
        self.events.publish(event)
        if self._plugins is not None:
            self._plugins.hook(event)

    def _on_call(self, record: CallRecord) -> None:
        """A tool call started or finished: ``call_started`` / ``call_finished`` for the
        control API's event streams (built only when someone listens: a call costs no more).

        Not for plugins' hooks: a plugin calling a tool from such a hook would start a
        chain without end.
        """
        if not len(self.events):
            return
        kind = "call_started" if record.outcome is None else "call_finished"
        self.events.publish({"type": kind, **record.to_json()})

    def _on_plugin_event(self, event: dict[str, Any]) -> None:
        self._publish(event)
        if event.get("type") == "plugin_status" and self._tunnel is not None:
            self._tunnel.announce()  # the report lists each plugin's status

    async def _plugin_call(self, plugin: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """A plugin calling another tool: the same executor, the cloud's approval included."""
        log.debug("plugin %s calls %s", plugin, tool)  # the call's own line is INFO
        if self._refusing is not None:
            return self.executor.refuse(tool, self._refusing, busy=True)
        return await self.executor.call(tool, args, approved=self.gate.approved)

    async def _ask_tool(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """A tool call the model asked for through ``/ask``: the tunnel's path (the workers,
        the cloud's approval, the local policy); cancelled with the question."""
        return await self._own_call(
            next(self._ask_ids), tool, args, self.gate.approved, "the question was stopped"
        )

    async def _local_tool(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """``POST /tools/call`` (``edge tools call`` holding the local key): the workers and
        the local policy, without the cloud's approval, as a local call runs; cancelled
        when the client goes away."""
        call_id = f"local-{secrets.token_hex(8)}"
        return await self._own_call(call_id, tool, args, None, "the caller went away")

    async def _scheduled_run(self, task: TaskRow) -> dict[str, Any]:
        """A scheduled task's run (``edge.scheduler``): a call edge itself makes, on the
        workers, not the cloud's to cancel; cancelled with the scheduler.

        A local task runs under the local policy alone, as ``edge tools call``. A task the
        cloud made runs under the local policy and, once the live connection has brought
        the cloud's approval, under that too: a tool it no longer approves is refused (and
        recorded so). While the tunnel is down it runs on the approval it was made with
        (which included its tool): disconnected, edge is autonomous.
        """
        approved: frozenset[str] | None = None
        if task.origin == "cloud":
            if not self.config.scheduler_cloud_tasks:
                return self.executor.refuse(
                    task.tool, "refused: this edge runs no tasks the cloud scheduled "
                    "([scheduler] cloud_tasks = false)", refused=True,
                )  # fmt: skip
            if self._approval_live:
                approved = self.gate.approved
                if task.tool not in approved:
                    why = f"refused: the cloud no longer approves tool {task.tool!r}"
                    return self.executor.refuse(task.tool, why, refused=True)
            else:
                approved = frozenset({task.tool})
        call_id = f"schedule-{task.id}-{secrets.token_hex(4)}"
        return await self._own_call(
            call_id, task.tool, task.args, approved, "the scheduled run was stopped"
        )

    def _on_schedule(self, event: dict[str, Any]) -> None:
        """A scheduler event: to /events and the plugins' hooks; a cloud task's finished run
        (or missed slot) also wakes the reporter, which tells the cloud."""
        self._publish(event)
        if event.get("origin") == "cloud" and event.get("status") != "started":
            self._report_wanted.set()

    async def _scheduler_lifetime(self, *, task_status: trio.TaskStatus[None]) -> None:
        """One run of the scheduler, under its supervisor: a failure is logged and it starts
        again from the store, its tasks and slots as they were; the routes and the cloud's
        requests are told it is not running meanwhile."""
        try:
            async with trio.open_nursery() as nursery:
                from .scheduler.scheduler import serve_scheduler

                serve = partial(serve_scheduler, on_event=self._on_schedule)
                self._scheduler = await nursery.start(serve, self._store, self._scheduled_run)
                self._report_wanted.set()  # what the last run left unreported
                task_status.started()
        finally:
            self._scheduler = None

    async def _report_runs(self, tunnel: Tunnel) -> None:
        """Tell the cloud how its tasks' runs went: each finished run a ``schedule_run``
        notification, journaled by ``send_durable`` (kept while the tunnel is down and
        across restarts, until a pong confirms it), then marked reported in the store.

        At start it sends what an earlier run left unreported (stopped between the two);
        then it waits to be woken (``_on_schedule``). History rows of local tasks need no
        report: they are marked reported as they come by.
        """
        sent: set[int] = set()  # sent, not yet marked: never sent twice if marking fails
        while True:
            self._report_wanted = trio.Event()
            scheduler = self._scheduler
            try:
                while scheduler is not None and (runs := await self._unreported(scheduler, sent)):
                    for run in runs:
                        task = scheduler.get(run.task_id)
                        if task is not None and task.origin == "cloud":
                            frame = schedule_frames.run_notification(run.to_json(), task.to_json())
                            tunnel.send_durable(schedule_frames.run_key(run.seq), frame)
                    seqs = [run.seq for run in runs]
                    sent.update(seqs)
                    await scheduler.mark_reported(seqs)
                    sent.difference_update(seqs)
            except (OSError, sqlite3.Error, TypeError, ValueError) as exc:
                log.error("scheduler: cannot report runs to the cloud: %s", exc)
            await self._report_wanted.wait()

    @staticmethod
    async def _unreported(scheduler: Scheduler, sent: set[int]) -> list[RunRow]:
        return [run for run in await scheduler.unreported() if run.seq not in sent]

    def _on_schedule_request(self, frame: Request) -> None:
        """The cloud's ``schedule_add``, ``schedule_remove`` or ``schedule_list``: answered
        in the root nursery (the store is written first)."""
        if frame.id is None:
            log.debug("%s notification: nothing to answer", frame.method)
        elif self._root is not None:
            self._root.start_soon(self._answer_schedule, frame, frame.id)

    async def _answer_schedule(self, frame: Request, request_id: str | int) -> None:
        try:
            answer = await self._schedule_answer(frame)
        except (ValueError, KeyError, OverflowError) as exc:
            answer = schedule_frames.refused(str(exc.args[0]) if exc.args else str(exc))
        except sqlite3.Error as exc:
            answer = schedule_frames.refused(f"edge's store failed: {exc}")
        self.tunnel.send_result(request_id, answer)

    async def _schedule_answer(self, frame: Request) -> dict[str, Any]:
        """The answer to one of the cloud's ``schedule_*`` requests: ``{"task"}``,
        ``{"tasks"}``, ``{"removed"}``, or ``{"error"}`` when refused.

        The cloud may schedule only tools it approves on this connection and the local
        policy allows, and nothing at all with ``[scheduler] cloud_tasks = false``; it lists
        and removes only the tasks it made.
        """
        scheduler = self._scheduler
        if scheduler is None:
            return schedule_frames.refused(
                "the scheduler is not running now (see edge's log); try again soon"
            )
        if frame.method == "schedule_list":
            mine = [t.to_json() for t in scheduler.tasks() if t.origin == "cloud"]
            return schedule_frames.list_answer(mine)
        if frame.method == "schedule_remove":
            task_id = schedule_frames.task_id_param(frame.params)
            task = scheduler.get(task_id)
            if task is None or task.origin != "cloud":
                return schedule_frames.refused(f"no task {task_id!r} that the cloud scheduled")
            await scheduler.remove(task.id)
            log.info("scheduler: the cloud removed task %s", task.id)
            return schedule_frames.removed_answer(task.id)
        if not self.config.scheduler_cloud_tasks:
            return schedule_frames.refused("this edge takes no scheduled tasks from the cloud "
                           "([scheduler] cloud_tasks = false)")  # fmt: skip
        spec = schedule_frames.parse_task(frame.params)
        why = self.executor.refusal(spec.tool, self.gate.approved)
        if why is not None:
            return schedule_frames.refused(f"cannot schedule it: {why}")
        task = await scheduler.add(
            timetable=spec.timetable,
            tool=spec.tool,
            args=spec.args,
            name=spec.name,
            missed=spec.missed,
            grace=spec.grace,
            origin="cloud",
        )
        log.info("scheduler: the cloud scheduled task %s (%s, %s)", task.id, task.tool,
                 task.timetable.describe())  # fmt: skip
        return schedule_frames.task_answer(task.to_json())

    def _agent_tasks(self) -> AgentTasks | None:
        return None if self._agents is None else self._agents.tasks

    def _agent_approval(self, origin: str) -> frozenset[str] | None:
        """The approval an agents' task runs under: the cloud's for the cloud's and other
        edges' requests (relayed by the cloud), none for local ones (the local policy only,
        as ``edge tools call``)."""
        return None if origin in ("local", "a2a") else self.gate.approved

    def _agent_refusal(self, skill: str, origin: str) -> str | None:
        return self.executor.refusal(skill, self._agent_approval(origin))

    async def _agent_call(self, task: AgentTask, report: Report) -> dict[str, Any]:
        """An agents' task this edge runs: a call of its own on the workers (the cloud's
        cancels by call id do not reach it; the task's cancel does)."""

        def progress(_id: Any, done: float, total: float | None, message: str | None) -> None:
            report(done, total, message)

        approved = self._agent_approval(task.origin)
        return await self._own_call(
            f"agent-{task.id}", task.skill, task.args, approved, "the task was canceled",
            progress=progress,
        )  # fmt: skip

    async def _own_call(
        self,
        call_id: str,
        tool: str,
        args: dict[str, Any],
        approved: frozenset[str] | None,
        gone: str,
        *,
        progress: ProgressReport | None = None,
    ) -> dict[str, Any]:
        """Run a call edge itself makes (``/ask``, ``/tools/call``) on the workers and wait for
        its result; cancelled with the caller (the result then says ``gone``).

        The cloud's cancels and a tunnel disconnect do not reach it: its id is in
        ``_own_calls`` while it runs (ids are shown on ``/calls``, so not secret).
        """
        if self._refusing is not None:
            return self.executor.refuse(tool, self._refusing, call_id=call_id, busy=True)
        done = trio.Event()
        box: list[dict[str, Any]] = []

        def reply(_id: Any, result: dict[str, Any]) -> None:
            box.append(result)
            done.set()

        log.debug("%s calls %s", call_id, tool)  # the call's own line is INFO
        self._own_calls.add(call_id)
        try:
            self.workers.submit(
                call_id, tool, args, approved=approved, reply=reply, progress=progress
            )
            try:
                await done.wait()
            finally:
                if not done.is_set():
                    self.workers.cancel(call_id, f"cancelled: {gone}")
        finally:
            self._own_calls.discard(call_id)
        return box[0]

    def _unavailable_tools(self) -> list[dict[str, Any]]:
        """For ``GET /tools``: the plugins and MCP servers that offer no tool now, and why."""
        plugins = self._plugins.info() if self._plugins is not None else []
        servers = self._mcp.info() if self._mcp is not None else []
        return plugin_problems(plugins) + mcp_problems(servers)

    def _forget_cloud(self) -> None:
        self.cloud_asr_url = self.cloud_gateway_url = self.cloud_versions_url = None

    async def _drain_for_update(self, now: bool) -> None:
        """Refuse new work, then wait until no tool call runs and no capture records (``now``,
        or after ``UPDATE_DRAIN_LIMIT`` seconds: stop them first)."""
        self._refusing = UPDATING
        self.captures.refuse_new(UPDATING)
        if not now:
            log.info("update: waiting for running calls and captures to finish")
            with trio.move_on_after(UPDATE_DRAIN_LIMIT):
                await self.workers.wait_idle()
                await self.captures.wait_idle()
                return
            log.warning(
                "update: calls or captures still running after %g s: stopping them",
                UPDATE_DRAIN_LIMIT,
            )
        self.workers.cancel_all("cancelled: edge is updating")
        with trio.move_on_after(CAPTURE_GRACE):
            await self.captures.stop_all()
        await self.workers.wait_idle()
        await self.captures.wait_idle()

    def _resume_after_update(self) -> None:
        """An update drained but did not install: take work again."""
        log.info("update: not installed; taking work again")
        self._refusing = None
        self.captures.refuse_new(None)

    def _stop_from_control(self) -> None:
        """POST /stop (``edge stop``): the clean stop SIGTERM makes, once, in the root nursery."""
        if self._root is not None and not self._stop_asked:
            self._stop_asked = True
            log.info("POST /stop (edge stop): stopping")
            self._root.start_soon(self.stop)

    def _updated(self, version: str) -> None:
        """An update is installed: stop, and have ``edge run`` exit with ``UPDATED``."""
        log.info("update: edge %s is installed; stopping so that it starts again", version)
        self.exit_code = exitcodes.UPDATED
        if self._root is not None:
            self._root.start_soon(self.stop)

    def _on_mcp_event(self, event: dict[str, Any]) -> None:
        self._publish(event)
        # The cloud sees each server's status in the capability report.
        if self._tunnel is not None:
            self._tunnel.announce()

    def _on_capture_event(self, event: CaptureEvent) -> None:
        self._publish(event.to_json())

    def _asr_for(self, asr: str | bool | None) -> AsrTarget | None:
        from .capture.uplink import choose_asr_target

        token = self._tunnel.token if self._tunnel is not None else None
        return choose_asr_target(asr, self.cloud_asr_url, token)


async def run_until_signalled(config: Config) -> int:
    """``edge run``: the daemon until SIGINT or SIGTERM (or an installed update), then a clean
    stop; the exit code (``exitcodes.UPDATED`` after an update, else ``OK``)."""
    daemon = Daemon(config)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("%s: stopping", signal.Signals(signum).name)
                    break
                await daemon.stop()

            nursery.start_soon(stop_on_signal)
            await daemon.stopped.wait()
            nursery.cancel_scope.cancel()
    return daemon.exit_code


def _report_declared(declared: list[DeclaredTool]) -> list[dict[str, Any]]:
    """The declared tools as the capability report lists them (none: nothing imported)."""
    if not declared:
        return []
    from .tools.runtimes.load import report

    return report(declared)
