"""The shape of the package, checked by code: who may import whom, what each package exports."""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import edge
import edge.errors

ROOT = Path(edge.__file__).parent

#: Where the one-way rule allows importing the nurseries: the nurseries themselves, the
#: root that starts them, and the command line that runs them.
MAY_IMPORT_NURSERIES = ("nurseries/", "daemon.py", "cli/")


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        parts = ["edge", *rel.removesuffix(".py").split("/")]
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def imported(module: str, path: Path) -> Iterator[str]:
    """Every module name ``path`` imports, relative imports resolved, lazy imports included."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            yield name
            yield from (f"{name}.{alias.name}" for alias in node.names)


def test_nothing_below_the_nurseries_imports_them() -> None:
    offenders = [
        f"{module} imports {name}"
        for module, path in modules()
        if not path.relative_to(ROOT).as_posix().startswith(MAY_IMPORT_NURSERIES)
        for name in imported(module, path)
        if name == "edge.nurseries" or name.startswith("edge.nurseries.")
    ]
    assert offenders == []


def test_nothing_imports_the_daemon_or_the_cli_but_the_cli() -> None:
    offenders = [
        f"{module} imports {name}"
        for module, path in modules()
        if not module.startswith("edge.cli") and module != "edge.__main__"
        for name in imported(module, path)
        if name.startswith(("edge.daemon", "edge.cli"))
    ]
    assert offenders == []


def test_protocol_code_has_no_trio() -> None:
    offenders = [
        f"{module} imports {name}"
        for module, path in modules()
        if module.startswith("edge.protocol")
        for name in imported(module, path)
        if name.split(".")[0] in ("trio", "trio_websocket", "anyio")
    ]
    assert offenders == []


def error_classes() -> list[type[BaseException]]:
    return [
        obj
        for _, obj in inspect.getmembers(edge.errors, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == "edge.errors"
    ]


def raised_names() -> set[str]:
    """Names of the classes some module of edge (outside errors.py) raises."""
    names: set[str] = set()
    for _, path in modules():
        if path.name == "errors.py" and path.parent == ROOT:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(target, ast.Name):
                    names.add(target.id)
                elif isinstance(target, ast.Attribute):
                    names.add(target.attr)
    return names


def test_every_error_is_in_the_tree_and_drawn() -> None:
    doc = edge.errors.__doc__ or ""
    for cls in error_classes():
        assert issubclass(cls, edge.errors.EdgeError), cls
        assert re.search(rf"\b{cls.__name__}\b", doc), f"{cls.__name__} is not drawn in the tree"
    assert sorted(c.__name__ for c in error_classes()) == sorted(
        n for n in edge.errors.__all__ if n != "first_leaf"
    )


def test_every_error_is_raised_somewhere() -> None:
    raised = raised_names()
    for cls in error_classes():
        family = [c for c in error_classes() if issubclass(c, cls)]
        assert any(c.__name__ in raised for c in family), f"nothing raises {cls.__name__}"


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
def test_errors_copy_with_their_arguments(cls: type[BaseException]) -> None:
    # Classes with an __init__ of their own take a second argument (a close code, seconds).
    args = ("what went wrong", 1.5) if "__init__" in vars(cls) else ("what went wrong",)
    exc = cls(*args)
    twin = copy.copy(exc)
    assert type(twin) is cls
    assert twin.args == exc.args
    assert str(twin) == str(exc) == "what went wrong"


def readme_layout() -> str:
    readme = (ROOT.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def test_readme_layout_names_every_package_and_module() -> None:
    layout = readme_layout()
    missing = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if path.name in ("__init__.py", "__main__.py"):
            continue
        if len(rel.parts) == 1:
            if not re.search(rf"\b{re.escape(path.name)}\b", layout):
                missing.append(rel.as_posix())
        else:
            top = rel.parts[0]
            if f"{top}/" not in layout or not re.search(rf"\b{path.stem}\b", layout):
                missing.append(rel.as_posix())
    assert missing == [], "README's Layout section does not name these"


#: Each package's public names. A change here is a change of the package's surface.
EXPORTS = {
    "edge": ["__version__"],
    "edge.protocol": [
        "ApprovedTools", "Cancel", "Connected", "EXTENSION_METHODS", "Frame", "MAX_FRAME_CHARS",
        "MAX_OUTPUT_CHARS", "PROTOCOL_VERSION", "Ping", "ProtocolError", "Request", "Response",
        "ToolCall", "Unknown", "capability_report",
        "encode", "error_result", "invalid_request", "ok_result", "parse_frame", "pong",
        "progress_notification", "tool_response", "truncate_result",
    ],
    "edge.net": ["backoff", "errors", "wsclient", "wslink"],
    "edge.tools": [
        "audit", "batch", "beneath", "builtin", "contain", "execute", "gate", "leftovers", "orphans",
        "policy", "process", "procfs", "quickcheck", "registry", "runtimes", "walk",
    ],
    "edge.tools.builtin": ["BUILTIN_TOOLS"],
    "edge.tools.runtimes": [
        "DeclaredTool", "Grant", "NativeRuntime", "NodeRuntime", "Runtime", "ToolManifest",
        "build_runtimes", "load_declared", "load_manifest", "report", "tool_spec", "write_skeleton",
    ],
    "edge.plugins": ["host", "ipc", "manifest", "runner", "skeleton"],
    "edge.nurseries": [
        "captures", "connection", "failures", "journal", "mcp", "outbox", "plugins", "tunnel",
        "updates", "workers",
    ],
    "edge.mcp": [
        "McpServer", "McpServerConfig", "McpSession", "Progress", "Status", "Timing", "ToolNames",
        "describe_failure", "fetch_tools", "load_servers", "map_call_result", "open_session",
        "parse_server", "probe_server", "remove_server", "save_server",
    ],
    "edge.capture": ["capture", "recording", "sources", "uplink"],
    "edge.control": [
        "AgentsControl", "AskControl", "CallsControl", "ControlTargets", "McpControl",
        "PluginsControl",
        "RecordControl", "ScheduleControl",
        "ToolsControl", "TunnelControl", "UpdateControl",
        "build_app", "serve_control",
    ],
    "edge.gateway": ["Answer", "GatewayClient", "converse", "short_args"],
    "edge.service": ["backends", "launchd", "manage", "systemd"],
    "edge.update": ["fetch", "install", "manifest", "steps"],
    "edge.cli": ["main"],
    "edge.dev": ["asr", "cloud", "gateway"],
    "edge.agents": ["a2a", "identity", "relay", "tasks", "token"],
    "edge.scheduler": [
        "MIGRATION", "CatchUp", "MissedPolicy", "RunRow", "RunTool", "Scheduler", "SystemClock",
        "TaskRow", "Timetable", "VirtualClock", "WallClock", "catch_up", "cron", "default_grace",
        "every", "once", "parse_at", "parse_duration", "serve_scheduler",
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_package_exports(name: str) -> None:
    package = importlib.import_module(name)
    assert sorted(package.__all__) == sorted(EXPORTS[name])
    for public in package.__all__:
        if not hasattr(package, public):
            importlib.import_module(f"{name}.{public}")  # a submodule
        assert hasattr(package, public), f"{name}.{public}"


def test_every_package_is_pinned_and_lists_its_modules() -> None:
    for init in sorted(ROOT.rglob("__init__.py")):
        rel = init.parent.relative_to(ROOT.parent).as_posix()
        name = rel.replace("/", ".")
        assert name in EXPORTS, f"{name} has no pinned exports"
        doc = importlib.import_module(name).__doc__ or ""
        for module in sorted(init.parent.glob("*.py")):
            if module.stem not in ("__init__", "__main__"):
                assert re.search(rf"\b{module.stem}\b", doc), f"{name}'s docstring omits {module.stem}"
        for sub in sorted(init.parent.glob("*/__init__.py")):
            assert re.search(rf"\b{sub.parent.name}\b", doc), f"{name}'s docstring omits {sub.parent.name}"
