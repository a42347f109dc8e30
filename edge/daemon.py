"""The daemon: the root nursery, which owns all state and wires the children together.

::

    root nursery
    ├── tool-call workers   (edge.nurseries.workers)
    ├── tunnel              (edge.nurseries.tunnel)
    ├── captures            (edge.nurseries.captures: {chat_id: capture}, each its own nursery)
    ├── MCP servers         (edge.nurseries.mcp: one supervised session task per server)
    └── control API         (edge.nurseries.control)

Children never import the daemon: they report through the hooks and callbacks
it hands them (tunnel frames and status, worker replies), and the control API
drives it through the ``ControlTarget`` protocol. Later children (captures, MCP
sessions, plugin runners, the scheduler) start in the same root nursery and
register their tools in the same registry.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import platform
import signal
import socket
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from . import __version__
from .capture.capture import CaptureEvent, CaptureRequest
from .capture.sources import AudioFormat, parse_source, probe_sources
from .capture.uplink import AsrTarget
from .config import TOKEN_ENV, Config
from .control.app import build_app, serve_control
from .errors import CaptureError, ConfigError
from .events import EventHub
from .mcp.config import load_servers
from .mcp.session import Timing
from .nurseries.captures import Captures, serve_captures
from .nurseries.mcp import McpServers, serve_mcp
from .nurseries.tunnel import Tunnel, TunnelHooks, TunnelStatus, serve_tunnel
from .nurseries.workers import ToolWorkers, serve_workers
from .protocol import (
    MAX_OUTPUT_CHARS,
    ApprovedTools,
    Cancel,
    Connected,
    Frame,
    ToolCall,
    capability_report,
)
from .secret import Secret
from .tools.batch import call_batch
from .tools.builtin import BUILTIN_TOOLS
from .tools.execute import Executor
from .tools.policy import Policy
from .tools.registry import ToolRegistry

log = logging.getLogger(__name__)

#: Seconds a stopping daemon gives cancelled calls to report and the outbox to drain.
SHUTDOWN_GRACE: Final = 0.5
#: Seconds a stopping daemon gives captures to finish their files and transcripts.
CAPTURE_GRACE: Final = 6.0
#: Where undelivered results wait between runs, inside the state directory.
OUTBOX_FILE: Final = "outbox.jsonl"


def child_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for tool subprocesses: the daemon's, without its token."""
    env = dict(os.environ if environ is None else environ)
    env.pop(TOKEN_ENV, None)
    return env


def build_registry() -> ToolRegistry:
    registry = ToolRegistry()
    for spec in BUILTIN_TOOLS:
        registry.add(spec)
    return registry


def build_executor(config: Config, registry: ToolRegistry | None = None) -> Executor:
    config.workspace.mkdir(parents=True, exist_ok=True)
    policy = Policy.create(config.workspace, config.extra_roots, config.allow_tools)
    return Executor(
        registry=registry or build_registry(),
        policy=policy,
        env=child_environment(),
        default_timeout=config.call_timeout,
    )


