"""The ``native`` runtime: an executable file (compiled, or a script), one process per call.

The entry runs with the arguments of the manifest's ``argv`` template, each
``{key}`` replaced by the call's arg ``key`` (a string as it is, anything else
as its JSON text; no shell is involved, so nothing is re-split or expanded),
and reads the call as one JSON line on stdin (``edge.tools.runtimes.stdio``):
a tool may use either. It runs in its own directory with the basic
environment and the names its manifest lists, contained like a ``terminal``
command.

A native tool runs with the user's own rights; only a wasm tool is sandboxed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import ToolError
from .base import entry_problem, run_stdio
from .manifest import parse_template

if TYPE_CHECKING:
    from ..policy import Policy
    from ..registry import CallContext, ToolResult
    from .manifest import ToolManifest


class NativeRuntime:
    """Runs native tools: the entry itself, exec'd directly."""

    kind = "native"

    def validate(self, manifest: ToolManifest, policy: Policy) -> str | None:
        problem = entry_problem(manifest)
        if problem is not None:
            return problem
        if not os.access(manifest.entry, os.X_OK):
            shown = manifest.entry.relative_to(manifest.directory).as_posix()
            return f"entry {shown} is not executable (chmod +x {manifest.entry})"
        return None

    async def run(
        self, manifest: ToolManifest, args: dict[str, Any], ctx: CallContext
    ) -> ToolResult:
        argv = [str(manifest.entry), *fill_argv(manifest.name, manifest.argv, args)]
        return await run_stdio(manifest, argv, args, ctx)


def fill_argv(tool: str, template: Sequence[str], args: Mapping[str, Any]) -> list[str]:
    """``template`` with every ``{key}`` replaced by ``args[key]``.

    Raises:
        ToolError: a placeholder names an arg the call did not pass, or an
            argument would hold what a command line cannot (NUL, a lone surrogate).
    """
    filled = []
    for item in template:
        parts = []
        for literal, name in parse_template(item):
            parts.append(literal)
            if name is None:
                continue
            if name not in args:
                raise ToolError(f"{tool}: argument {item!r} needs the arg {name!r}, not given")
            value = args[name]
            parts.append(value if isinstance(value, str) else json.dumps(value))
        arg = "".join(parts)
        if "\x00" in arg:
            raise ToolError(f"{tool}: argument {item!r} would hold a NUL character")
        try:
            os.fsencode(arg)
        except UnicodeError:
            raise ToolError(f"{tool}: argument {item!r} is no valid text") from None
        filled.append(arg)
    return filled
