"""``edge tools list|call|new``: the local tools, through the same executor as the cloud's
calls, and new declared tools (``tool.toml``) to start from."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .common import add_config_option, add_policy_options, fail, load

if TYPE_CHECKING:
    from ..config import Config
    from ..tools.execute import Executor
    from ..tools.runtimes import DeclaredTool

T = TypeVar("T")

#: The runtimes ``edge tools new`` writes (``edge.tools.runtimes.manifest.RUNTIMES``).
RUNTIMES: Final = ("node", "native", "wasm")

#: Shown after the options in ``edge tools new --help``.
NEW_EPILOG: Final = """\
examples:
  edge tools new --runtime node greet
  edge tools call greet --args '{"name": "Ada"}'
  edge tools new --runtime native --dir ~/my-tools resize
"""


def add_parser(subparsers: Any) -> None:
    tools = subparsers.add_parser(
        "tools", help="list, call or create tools locally (same path as the cloud's)"
    )
    actions = tools.add_subparsers(dest="tools_command", metavar="ACTION", required=True)
    tl = actions.add_parser(
        "list",
        help="the tools the local policy offers, and every declared tool with its problems "
        "(MCP tools: edge mcp list)",
    )
    add_policy_options(tl)
    tl.add_argument("--json", action="store_true", help="print names, descriptions and schemas")
    tl.set_defaults(handler=handle_list)
    tc = actions.add_parser(
        "call",
        help="run one tool call here and print its result as JSON",
        description="Run a tool through the same checks as a tunnel call (local policy, "
        "schema, timeout, truncation); the cloud's approval does not apply.",
    )
    tc.add_argument("name", help="tool name, e.g. terminal")
    tc.add_argument("--args", default="{}", metavar="JSON", help='e.g. \'{"command": "ls"}\'')
    add_policy_options(tc)
    tc.set_defaults(handler=handle_call)
    tn = actions.add_parser(
        "new",
        help="create a declared tool (node, native or wasm) that works at once",
        description="Write a small working tool (tool.toml, the entry, a README) into "
        "DIR/NAME, to edit into your own. See docs/tools.md for every tool.toml key.",
        epilog=NEW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tn.add_argument(
        "name", metavar="NAME", help="the tool's name (a letter, then letters, digits, _ or -)"
    )
    tn.add_argument("--runtime", required=True, choices=RUNTIMES, help="what runs the tool")
    tn.add_argument(
        "--dir", type=Path, metavar="DIR",
        help="where to create it (default: the first of [tools] dirs, ~/.config/edge/tools)",
    )
    add_config_option(tn)
    tn.set_defaults(handler=handle_new)


def _executor(config: Config, declared: list[DeclaredTool] | None = None) -> Executor:
    """The executor ``edge tools`` calls through: built-in and declared tools, as the daemon's.

    Every declared tool found, valid or not, is appended to ``declared`` when given.
    """
    from ..daemon import build_executor

    return build_executor(config, declared=declared)


#: Seconds ``edge tools`` waits for plugin runners to come up.
PLUGIN_START: Final = 30.0


def _with_plugins(
    config: Config,
    executor: Executor,
    body: Callable[[], Awaitable[T]],
    *,
    only: str | None = None,
) -> tuple[T, list[dict[str, Any]]]:
    """Run ``body`` with the plugins' runners up and their tools in ``executor``'s registry
    (``only``: just that plugin); returns what it returned and the plugins' statuses."""
    import sys
    from functools import partial

    import trio

    from ..nurseries.plugins import PluginRunners, serve_plugins
    from ..plugins.manifest import discover

    found = [f for f in discover(config.plugin_dirs) if only is None or f.id == only]
    if not found:
        return trio.run(body), []

    async def run() -> tuple[T, list[dict[str, Any]]]:
        async def call_tool(plugin: str, tool: str, call_args: dict[str, Any]) -> dict[str, Any]:
            return await executor.call(tool, call_args, approved=None)

        async with trio.open_nursery() as nursery:
            runners: PluginRunners = await nursery.start(
                partial(
                    serve_plugins,
                    executor.registry,
                    config.plugin_dirs,
                    call_tool=call_tool,
                    environ=executor.env,
                    shared=config.shared_runner,
                    spare=False,
                    only=None if only is None else {only},
                    processes=executor.processes,
                )
            )
            print(f"starting {len(found)} plugin(s)...", file=sys.stderr, flush=True)
            with trio.move_on_after(PLUGIN_START):
                await runners.settled.wait()
            try:
                return await body(), runners.info()
            finally:
                with trio.CancelScope(shield=True):
                    await runners.stop_all(0.5)
                nursery.cancel_scope.cancel()

    return trio.run(run)


