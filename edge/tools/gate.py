"""Which tools may run now: the local policy's offer and the cloud's approval, side by side.

The local policy decides what is *offered* (listed in the capability report);
the cloud approves a subset for each connection; a tool is *effective* when it
is registered, offered and approved. ``ToolGate`` holds the approval of the live
connection (the daemon owns it) and runs calls under it, one at a time or as a
batch, through the one executor.

``tool_rows`` lists every registered tool with the three answers side by side
(``allowed``, ``approved``, ``effective``; without a cloud, the last two are
``None``), and ``declared_problems``, ``plugin_problems`` and ``mcp_problems``
the tools that cannot run, each with its reason: ``GET /tools`` and ``edge tools
list`` show the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..protocol.openai import to_openai_tool
from .batch import call_batch
from .execute import Executor
from .registry import ToolResult, ToolSpec

if TYPE_CHECKING:
    from .runtimes.load import DeclaredTool

log = logging.getLogger(__name__)

Row = dict[str, Any]


def tool_rows(
    executor: Executor, approved: frozenset[str] | None, declared: Iterable[DeclaredTool] = ()
) -> list[Row]:
    """Every registered tool, in registry order: name, description, input_schema, source,
    ``allowed`` (the local policy), ``approved`` (the cloud, ``None`` without one) and
    ``effective`` (both; ``None`` without a cloud); a declared tool also has its
    ``directory`` and ``status`` "ok"."""
    where = {t.name: t for t in declared if t.problem is None}
    rows = []
    for spec in executor.registry:
        allowed = executor.policy.allows_tool(spec.name)
        row = spec.describe()
        row["allowed"] = allowed
        row["approved"] = None if approved is None else spec.name in approved
        row["effective"] = None if approved is None else allowed and spec.name in approved
        tool = where.get(spec.name)
        if tool is not None:
            row.update(directory=str(tool.directory), status="ok")
        rows.append(row)
    return rows


def declared_problems(declared: Iterable[DeclaredTool]) -> list[Row]:
    """The declared tools that cannot run: name, description, source, directory, status
    ("invalid") and the problem."""
    return [
        {
            "name": tool.name,
            "description": tool.manifest.description if tool.manifest is not None else "",
            "source": f"{tool.runtime or 'declared'}:{tool.directory.name}",
            "directory": str(tool.directory),
            "status": "invalid",
            "problem": tool.problem,
        }
        for tool in declared
        if tool.problem is not None
    ]


def plugin_problems(plugins: Iterable[Row]) -> list[Row]:
    """The plugins (``PluginRunners.info()`` entries) that are not running, as ``ID__*``."""
    return [
        {
            "name": f"{plugin['id']}__*",
            "description": plugin["description"],
            "source": f"plugin:{plugin['id']}",
            "directory": plugin["directory"],
            "status": plugin["status"],
            "problem": plugin["lastError"] or plugin["status"],
        }
        for plugin in plugins
        if plugin["status"] != "running"
    ]


def mcp_problems(servers: Iterable[Row]) -> list[Row]:
    """The MCP servers (``McpServers.info()`` entries) that offer no tool now, as
    ``SERVER__*``, with why: disabled, failing (the last error), not connected yet."""
    rows = []
    for server in servers:
        if server.get("toolNames"):
            continue
        if server["disabled"]:
            status, problem = "disabled", "disabled in mcp.json"
        elif server["status"] == "error":
            status, problem = "error", server["lastError"] or "cannot connect"
        elif server["status"] == "inactive":
            status, problem = "inactive", server["lastError"] or "not connected yet"
        else:
            status, problem = server["status"], "offers no tools"
        target = server.get("command") or [server.get("url")]
        rows.append({
            "name": f"{server['name']}__*",
            "description": " ".join(str(part) for part in target),
            "source": f"mcp:{server['name']}",
            "status": status,
            "problem": problem,
        })  # fmt: skip
    return rows


class ToolGate:
    """The cloud's approval for the live connection, applied with the local policy.

    ``declared`` (the declared tools found, valid or not) and ``unavailable`` (rows of
    the plugins and MCP servers that offer nothing now) only add to ``listing``.
    """

    def __init__(
        self,
        executor: Executor,
        *,
        declared: Sequence[DeclaredTool] = (),
        unavailable: Callable[[], list[Row]] = list,
    ) -> None:
        self.executor = executor
        self.approved: frozenset[str] = frozenset()
        self._declared = declared
        self._unavailable = unavailable

    def approve(self, tools: frozenset[str]) -> None:
        """The cloud's approval for this connection (it replaces any earlier one)."""
        self.approved = tools
        log.info(
            "cloud approved %d tools; effective: %s",
            len(tools),
            ", ".join(sorted(self.effective())) or "none",
        )

    def revoke(self) -> None:
        """No connection, no approval: every handshake brings its own."""
        self.approved = frozenset()

    def offered(self) -> list[ToolSpec]:
        """Registered tools the local policy offers the cloud, in registry order."""
        allows = self.executor.policy.allows_tool
        return [spec for spec in self.executor.registry if allows(spec.name)]

    def offer(self) -> list[dict[str, Any]]:
        """The offered tools as the capability report lists them."""
        return [
            {"name": s.name, "description": s.description, "input_schema": s.input_schema}
            for s in self.offered()
        ]

    def effective(self) -> frozenset[str]:
        """The cloud's approval ∩ the local policy ∩ what is registered."""
        approved = self.approved
        return frozenset(t for t in approved if self.executor.refusal(t, approved) is None)

    def info(self) -> dict[str, list[str]]:
        return {
            "approvedTools": sorted(self.approved),
            "effectiveTools": sorted(self.effective()),
        }

    def listing(self) -> list[Row]:
        """Every registered tool with ``allowed``, ``approved`` and ``effective``, then
        the tools that cannot run with their reasons (``GET /tools``)."""
        return [
            *tool_rows(self.executor, self.approved, self._declared),
            *declared_problems(self._declared),
            *self._unavailable(),
        ]

    def unknown_tool(self, name: str) -> str | None:
        """``None`` when ``name`` is registered, else the error saying so (with the
        closest name: "did you mean ...?")."""
        if name in self.executor.registry:
            return None
        return self.executor.registry.unknown(name)

    def openai_tools(self) -> list[dict[str, Any]]:
        """The effective tools in OpenAI function-calling form, in registry order."""
        effective = self.effective()
        return [
            to_openai_tool(s.name, s.description, s.input_schema)
            for s in self.executor.registry
            if s.name in effective
        ]

    async def call(self, tool: str, args: dict[str, Any]) -> ToolResult:
        """Run one call as the cloud would: its approval and the policy both apply."""
        return await self.executor.call(tool, args, approved=self.approved)

    async def call_batch(
        self,
        calls: list[tuple[str, dict[str, Any]] | ToolResult],
        concurrency: int,
        deadline: float | None = None,
    ) -> list[ToolResult]:
        """Run a batch of calls under the approval, ``concurrency`` at once, in order; an
        entry that is a result already (a malformed call's error) is kept (``call_batch``)."""
        return await call_batch(self.call, calls, concurrency=concurrency, deadline=deadline)
