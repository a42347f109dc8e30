"""``edge tools list|call|new``: every tool, through the running daemon when one answers
(``GET /tools``, ``POST /tools/call`` with the local key), else here through the same
executor as the cloud's calls, with just the plugin runners and MCP servers needed started
for the command; and new declared tools (``tool.toml``) to start from."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .common import (
    ParagraphFormatter,
    add_config_option,
    add_control_option,
    add_policy_options,
    fail,
    load,
    plural,
    progress,
    reachable,
)

if TYPE_CHECKING:
    from ..config import Config
    from ..mcp.config import McpServerConfig
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
        "tools",
        help="list, call or create tools (through the running daemon, else here)",
    )
    actions = tools.add_subparsers(dest="tools_command", metavar="ACTION", required=True)
    tl = actions.add_parser(
        "list",
        help="every tool: built-in, MCP, declared, plugin; allowed, approved, effective",
        description="List every tool with its source and what decides whether it runs: "
        "allowed (the local policy), approved (the cloud, on the live connection) and "
        "effective (both). Asked of the running daemon when one answers; else listed here, "
        "with the MCP servers of mcp.json and the plugins started just for the listing "
        "(approved and effective then show '-'). Tools that cannot run are listed with "
        "the reason. --workspace, --allow-tool and --root describe another policy: with "
        "them the listing is made here.",
    )
    add_policy_options(tl)
    _add_where_options(tl)
    tl.add_argument("--json", action="store_true", help="print names, descriptions and schemas")
    tl.set_defaults(handler=handle_list)
    tc = actions.add_parser(
        "call",
        help="run one tool call and print its result as JSON",
        description="Run a tool through the same checks as a tunnel call (local policy, "
        "schema, timeout, truncation); the cloud's approval does not apply. With a running "
        "daemon the call runs there (on its workers, with its MCP servers and plugins); "
        "else here, starting just what the tool needs: its MCP server (SERVER__TOOL) or "
        "its plugin (PLUGIN__TOOL). --workspace, --allow-tool and --root run it here.",
    )
    tc.add_argument("name", help="tool name, e.g. terminal, time__get_current_time")
    tc.add_argument("--args", default="{}", metavar="JSON", help='e.g. \'{"command": "ls"}\'')
    add_policy_options(tc)
    _add_where_options(tc)
    tc.set_defaults(handler=handle_call)
    tn = actions.add_parser(
        "new",
        help="create a declared tool (node, native or wasm) that works at once",
        description="Write a small working tool (tool.toml, the entry, a README) into "
        "DIR/NAME, to edit into your own. See docs/tools.md for every tool.toml key.",
        epilog=NEW_EPILOG,
        formatter_class=ParagraphFormatter,
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


def _add_where_options(parser: argparse.ArgumentParser) -> None:
    add_control_option(parser, default=None)  # _control_of: the config this command loads
    parser.add_argument(
        "--local", action="store_true", help="do it here even when a daemon runs"
    )


# --- where: the daemon or here ----------------------------------------------------------

#: Seconds to wait for a daemon to accept the connection (then the command runs here).
CONNECT_TIMEOUT: Final = 3.0
#: Seconds ``GET /tools`` may take.
LIST_TIMEOUT: Final = 10.0


def _config(args: argparse.Namespace) -> Config:
    # force_bind: this command only connects; a wide listen is `edge run`'s to refuse.
    return load(args, force_bind=True)


def _control_of(args: argparse.Namespace, config: Config) -> str:
    """``HOST:PORT`` of the daemon to ask: ``--control``, else where ``edge run`` with
    this config listens (a wildcard address is reached on loopback)."""
    if args.control is not None:
        return str(args.control)
    return reachable(config.control)


def _here_only(args: argparse.Namespace) -> bool:
    """Whether the command runs here: ``--local``, or a policy given on the command line
    (the daemon's is its own)."""
    return bool(args.local or args.workspace or args.allow_tools or args.roots)


def _daemon_tools(control: str) -> list[dict[str, Any]] | None:
    """The daemon's ``GET /tools`` rows; ``None`` when no daemon (with that route) answers."""
    from .common import ControlUnreachable, control_get

    try:
        (body,) = control_get(control, "/tools", timeout=LIST_TIMEOUT)
    except (ControlUnreachable, ValueError):
        return None
    rows = body.get("tools") if isinstance(body, dict) else None
    return rows if isinstance(rows, list) else None


def _daemon_call(
    control: str, state_dir: Path | None, name: str, call_args: dict[str, Any]
) -> tuple[int, dict[str, Any]] | None:
    """``POST /tools/call`` to the daemon: (status, answer); ``None`` when no daemon takes
    the connection, or it has no such route (the call then runs here).

    Raises:
        ControlUnreachable: the daemon took the call but the connection broke: it is not
            run again here, where it might do twice what it did.
    """
    import httpx

    from .common import ControlUnreachable, control_url, key_headers

    # The call may take as long as its tool's timeout: no limit on the answer.
    timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT)
    try:
        with httpx.Client(base_url=control_url(control), timeout=timeout) as client:
            reply = client.post(
                "/tools/call",
                json={"name": name, "args": call_args},
                headers=key_headers(control, state_dir),
            )
    except (httpx.ConnectError, httpx.ConnectTimeout):
        return None
    except httpx.HTTPError as exc:
        raise ControlUnreachable(
            f"the edge daemon on {control} did not answer the call ({exc.__class__.__name__})"
        ) from exc
    try:
        answer = reply.json()
    except ValueError:
        answer = {"error": reply.text[:500]}
    if not isinstance(answer, dict):
        answer = {"error": str(answer)[:500]}
    missing_route = reply.status_code in (404, 405) and not str(
        answer.get("error", "")
    ).startswith("unknown tool")
    return None if missing_route else (reply.status_code, answer)