class Daemon:
    """``edge run``: start with ``await nursery.start(daemon.run)``, stop with ``stop()``."""

    def __init__(
        self,
        config: Config,
        *,
        tunnel_options: dict[str, Any] | None = None,
        uplink_options: dict[str, Any] | None = None,
        mcp_timing: Timing | None = None,
    ) -> None:
        self.config = config
        self._mcp_timing = mcp_timing
        self._tunnel_options = tunnel_options or {}
        self._uplink_options = uplink_options
        self.registry = build_registry()
        self.executor = build_executor(config, self.registry)
        self.approved: frozenset[str] = frozenset()
        self.started_at = time.monotonic()
        self.control_url: str | None = None
        self._tunnel: Tunnel | None = None
        self._workers: ToolWorkers | None = None
        self._captures: Captures | None = None
        self._mcp: McpServers | None = None
        self._root: trio.Nursery | None = None
        self.events = EventHub()
        self.audio_sources: list[dict[str, Any]] = []
        self.cloud_asr_url: str | None = None

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
    def captures(self) -> Captures:
        assert self._captures is not None, "the daemon is not running"
        return self._captures

    async def run(self, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the root nursery until ``stop()`` or cancellation."""
        cfg = self.config
        kept = _load_outbox(cfg.state_dir)
        try:
            await self._run(kept, task_status)
        finally:
            if self._tunnel is not None:
                _save_outbox(cfg.state_dir, self._tunnel.outbox.pending())

    async def _run(self, kept: list[str], task_status: trio.TaskStatus[Daemon]) -> None:
        cfg = self.config
        async with trio.open_nursery() as root:
            self._root = root
            self._workers = await root.start(
                partial(
                    serve_workers, self.executor, max_calls=cfg.max_calls, queue_size=cfg.queue_size
                )
            )
            self._captures = await root.start(
                partial(serve_captures, self._on_capture_event, uplink_options=self._uplink_options)
            )
            self._mcp = await root.start(
                partial(
                    serve_mcp,
                    self.registry,
                    self._mcp_configs(),
                    on_event=self._on_mcp_event,
                    timing=self._mcp_timing,
                )
            )
            self.audio_sources = await probe_sources()
            hooks = TunnelHooks(self.capability_report, self._on_frame, self._on_status)
            self._tunnel = await root.start(partial(serve_tunnel, hooks, **self._tunnel_options))
            self.registry.subscribe(self._tunnel.announce)
            if kept:
                self._tunnel.outbox.restore(kept)
                log.info("%d results from the last run wait for the cloud", len(kept))
            if cfg.control is not None:
                host, port = cfg.control
                app = build_app(self, cfg.allowed_origins)
                try:
                    self.control_url = await root.start(serve_control, app, host, port)
                except* OSError as group:
                    raise ConfigError(_bind_problem(host, port, group.exceptions[0])) from None
            self._announce_start()
            if cfg.cloud_url and cfg.token:
                self._tunnel.activate(cfg.token, cfg.cloud_url)
            task_status.started(self)
        self._root = None

    def _on_mcp_event(self, event: dict[str, Any]) -> None:
        self.events.publish(event)
        # The cloud sees each server's status in the capability report.
        if self._tunnel is not None:
            self._tunnel.announce()

    def _mcp_configs(self) -> list[Any]:
        path = self.config.mcp_file
        if path is None:
            return []
        try:
            servers = load_servers(path)
        except ConfigError as exc:
            log.error("no MCP servers: %s", exc)
            return []
        if servers:
            log.info("MCP servers from %s: %s", path, ", ".join(s.name for s in servers))
        return servers

    def _announce_start(self) -> None:
        cfg = self.config
        control = f"control API on {self.control_url}" if self.control_url else "no control API"
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
            len(self.offered_tools()),
        )

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Cancel every call, give their results ``grace`` seconds to go out, then stop all."""
        if self._root is None:
            return
        if self._captures is not None and len(self._captures):
            with trio.move_on_after(CAPTURE_GRACE):
                await self._captures.stop_all()
        if self._workers is not None:
            self._workers.cancel_all("cancelled: edge is shutting down")
        with trio.move_on_after(grace):
            if self._workers is not None:
                await self._workers.wait_idle()
            if self._tunnel is not None and self._tunnel.status is TunnelStatus.CONNECTED:
                await self._tunnel.outbox.wait_sent()
                await self._tunnel.close()
        self._root.cancel_scope.cancel()

    # -- state the children report into --------------------------------------------

    def offered_tools(self) -> list[str]:
        """Tools the local policy offers the cloud."""
        return [s.name for s in self.registry if self.executor.policy.allows_tool(s.name)]

    def effective_tools(self) -> frozenset[str]:
        """The cloud's approval ∩ the local policy ∩ what is registered."""
        approved = self.approved
        return frozenset(t for t in approved if self.executor.refusal(t, approved) is None)

    def capability_report(self) -> dict[str, Any]:
        policy = self.executor.policy
        return capability_report(
            platform=f"{sys.platform}-{platform.machine()}",
            edge_version=__version__,
            hostname=socket.gethostname(),
            audio_sources=self.audio_sources,
            tools=[
                {"name": s.name, "description": s.description, "input_schema": s.input_schema}
                for s in self.registry
                if policy.allows_tool(s.name)
            ],
            limits={
                "maxConcurrentCalls": self.config.max_calls,
                "queuedCalls": self.config.queue_size,
                "maxOutputChars": MAX_OUTPUT_CHARS,
                "defaultTimeout": self.config.call_timeout,
            },
            mcp_servers=[
                {
                    "name": server.name,
                    "status": server.status,
                    "tools": len(server.tools),
                    "lastError": server.metrics.last_error,
                }
                for server in (self._mcp or ())
            ],
        )

    def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, ToolCall):
            self.workers.submit(
                frame.id,
                frame.tool,
                frame.args,
                approved=self.approved,
                reply=self.tunnel.send_result,
                progress=self.tunnel.send_progress,
            )
        elif isinstance(frame, Cancel):
            if not self.workers.cancel(frame.id):
                log.debug("cancel for %r: no such call in flight", frame.id)
        elif isinstance(frame, Connected):
            self.cloud_asr_url = frame.asr_url
        elif isinstance(frame, ApprovedTools):
            self.approved = frame.tools
            effective = sorted(self.effective_tools())
            log.info(
                "cloud approved %d tools; effective: %s",
                len(frame.tools),
                ", ".join(effective) or "none",
            )
        else:
            log.debug("ignoring frame %r", frame)

    def _on_status(self, status: TunnelStatus, reason: str | None) -> None:
        # Approvals belong to one connection: every handshake brings its own.
        if status is not TunnelStatus.CONNECTED:
            self.approved = frozenset()
        log.debug("tunnel status: %s%s", status, f" ({reason})" if reason else "")

    # -- ControlTarget ---------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "uptime": round(time.monotonic() - self.started_at, 3),
            "tunnel": str(self.tunnel.status),
            "tools": len(self.effective_tools()),
            "offeredTools": len(self.offered_tools()),
            "callsInFlight": self.workers.in_flight,
            "captures": len(self.captures),
            "mcpServers": len(self.mcp),
        }

    def tunnel_info(self) -> dict[str, Any]:
        info = self.tunnel.info()
        info["approvedTools"] = sorted(self.approved)
        info["effectiveTools"] = sorted(self.effective_tools())
        return info

    def activate(self, jwt: str, url: str) -> None:
        log.info("tunnel: new credentials for %s", url)
        self.tunnel.activate(Secret(jwt), url)

    def disconnect(self) -> None:
        log.info("tunnel: disconnect requested")
        self.tunnel.disconnect()
        self.workers.cancel_all("cancelled: the tunnel was disconnected")

    # -- captures (ControlTarget) ---------------------------------------------------

    def _on_capture_event(self, event: CaptureEvent) -> None:
        self.events.publish(event.to_json())

    def asr_target(self, asr: str | bool | None) -> AsrTarget | None:
        """Where a capture streams: ``None`` → the cloud's endpoint, ``False`` → nowhere."""
        token = self._tunnel.token if self._tunnel is not None else None
        if asr is False:
            return None
        if isinstance(asr, str):
            if not asr.startswith(("ws://", "wss://")):
                raise CaptureError('"asr" must be a ws:// or wss:// URL, or false')
            return AsrTarget(asr, token)
        if self.cloud_asr_url and token is not None:
            return AsrTarget(self.cloud_asr_url, token)
        return None

    async def record_start(
        self,
        chat_id: str,
        source: str,
        *,
        asr: str | bool | None = None,
        sample_rate: int = 16000,
        channels: int = 1,
        container: str = "flac",
    ) -> dict[str, Any]:
        request = CaptureRequest(
            chat_id=chat_id,
            source=parse_source(source),
            fmt=AudioFormat(sample_rate, channels),
            out_dir=self.config.recordings_dir,
            container=container,
            asr=self.asr_target(asr),
        )
        capture = await self.captures.start(request)
        self.events.publish({"type": "capture_started", **capture.status()})
        return capture.status()

    async def record_stop(self, chat_id: str | None) -> list[dict[str, Any]]:
        if chat_id is None:
            return await self.captures.stop_all()
        return [await self.captures.stop(chat_id)]

    def record_status(self) -> list[dict[str, Any]]:
        return self.captures.status()

    # -- MCP and tools (ControlTarget) --------------------------------------------------

    def mcp_servers(self) -> list[dict[str, Any]]:
        return self.mcp.info()

    async def mcp_test(self, name: str, within: float = 10.0) -> dict[str, Any]:
        return await self.mcp.test(name, within)

    def openai_tools(self) -> list[dict[str, Any]]:
        """What the cloud approved and the policy allows, in OpenAI function-calling form."""
        from .protocol.openai import to_openai_tool

        effective = self.effective_tools()
        return [
            to_openai_tool(s.name, s.description, s.input_schema)
            for s in self.registry
            if s.name in effective
        ]

    async def call_tools(
        self, calls: list[tuple[str, dict[str, Any]]], concurrency: int
    ) -> list[dict[str, Any]]:
        """Run a batch of calls as the cloud would: approval and policy both apply."""

        async def one(name: str, args: dict[str, Any]) -> dict[str, Any]:
            return await self.executor.call(name, args, approved=self.approved)

        return await call_batch(one, calls, concurrency=concurrency)


