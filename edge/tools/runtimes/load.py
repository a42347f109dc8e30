"""Declared tools found in the tool directories: loaded, checked, and made registry tools.

Each immediate subdirectory of a tool directory that holds a ``tool.toml`` is
one tool. ``load_declared`` reads them all and never raises: a manifest that
does not load, a runtime this edge lacks, a problem its runtime's
``validate`` finds, or a name another tool already has, is a ``DeclaredTool``
with ``problem`` set. Those are shown (``edge tools list``, the capability
report's ``declaredTools``) and never registered; the valid ones become
``ToolSpec`` s (``tool_spec``) whose calls the runtime runs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ...errors import ConfigError
from ..registry import ToolSpec
from .manifest import TOOL_FILE, ToolManifest, load_manifest
from .native import NativeRuntime
from .node import NodeRuntime

if TYPE_CHECKING:
    from ..policy import Policy
    from .base import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeclaredTool:
    """One tool directory: its manifest when it loaded, and what keeps it from running."""

    directory: Path
    manifest: ToolManifest | None = None
    #: Why the tool is not offered, or ``None`` when it is valid.
    problem: str | None = None
    #: The manifest's ``runtime`` (``None`` when the manifest did not load).
    runtime: str | None = None

    @property
    def name(self) -> str:
        """The tool's name, or its directory's when the manifest did not load."""
        return self.manifest.name if self.manifest is not None else self.directory.name

    @property
    def status(self) -> Literal["ok", "invalid"]:
        return "ok" if self.problem is None else "invalid"


def build_runtimes() -> dict[str, Runtime]:
    """One runtime of each kind this edge has: node, native, and wasm when it is built in."""
    runtimes: dict[str, Runtime] = {"node": NodeRuntime(), "native": NativeRuntime()}
    if importlib.util.find_spec(f"{__package__}.wasm") is not None:
        try:
            from .wasm import WasmRuntime  # type: ignore[import-not-found, unused-ignore]
        except ImportError as exc:
            log.warning("no wasm runtime: %s", exc)
        else:
            runtimes["wasm"] = WasmRuntime()
    return runtimes


def load_declared(
    dirs: Iterable[Path],
    policy: Policy,
    runtimes: Mapping[str, Runtime],
    *,
    reserved: Container[str] = (),
) -> list[DeclaredTool]:
    """Every tool in ``dirs``, in order (each directory's tools sorted by name); never raises.

    Args:
        dirs: tool directories; one that does not exist holds no tools.
        policy: the local policy, for the runtimes' checks (grants inside its roots).
        runtimes: the runtime of each kind (``build_runtimes``).
        reserved: names already taken (the built-in tools); a declared tool with
            one of them is invalid, as is the second of two tools with one name.
    """
    tools: list[DeclaredTool] = []
    seen: set[str] = set()
    for parent in dirs:
        for directory in _tool_dirs(Path(parent)):
            try:
                real = os.path.realpath(directory)
                if real in seen:
                    continue
                seen.add(real)
                tool = _load_one(directory, policy, runtimes)
            except Exception as exc:  # whatever one directory holds, the others still load
                log.debug("cannot load the tool in %s", directory, exc_info=True)
                problem = f"cannot read its manifest: {type(exc).__name__}: {exc}"
                tool = DeclaredTool(directory, problem=problem)
            tools.append(tool)
    taken: dict[str, Path] = {}
    for i, tool in enumerate(tools):
        if tool.problem is not None:
            continue
        if tool.name in reserved:
            problem = f"the name {tool.name!r} is taken by a built-in tool"
        elif tool.name in taken:
            problem = f"the name {tool.name!r} is taken by the tool in {taken[tool.name]}"
        else:
            taken[tool.name] = tool.directory
            continue
        tools[i] = DeclaredTool(tool.directory, tool.manifest, problem, tool.runtime)
    return tools


def _tool_dirs(parent: Path) -> list[Path]:
    """The subdirectories of ``parent`` (``~`` expanded) holding a ``tool.toml``, sorted;
    none if it is unreadable or names an unknown ``~user``."""
    try:
        entries = sorted(parent.expanduser().iterdir())
    except (OSError, RuntimeError):
        return []
    found = []
    for entry in entries:
        try:
            if entry.is_dir() and (entry / TOOL_FILE).is_file():
                found.append(entry)
        except OSError:
            continue
    return found


def _load_one(directory: Path, policy: Policy, runtimes: Mapping[str, Runtime]) -> DeclaredTool:
    try:
        manifest = load_manifest(directory)
    except ConfigError as exc:
        return DeclaredTool(directory, problem=str(exc))
    kind = manifest.runtime
    runtime = runtimes.get(kind)
    if runtime is None:
        return DeclaredTool(directory, manifest, f"no {kind} runtime in this edge", kind)
    try:
        problem = runtime.validate(manifest, policy)
    except Exception as exc:  # a runtime's bug must not keep the other tools from loading
        log.exception("the %s runtime failed to check %s", kind, directory)
        problem = f"the {kind} runtime failed to check it: {type(exc).__name__}: {exc}"
    return DeclaredTool(directory, manifest, problem, kind)


def tool_spec(tool: DeclaredTool, runtime: Runtime) -> ToolSpec:
    """The registry's tool for a valid ``tool``; its calls go to ``runtime.run``."""
    manifest = tool.manifest
    if manifest is None or tool.problem is not None:
        raise ValueError(f"{tool.directory} is not a valid tool: {tool.problem}")
    return ToolSpec(
        name=manifest.name,
        description=manifest.description,
        input_schema=manifest.input_schema,
        run=partial(runtime.run, manifest),
        source=f"{runtime.kind}:{tool.directory.name}",
        timeout=manifest.timeout,
    )


def report(tools: Iterable[DeclaredTool]) -> list[dict[str, Any]]:
    """One ``{"name", "runtime", "directory", "status", "problem"}`` per tool, for people."""
    return [
        {
            "name": tool.name,
            "runtime": tool.runtime,
            "directory": str(tool.directory),
            "status": tool.status,
            "problem": tool.problem,
        }
        for tool in tools
    ]