# --- here: the executor, and what a command needs started -------------------------------


def _executor(config: Config, declared: list[DeclaredTool] | None = None) -> Executor:
    """The executor ``edge tools`` calls through: built-in and declared tools, as the daemon's.

    Every declared tool found, valid or not, is appended to ``declared`` when given.
    """
    from ..daemon import build_executor

    return build_executor(config, declared=declared)


#: Seconds ``edge tools`` waits for plugin runners and MCP servers to come up (or fail).
START_WITHIN: Final = 30.0


def _mcp_servers(config: Config) -> tuple[list[McpServerConfig], str | None]:
    """The servers of ``config``'s mcp.json, and why there are none when it does not load."""
    from ..errors import ConfigError
    from ..mcp.config import load_servers

    if config.mcp_file is None:
        return [], None
    try:
        return load_servers(config.mcp_file), None
    except ConfigError as exc:
        return [], str(exc)


def _with_started(
    config: Config,
    executor: Executor,
    body: Callable[[], Awaitable[T]],
    *,
    plugins: str | None = None,
    servers: list[McpServerConfig] | None = None,
) -> tuple[T, list[dict[str, Any]], list[dict[str, Any]]]:
    """Run ``body`` with plugin runners and MCP servers up (started in parallel, given
    ``START_WITHIN`` seconds to connect or fail) and their tools in ``executor``'s
    registry, then stop them; returns what it returned, the plugins' and the servers'
    statuses (``PluginRunners.info()``, ``McpServers.info()``).

    ``plugins``: ``None`` every plugin, ``""`` none, else that plugin only.
    """
    import trio

    from ..plugins.manifest import discover

    found = [f for f in discover(config.plugin_dirs) if plugins is None or f.id == plugins]
    servers = servers or []
    if not found and not servers:
        return trio.run(body), [], []

    # Only now: importing the nurseries (the plugin host, the MCP clients) takes a while.
    from functools import partial

    from ..nurseries.mcp import McpServers, serve_mcp
    from ..nurseries.plugins import PluginRunners, serve_plugins

    async def run() -> tuple[T, list[dict[str, Any]], list[dict[str, Any]]]:
        async def call_tool(plugin: str, tool: str, call_args: dict[str, Any]) -> dict[str, Any]:
            return await executor.call(tool, call_args, approved=None)

        async with trio.open_nursery() as nursery:
            runners: PluginRunners | None = None
            mcp: McpServers | None = None
            if found:
                runners = await nursery.start(
                    partial(
                        serve_plugins,
                        executor.registry,
                        config.plugin_dirs,
                        call_tool=call_tool,
                        environ=executor.env,
                        shared=config.shared_runner,
                        spare=False,
                        only=None if plugins is None else {plugins},
                        processes=executor.processes,
                    )
                )
            if servers:
                mcp = await nursery.start(partial(serve_mcp, executor.registry, servers))
            counts = ((len(servers), "MCP server"), (len(found), "plugin"))
            starting = [plural(n, what) for n, what in counts if n]
            progress(f"starting {' and '.join(starting)}...")
            with trio.move_on_after(START_WITHIN):
                async with trio.open_nursery() as waiting:
                    if runners is not None:
                        waiting.start_soon(runners.settled.wait)
                    if mcp is not None:
                        waiting.start_soon(mcp.wait_settled)
            try:
                return (
                    await body(),
                    runners.info() if runners is not None else [],
                    mcp.info() if mcp is not None else [],
                )
            finally:
                with trio.CancelScope(shield=True):
                    if runners is not None:
                        await runners.stop_all(0.5)
                nursery.cancel_scope.cancel()

    return trio.run(run)


