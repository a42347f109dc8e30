"""The MCP nursery: one supervised task per configured MCP server, their tools in the registry.

::

    MCP nursery (serve_mcp)
    ├── server "time"      (McpServer.run in its own cancel scope: remove() stops just it)
    ├── server "notes"     ...
    └── watcher            (given mcp.json: its stat every second; a settled change → reload())

Each server's tools are registered under names from one ``ToolNames`` table
(``edge.mcp.names``), with source ``mcp:<server>`` and the server's call
timeout, so they go through the same executor as the built-ins: local policy,
cloud approval, schema check, timeout. The registry tells the tunnel, which
re-announces the capabilities. Status changes go to ``on_event``.

Given the servers file, the nursery follows it while it runs: ``reload()`` (the
watcher, on a changed modification time, size or inode; ``POST /mcp/reload``)
reads it again and diffs it against the running set: new servers start,
removed ones stop (calls in flight end with an error saying so, their tools
leave the registry), changed ones restart, the others are left alone. A file
that does not load changes nothing: the last good set keeps running, the
problem is logged once per version of the file and published as an
``mcp_config`` event (``ok`` false with ``error``; after a good reload ``ok``
true with ``added``, ``removed``, ``restarted``).

The watcher waits for a change to settle: a new version is read once two looks
in a row have seen it (a file being written in place is not read half done),
and a file that has gone counts as gone only once it has stayed away
``MISSING_GRACE`` seconds (an editor that renames the old file away, then
writes the new one, leaves a moment with no file: that must not stop every
server). ``POST /mcp/reload`` reads at once, a missing file included. A reload
cut short (cancelled, or failing while it starts and stops servers) leaves the
version unseen, so the watcher tries again. The ``stat`` and the read run in a
worker thread: a hung network home stalls the watcher, not the event loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import trio

from ..errors import ConfigError, McpCallError
from ..mcp import (
    McpServer,
    McpServerConfig,
    Status,
    Timing,
    ToolNames,
    load_servers,
    map_call_result,
    probe_server,
)
from ..tools.registry import CallContext, ToolRegistry, ToolResult, ToolSpec
from ..watch import Watched

log = logging.getLogger(__name__)

#: Seconds between two looks at the servers file (a ``stat``: trio has no file watching).
WATCH_INTERVAL: Final = 1.0
#: Seconds the servers file must stay away before the watcher takes it for deleted.
MISSING_GRACE: Final = 3.0
#: The statuses of a server that has connected or failed at least once (``wait_settled``).
SETTLED: Final = frozenset({"active", "degraded", "error"})

#: A version of the servers file: (mtime_ns, size, inode); ``None``: there is no file.
Signature = tuple[int, ...] | None


def file_signature(path: Path) -> Signature:
    """What tells one version of ``path`` from the next, without reading it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:  # unreadable: the load says why; a new errno is a new version
        return (-1, exc.errno or 0)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


async def look_at(path: Path) -> Signature:
    """``file_signature`` in a worker thread (abandoned on cancel: a hung mount cannot
    hold up a shutdown)."""
    return await trio.to_thread.run_sync(file_signature, path, abandon_on_cancel=True)