def _outbox_file(state_dir: Path | None) -> Path | None:
    return None if state_dir is None else state_dir / OUTBOX_FILE


def _load_outbox(state_dir: Path | None) -> list[str]:
    """Results an earlier run could not deliver (the file is consumed)."""
    path = _outbox_file(state_dir)
    if path is None or not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        path.unlink()
    except OSError as exc:
        log.warning("cannot read undelivered results from %s: %s", path, exc.strerror)
        return []
    kept = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            continue
        kept.append(line)
    return kept


def _save_outbox(state_dir: Path | None, pending: list[str]) -> None:
    """Keep undelivered results for the next run (mode 0600: they hold tool output)."""
    path = _outbox_file(state_dir)
    if path is None or not pending:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(pending) + "\n")
        os.replace(tmp, path)
        log.info("%d undelivered results kept in %s for the next run", len(pending), path)
    except OSError as exc:
        log.error("cannot keep %d undelivered results: %s", len(pending), exc.strerror)


def _bind_problem(host: str, port: int, exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return (
            f"cannot serve the control API on {host}:{port}: the address is in use "
            "(is edge already running? try --control HOST:PORT or --no-control)"
        )
    return f"cannot serve the control API on {host}:{port}: {exc}"


async def run_until_signalled(config: Config) -> None:
    """``edge run``: the daemon until SIGINT or SIGTERM, then a clean stop."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            daemon: Daemon = await nursery.start(Daemon(config).run)
            async for signum in signals:
                log.info("%s: stopping", signal.Signals(signum).name)
                break
            await daemon.stop()