def _with_plugins(
    config: Config,
    executor: Executor,
    body: Callable[[], Awaitable[T]],
    *,
    only: str | None = None,
) -> tuple[T, list[dict[str, Any]]]:
    """``_with_started`` with the plugins alone (``only``: just that one), as ``edge ask
    --offline`` runs; what ``body`` returned and the plugins' statuses."""
    result, plugins, _ = _with_started(config, executor, body, plugins=only)
    return result, plugins


# --- edge tools list --------------------------------------------------------------------


def handle_list(args: argparse.Namespace) -> int:
    from .common import setup_logging

    setup_logging("ERROR")  # what cannot run is listed below, not logged
    config = _config(args)
    control = _control_of(args, config)
    here = _here_only(args)
    rows = None if here else _daemon_tools(control)
    if rows is not None:
        note = f"(from the running edge on {control})"
    else:
        rows = _list_here(config)
        where = "listed here" if here else f"no edge daemon answers on {control}: listed here"
        note = (
            f"({where}; approval comes from the cloud on a live connection, so approved "
            "and effective show -)"
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _print_rows(rows)
    print(note)
    return 0


def _list_here(config: Config) -> list[dict[str, Any]]:
    """Every tool here: built-in, declared, plugin and MCP tools (their servers and
    plugins started for it), then what cannot run, with the reason."""
    from ..tools.gate import declared_problems, mcp_problems, plugin_problems, tool_rows

    declared: list[DeclaredTool] = []
    executor = _executor(config, declared)
    servers, broken = _mcp_servers(config)

    async def listing() -> list[dict[str, Any]]:
        return tool_rows(executor, None, declared)

    rows, plugins, started = _with_started(config, executor, listing, servers=servers)
    rows += declared_problems(declared) + plugin_problems(plugins) + mcp_problems(started)
    if broken is not None:
        rows.append({
            "name": "mcp.json", "description": "", "source": "mcp", "status": "invalid",
            "problem": broken,
        })  # fmt: skip
    return rows


def _yes(value: object) -> str:
    return "-" if value is None else "yes" if value else "no"


def _print_rows(rows: list[dict[str, Any]]) -> None:
    """The rows as columns: name, source, allowed, approved, effective, description; a
    tool that cannot run shows its status and problem instead."""
    import shutil
    import sys

    if not rows:
        print("no tools")
        return
    name_w = max(len("NAME"), *(len(str(row["name"])) for row in rows))
    source_w = max(len("SOURCE"), *(len(str(row["source"])) for row in rows))
    # Cut long descriptions to the terminal's width (120 columns when piped): --json has all.
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 120
    print(f"{'NAME':<{name_w}}  {'SOURCE':<{source_w}}  ALLOWED  APPROVED  EFFECTIVE  DESCRIPTION")
    for row in rows:
        lead = f"{row['name']:<{name_w}}  {row['source']:<{source_w}}  "
        if row.get("status") not in (None, "ok"):
            print(f"{lead}{str(row['status']).upper()}: {row.get('problem') or ''}")
            continue
        description = (str(row.get("description") or "").splitlines() or [""])[0]
        line = (
            f"{lead}{_yes(row.get('allowed')):<7}  {_yes(row.get('approved')):<8}  "
            f"{_yes(row.get('effective')):<9}  {description}"
        ).rstrip()
        if len(line) > width:
            line = line[: max(width - 1, len(lead) + 30)] + "…"
        print(line)


# --- edge tools call --------------------------------------------------------------------


def handle_call(args: argparse.Namespace) -> int:
    from .common import setup_logging

    setup_logging("ERROR")  # a server or plugin that does not start is the result's error
    try:
        call_args = json.loads(args.args)
    except ValueError as exc:
        return fail(f"--args is not valid JSON: {exc}")
    if not isinstance(call_args, dict):
        return fail("--args must be a JSON object")
    config = _config(args)
    if not _here_only(args):
        from .common import ControlUnreachable

        control = _control_of(args, config)
        try:
            answered = _daemon_call(control, config.state_dir, args.name, call_args)
        except ControlUnreachable as exc:
            return fail(str(exc), 1)
        if answered is not None:
            status, result = answered
            if status == 403:
                return fail(
                    f"the edge daemon on {control} refused the call: {result.get('error')} "
                    "(or run the tool here: --local)",
                    1,
                )
            if status not in (200, 404):
                return fail(f"the edge daemon on {control}: {result.get('error', result)}", 1)
            return _print_result(result)
    return _print_result(_call_here(config, args.name, call_args))


def _print_result(result: dict[str, Any]) -> int:
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 1 if "error" in result else 0


def _call_here(config: Config, name: str, call_args: dict[str, Any]) -> dict[str, Any]:
    """Run ``name`` here, starting just what it needs: its plugin's runner, its MCP server."""
    from ..mcp.names import may_belong_to

    declared: list[DeclaredTool] = []
    executor = _executor(config, declared)
    invalid = next((t for t in declared if t.problem is not None and t.name == name), None)
    if invalid is not None and name not in executor.registry:
        return {"error": f"tool {name!r} is invalid: {invalid.problem}"}
    plugin, servers, broken = "", [], None
    if name not in executor.registry:
        prefix, sep, _ = name.partition("__")
        plugin = prefix if sep else ""
        every, broken = _mcp_servers(config)
        servers = [s for s in every if may_belong_to(s.name, name)]

    async def call() -> tuple[dict[str, Any] | None, str]:
        if name not in executor.registry:  # what it is not, while all that started is up
            return None, executor.registry.unknown(name)
        return await executor.call(name, call_args, approved=None), ""

    (result, unknown), plugins, started = _with_started(
        config, executor, call, plugins=plugin, servers=servers
    )
    if result is not None:
        return result
    down = next((p for p in plugins if p["id"] == plugin and p["status"] != "running"), None)
    if down is not None:
        why = f": {down['lastError']}" if down["lastError"] else ""
        return {"error": f"plugin {plugin} is {down['status']}{why}"}
    for server in started:
        if server["disabled"]:
            return {"error": f"MCP server {server['name']!r} is disabled in mcp.json"}
        if server["status"] == "error":
            why = server["lastError"] or "it cannot be reached"
            return {"error": f"MCP server {server['name']!r} did not start: {why}"}
        if not server["toolNames"]:
            return {
                "error": f"MCP server {server['name']!r} did not answer within "
                f"{START_WITHIN:g} s"
            }
    if broken is not None:
        unknown += f" (MCP servers not looked at: {broken})"
    return {"error": unknown}


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
