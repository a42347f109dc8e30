"""The ``node`` runtime: a JavaScript file run by Node.js, one process per call.

``node <entry>`` reads the call as one JSON line on stdin and prints its result
as one JSON object on stdout (``edge.tools.runtimes.stdio``). It runs in the
tool's own directory (so ``require("./lib")`` and relative data files work;
the user's workspace is in ``$EDGE_WORKSPACE``), with the basic environment
and the names its manifest lists, contained like a ``terminal`` command:
whatever it starts, detached children included, ends with the call.

A node tool runs with the user's own rights; only a wasm tool is sandboxed.
"""

from __future__ import annotations

import enum
import shutil
from typing import TYPE_CHECKING, Any

from ...errors import ToolError
from .base import entry_problem, run_stdio

if TYPE_CHECKING:
    from ..policy import Policy
    from ..registry import CallContext, ToolResult
    from .manifest import ToolManifest


class _Find(enum.Enum):
    ON_PATH = enum.auto()


class NodeRuntime:
    """Runs node tools with ``node`` (by default the one on ``PATH``; ``None``: not installed)."""

    kind = "node"

    def __init__(self, node: str | _Find | None = _Find.ON_PATH) -> None:
        self.node = shutil.which("node") if node is _Find.ON_PATH else node

    def validate(self, manifest: ToolManifest, policy: Policy) -> str | None:
        if self.node is None:
            return "node is not installed (not on PATH)"
        return entry_problem(manifest)

    async def run(
        self, manifest: ToolManifest, args: dict[str, Any], ctx: CallContext
    ) -> ToolResult:
        if self.node is None:
            raise ToolError(f"{manifest.name}: node is not installed (not on PATH)")
        return await run_stdio(manifest, [self.node, str(manifest.entry)], args, ctx)