class McpServers:
    """Handle on the MCP nursery; made by ``serve_mcp``."""

    def __init__(
        self,
        nursery: trio.Nursery,
        registry: ToolRegistry,
        on_event: Callable[[dict[str, Any]], None],
        timing: Timing | None,
        path: Path | None = None,
    ) -> None:
        self._nursery = nursery
        self._registry = registry
        self._on_event = on_event
        self._timing = timing
        #: The servers file ``reload`` reads (``None``: servers come only through ``add``).
        self.path = path
        self._servers: dict[str, McpServer] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._done: dict[str, trio.Event] = {}
        self._registered: dict[str, set[str]] = {}
        self.names = ToolNames(reserved=self._reserved)
        self._reloading = trio.Lock()
        self._loaded = False
        #: The version of the file last read and applied (a reload cut short leaves it
        #: as it was, so the watcher retries); whether it was broken, and which broken
        #: version was last told (logged, published).
        self._seen: Signature = None
        self._broken = False
        self._told: Signature = None
        #: Bumped on every status change, for ``wait_settled``.
        self._changes = Watched(0)

    def _reserved(self, name: str) -> bool:
        spec = self._registry.get(name)
        return spec is not None and not spec.source.startswith("mcp:")

    def __len__(self) -> int:
        return len(self._servers)

    def __iter__(self) -> Iterator[McpServer]:
        return iter(list(self._servers.values()))

    def get(self, name: str) -> McpServer | None:
        return self._servers.get(name)

    async def add(self, config: McpServerConfig) -> McpServer:
        """Start supervising ``config`` (a server of that name is replaced)."""
        if config.name in self._servers:
            await self.remove(config.name)
        server = McpServer(
            config,
            on_tools=self._tools_changed,
            on_status=self._status_changed,
            timing=self._timing,
        )
        started: McpServer = await self._nursery.start(self._run, server)
        return started

    async def remove(self, name: str, why: str | None = None) -> bool:
        """Stop ``name`` (its child process is terminated) and unregister its tools.

        Its calls in flight, and any that still reach it, fail with ``why`` (default:
        the server was removed).
        """
        scope = self._scopes.get(name)
        if scope is None:
            return False
        self._servers[name].stop_reason(why or f"MCP server {name!r} was removed")
        self._unregister(name)  # its tools go now, not once its process has ended
        done = self._done[name]
        scope.cancel()
        await done.wait()
        return True

    async def wait_settled(self) -> None:
        """Return once every enabled server has connected or failed at least once."""

        def settled(_: int) -> bool:
            return all(s.config.disabled or s.status in SETTLED for s in self)

        await self._changes.wait_for(settled)

    # -- the servers file ------------------------------------------------------------

    async def reload(self) -> dict[str, Any]:
        """Read the servers file again and make the running set match it.

        Returns:
            ``{"ok": True, "file", "added", "removed", "restarted", "servers"}`` (names;
            ``servers``: every server now running, disabled ones included).

        Raises:
            ConfigError: the file does not load; nothing was changed.
        """
        async with self._reloading:
            return await self._reload()

    async def watch(
        self, interval: float = WATCH_INTERVAL, missing_grace: float = MISSING_GRACE
    ) -> None:
        """Reload whenever the servers file has changed and settled (looked at every
        ``interval`` s).

        A version unlike the one applied is read once two looks in a row have seen it;
        a missing file, once it has been missing ``missing_grace`` s as well.
        """
        assert self.path is not None
        path = self.path
        last, since = self._seen, trio.current_time()  # what the last look saw, since when
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            signature = await look_at(path)
            if signature != last:  # still changing, or just changed: look again
                last, since = signature, now
                continue
            if signature == self._seen:
                continue
            if signature is None and now - since < missing_grace:
                continue  # gone for a moment (being replaced), or deleted: not yet told apart
            try:
                async with self._reloading:
                    if signature != self._seen:  # else a ``POST /mcp/reload`` was first
                        await self._reload()
            except ConfigError:
                pass  # logged and published by the reload; the last good set runs

    async def _reload(self) -> dict[str, Any]:
        path, first = self.path, not self._loaded
        if path is None:
            return self._report([], [], [])
        signature = await look_at(path)  # before reading: a later change is seen next time
        try:
            configs = await trio.to_thread.run_sync(load_servers, path, abandon_on_cancel=True)
        except ConfigError as exc:
            told = self._broken and self._told == signature
            self._seen, self._loaded, self._broken, self._told = signature, True, True, signature
            if not told:
                if first:
                    log.error("no MCP servers: %s", exc)
                else:
                    log.error("MCP servers kept as they were: %s", exc)
                self._on_event(
                    {"type": "mcp_config", "ok": False, "error": str(exc), "file": str(path)}
                )
            raise
        was_broken = self._broken
        wanted = {c.name: c for c in configs}
        running = {s.name: s.config for s in self}
        removed = sorted(set(running) - set(wanted))
        added = [name for name in wanted if name not in running]
        restarted = [name for name in wanted if name in running and running[name] != wanted[name]]
        async with trio.open_nursery() as stopping:
            for name in removed:
                stopping.start_soon(self.remove, name, f"MCP server {name!r} was removed")
            for name in restarted:
                why = f"MCP server {name!r} is restarting: its entry in {path.name} changed"
                stopping.start_soon(self.remove, name, why)
        for name in wanted:
            if name in added or name in restarted:
                await self.add(wanted[name])
        # Only now: a reload cut short above leaves the version unseen, and is retried.
        self._seen, self._loaded, self._broken = signature, True, False
        report = self._report(added, removed, restarted)
        if first:
            if configs:
                log.info("MCP servers from %s: %s", path, ", ".join(wanted))
        elif added or removed or restarted or was_broken:
            steps = (("added", added), ("removed", removed), ("restarted", restarted))
            changes = [f"{what} {', '.join(names)}" for what, names in steps if names]
            log.info("MCP servers from %s: %s", path, "; ".join(changes) or "unchanged")
            self._on_event({"type": "mcp_config", **report})
        return report

    def _report(self, added: list[str], removed: list[str], restarted: list[str]) -> dict[str, Any]:
        return {
            "ok": True,
            "file": None if self.path is None else str(self.path),
            "added": added,
            "removed": removed,
            "restarted": restarted,
            "servers": sorted(s.name for s in self),
        }

    async def _run(self, server: McpServer, *, task_status: trio.TaskStatus[McpServer]) -> None:
        name = server.name
        done = trio.Event()
        with trio.CancelScope() as scope:
            self._servers[name] = server
            self._scopes[name] = scope
            self._done[name] = done
            try:
                await server.run(task_status=task_status)
            finally:
                self._unregister(name)
                self.names.release_server(name)
                del self._servers[name]
                del self._scopes[name]
                del self._done[name]
                done.set()

    # -- tools -----------------------------------------------------------------------

    def _tools_changed(self, server: McpServer) -> None:
        name = server.name
        old = self._registered.get(name, set())
        new: set[str] = set()
        for tool in server.tools:
            tool_name = tool.get("name")
            if not isinstance(tool_name, str):
                continue
            public = self.names.name_for(name, tool_name)
            schema = tool.get("inputSchema") or {"type": "object"}
            description = tool.get("description") or tool.get("title") or tool_name
            spec = ToolSpec(
                name=public,
                description=f"[{name}] {description}",
                input_schema=schema,
                run=self._runner(server, tool_name),
                source=f"mcp:{name}",
                timeout=server.config.timeout,
            )
            try:
                self._registry.add(spec)
            except Exception as exc:  # jsonschema.SchemaError: one bad tool, not the others
                log.warning(
                    "MCP server %s: tool %s skipped: bad input schema: %s", name, tool_name, exc
                )
                continue
            new.add(public)
        for gone in old - new:
            self._registry.remove(gone)
        self._registered[name] = new

    def _unregister(self, server: str) -> None:
        for public in self._registered.pop(server, set()):
            self._registry.remove(public)

    def _runner(self, server: McpServer, tool: str) -> Callable[[dict[str, Any], CallContext], Any]:
        async def run(args: dict[str, Any], ctx: CallContext) -> ToolResult:
            # An McpCallError is a ToolError: the executor reports its message.
            raw = await server.call_tool(tool, args, progress=ctx.progress)
            return map_call_result(raw, server.config.result_format)

        return run

    # -- health ----------------------------------------------------------------------

    def _status_changed(self, server: McpServer, status: Status) -> None:
        change = server.last_change
        why = f" ({change.reason})" if change is not None else ""
        old = f"{change.old} → " if change is not None else ""
        log.info("MCP server %s: %s%s%s", server.name, old, status, why)
        self._changes.value += 1
        self._on_event(
            {
                "type": "mcp_status",
                "server": server.name,
                # What changed: from what, to what, why and when (oldStatus, status,
                # reason, at); the last error as before.
                **(change.to_json() if change is not None else {"status": status}),
                "lastError": server.metrics.last_error,
            }
        )

    def report(self) -> list[dict[str, Any]]:
        """Per server, what the capability report says of it: name, status, tools, last error."""
        return [
            {
                "name": server.name,
                "status": server.status,
                "tools": len(server.tools),
                "lastError": server.metrics.last_error,
            }
            for server in self
        ]

    def info(self) -> list[dict[str, Any]]:
        """Per server: config (no secrets), status, metrics, and the edge names of its tools."""
        out = []
        for server in self:
            entry = server.info()
            entry["toolNames"] = sorted(self._registered.get(server.name, set()))
            out.append(entry)
        return out

    async def test(self, name: str, within: float = 10.0) -> dict[str, Any]:
        """Connect to ``name`` on a connection of its own, list its tools, time it."""
        server = self._servers.get(name)
        if server is None:
            raise KeyError(name)
        return await probe_server(server.config, within=within)

    async def refresh(self, name: str | None, within: float = 10.0) -> list[dict[str, Any]]:
        """List the tools of server ``name`` (every server for ``None``, at once) again now,
        past the cache: one ``{"name", "ok", "tools"|"error"}`` each, within ``within``
        seconds; KeyError for an unknown name."""
        if name is not None and name not in self._servers:
            raise KeyError(name)
        chosen = [s for s in self._servers.values() if name is None or s.name == name]
        reports: dict[str, dict[str, Any]] = {}

        async def one(server: McpServer) -> None:
            report: dict[str, Any] = {"name": server.name, "ok": False}
            report["error"] = "no answer in time"
            reports[server.name] = report
            with trio.move_on_after(within):
                try:
                    tools = await server.list_tools_now()
                except McpCallError as exc:
                    report["error"] = str(exc)
                else:
                    report.update(ok=True, tools=tools)
                    del report["error"]

        async with trio.open_nursery() as nursery:
            for server in chosen:
                nursery.start_soon(one, server)
        return [reports[s.name] for s in chosen]