def _listing(executor: Executor, declared: list[DeclaredTool]) -> list[dict[str, Any]]:
    """The offered tools (declared ones with their directory), then the invalid declared ones."""
    where = {t.name: t for t in declared if t.problem is None}
    rows: list[dict[str, Any]] = []
    for spec in executor.registry:
        if not executor.policy.allows_tool(spec.name):
            continue
        row = spec.describe()
        tool = where.get(spec.name)
        if tool is not None:
            row.update(directory=str(tool.directory), status="ok")
        rows.append(row)
    for tool in declared:
        if tool.problem is not None:
            rows.append({
                "name": tool.name,
                "description": tool.manifest.description if tool.manifest is not None else "",
                "source": f"{tool.runtime or 'declared'}:{tool.directory.name}",
                "directory": str(tool.directory),
                "status": "invalid",
                "problem": tool.problem,
            })  # fmt: skip
    return rows


def handle_list(args: argparse.Namespace) -> int:
    from .common import setup_logging

    setup_logging("ERROR")  # invalid tools are listed below, not logged
    config = load(args, no_control=True)
    declared: list[DeclaredTool] = []
    executor = _executor(config, declared)

    async def listing() -> list[dict[str, Any]]:
        return _listing(executor, declared)

    rows, plugins = _with_plugins(config, executor, listing)
    for plugin in plugins:
        if plugin["status"] != "running":
            rows.append({
                "name": f"{plugin['id']}__*",
                "description": plugin["description"],
                "source": f"plugin:{plugin['id']}",
                "directory": plugin["directory"],
                "status": plugin["status"],
                "problem": plugin["lastError"] or plugin["status"],
            })  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows) if rows else 0
    for row in rows:
        if row.get("status") not in (None, "ok"):
            state = str(row["status"]).upper()
            print(f"{row['name']:<{width}}  {state} ({row['source']}): {row['problem']}")
        elif row["source"] != "builtin":
            print(f"{row['name']:<{width}}  {row['description']}  [{row['source']}]")
        else:
            print(f"{row['name']:<{width}}  {row['description']}")
    return 0


def handle_call(args: argparse.Namespace) -> int:
    config = load(args, no_control=True)
    declared: list[DeclaredTool] = []
    executor = _executor(config, declared)
    try:
        call_args = json.loads(args.args)
    except ValueError as exc:
        return fail(f"--args is not valid JSON: {exc}")
    if not isinstance(call_args, dict):
        return fail("--args must be a JSON object")
    invalid = next(
        (t for t in declared if t.problem is not None and t.name == args.name), None
    )
    if invalid is not None and args.name not in executor.registry:
        result: dict[str, Any] = {"error": f"tool {args.name!r} is invalid: {invalid.problem}"}
    else:
        plugin, sep, _ = args.name.partition("__")

        async def call() -> dict[str, Any]:
            return await executor.call(args.name, call_args, approved=None)

        result, plugins = _with_plugins(config, executor, call, only=plugin if sep else "")
        down = next((p for p in plugins if p["id"] == plugin and p["status"] != "running"), None)
        if down is not None and args.name not in executor.registry:
            why = f": {down['lastError']}" if down["lastError"] else ""
            result = {"error": f"plugin {plugin} is {down['status']}{why}"}
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 1 if "error" in result else 0


def handle_new(args: argparse.Namespace) -> int:
    from ..tools.runtimes.skeleton import write_skeleton

    dirs = load(args, no_control=True).tool_dirs
    try:
        parent = dirs[0] if args.dir is None else args.dir.expanduser()
    except RuntimeError:  # Path.expanduser: a ~user not known here
        return fail(f"--dir {str(args.dir)!r}: cannot expand its `~`: no such user")
    directory = write_skeleton(args.runtime, args.name, parent)
    print(f"created {directory}")
    for path in sorted(directory.iterdir()):
        print(f"  {path.name}")
    example = "" if args.runtime == "wasm" else """ --args '{"name": "Ada"}'"""
    print(f"try it: edge tools call {args.name}{example}")
    if not any(_same(parent, d) for d in dirs):
        looked = ", ".join(map(str, dirs))
        print(f"note: edge looks for tools in {looked}; add {parent} to [tools] dirs in "
              "config.toml for edge to find this one")
    return 0


def _same(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()
