"""The MCP nursery: one supervised task per configured MCP server, their tools in the registry.

::

    MCP nursery (serve_mcp)
    ├── server "time"      (McpServer.run in its own cancel scope: remove() stops just it)
    └── server "notes"     ...

Each server's tools are registered under names from one ``ToolNames`` table
(``edge.mcp.names``), with source ``mcp:<server>`` and the server's call
timeout, so they go through the same executor as the built-ins: local policy,
cloud approval, schema check, timeout. The registry tells the tunnel, which
re-announces the capabilities. Status changes go to ``on_event``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import trio

from ..mcp import (
    McpServer,
    McpServerConfig,
    Status,
    Timing,
    ToolNames,
    map_call_result,
    probe_server,
)
from ..tools.registry import CallContext, ToolRegistry, ToolResult, ToolSpec

log = logging.getLogger(__name__)


class McpServers:
    """Handle on the MCP nursery; made by ``serve_mcp``."""

    def __init__(
        self,
        nursery: trio.Nursery,
        registry: ToolRegistry,
        on_event: Callable[[dict[str, Any]], None],
        timing: Timing | None,
    ) -> None:
        self._nursery = nursery
        self._registry = registry
        self._on_event = on_event
        self._timing = timing
        self._servers: dict[str, McpServer] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._done: dict[str, trio.Event] = {}
        self._registered: dict[str, set[str]] = {}
        self.names = ToolNames(reserved=self._reserved)

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

    async def remove(self, name: str) -> bool:
        """Stop ``name`` (its child process is terminated) and unregister its tools."""
        scope = self._scopes.get(name)
        if scope is None:
            return False
        done = self._done[name]
        scope.cancel()
        await done.wait()
        return True

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
        log.info("MCP server %s is %s", server.name, status)
        self._on_event(
            {
                "type": "mcp_status",
                "server": server.name,
                "status": status,
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


async def serve_mcp(
    registry: ToolRegistry,
    configs: Iterable[McpServerConfig] = (),
    *,
    on_event: Callable[[dict[str, Any]], None] = lambda event: None,
    timing: Timing | None = None,
    task_status: trio.TaskStatus[McpServers] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the MCP nursery until cancelled; ``nursery.start`` gives the handle.

    Servers start in the background: a slow or broken one delays nothing else.
    """
    async with trio.open_nursery() as nursery:
        servers = McpServers(nursery, registry, on_event, timing)
        for config in configs:
            await servers.add(config)
        task_status.started(servers)
        await trio.sleep_forever()