async def serve_mcp(
    registry: ToolRegistry,
    configs: Iterable[McpServerConfig] = (),
    *,
    path: Path | None = None,
    on_event: Callable[[dict[str, Any]], None] = lambda event: None,
    timing: Timing | None = None,
    watch_interval: float | None = WATCH_INTERVAL,
    missing_grace: float = MISSING_GRACE,
    task_status: trio.TaskStatus[McpServers] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the MCP nursery until cancelled; ``nursery.start`` gives the handle.

    The servers are ``configs`` or, given the servers file ``path``, those it names
    (read here: a file that does not load is logged and starts none); the file is
    then followed while the nursery runs (looked at every ``watch_interval``
    seconds; ``None``: only on ``reload()``; a file gone for less than
    ``missing_grace`` seconds is taken for one being replaced), and is the whole
    truth: a server it does not name is stopped.
    Servers start in the background: a slow or broken one delays nothing else.
    """
    async with trio.open_nursery() as nursery:
        servers = McpServers(nursery, registry, on_event, timing, path)
        for config in configs:
            await servers.add(config)
        if path is not None:
            try:
                await servers.reload()
            except ConfigError:
                pass  # logged; the file is read again when it changes
            if watch_interval is not None:
                nursery.start_soon(servers.watch, watch_interval, missing_grace)
        task_status.started(servers)
        await trio.sleep_forever()
