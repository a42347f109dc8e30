"""Declared tools: a directory with a ``tool.toml``, run by the node, native or wasm runtime.

Modules:
    manifest -- ``tool.toml`` read and checked: ``ToolManifest``, ``Grant``, ``load_manifest``
    stdio    -- the contract every runtime speaks: the call as a JSON line on stdin, the
                result as one JSON object on stdout
    base     -- ``Runtime``, the one interface of a runtime (validate, run), and the piped,
                contained process the node and native runtimes share
    node     -- ``NodeRuntime``: a JavaScript file run by ``node``
    native   -- ``NativeRuntime``: an executable run directly, args filled into its argv
    wasm     -- ``WasmRuntime``: a WASI command module run in wasmtime, a fresh store per
                call, grants as preopens, interrupted through a pooled engine's epoch
    load     -- the tool directories loaded (``load_declared``, never raising: problems are
                shown), the registry's ``ToolSpec`` s, the report, ``build_runtimes``
    skeleton -- ``edge tools new``: a tool of each runtime that works at once
"""

from .base import Runtime as Runtime
from .load import (
    DeclaredTool as DeclaredTool,
    build_runtimes as build_runtimes,
    load_declared as load_declared,
    report as report,
    tool_spec as tool_spec,
)
from .manifest import Grant as Grant, ToolManifest as ToolManifest, load_manifest as load_manifest
from .native import NativeRuntime as NativeRuntime
from .node import NodeRuntime as NodeRuntime
from .skeleton import write_skeleton as write_skeleton

__all__ = [
    "DeclaredTool", "Grant", "NativeRuntime", "NodeRuntime", "Runtime", "ToolManifest",
    "build_runtimes", "load_declared", "load_manifest", "report", "tool_spec", "write_skeleton",
]  # fmt: skip
