"""Which tools may run now: the local policy's offer and the cloud's approval, side by side.

The local policy decides what is *offered* (listed in the capability report);
the cloud approves a subset for each connection; a tool is *effective* when it
is registered, offered and approved. ``ToolGate`` holds the approval of the live
connection (the daemon owns it) and runs calls under it, one at a time or as a
batch, through the one executor.
"""

from __future__ import annotations

import logging
from typing import Any

from ..protocol.openai import to_openai_tool
from .batch import call_batch
from .execute import Executor
from .registry import ToolResult, ToolSpec

log = logging.getLogger(__name__)


class ToolGate:
    """The cloud's approval for the live connection, applied with the local policy."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.approved: frozenset[str] = frozenset()

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
        self, calls: list[tuple[str, dict[str, Any]]], concurrency: int
    ) -> list[ToolResult]:
        """Run a batch of calls under the approval, ``concurrency`` at once, in order."""
        return await call_batch(self.call, calls, concurrency=concurrency)
