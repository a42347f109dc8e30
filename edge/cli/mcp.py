"""``edge mcp add|list|test|remove``: the MCP servers in mcp.json.

``add`` and ``remove`` edit the file, then tell the running daemon (``POST
/mcp/reload``), which starts or stops the server at once; a daemon that cannot
take the file as it now is keeps its servers, and the command says why (exit 1).
Without a daemon there is nothing to tell."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .common import (
    ControlUnreachable,
    ParagraphFormatter,
    add_config_option,
    add_control_option,
    control_get,
    control_post,
    fail,
    load,
    plural,
    reachable,
    seconds,
)

if TYPE_CHECKING:
    from ..mcp.config import McpServerConfig

NAME: Final = "mcp"

#: Shown after the options in this command's --help.
EPILOG: Final = """\
examples:
  edge mcp add time -- uvx mcp-server-time
  edge mcp add files -- npx -y @modelcontextprotocol/server-filesystem ~/notes
  edge mcp add notes --url http://127.0.0.1:3001/mcp --header "Authorization=Bearer ..."
  edge mcp list
  edge mcp test time
"""


def split_argv(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """In ``edge mcp add NAME ... -- COMMAND ARGS...`` everything after ``--`` is the
    server's own command line, options included: keep it from argparse."""
    if argv[:2] == [NAME, "add"] and "--" in argv:
        cut = argv.index("--")
        return argv[:cut], {"server_command": argv[cut + 1 :]}
    return argv, {}


def add_parser(subparsers: Any) -> None:
    mcp = subparsers.add_parser(
        NAME,
        help="configure and check MCP servers (their tools become edge tools)",
        description="MCP servers listed in mcp.json (default: in the user config dir) are "
        "started by 'edge run'; their tools are offered to the cloud like the built-ins.",
        epilog=EPILOG,
        formatter_class=ParagraphFormatter,
    )
    actions = mcp.add_subparsers(dest="mcp_command", metavar="ACTION", required=True)
    ma = actions.add_parser(
        "add",
        help="add a server: NAME [OPTIONS] -- COMMAND ARGS... (stdio), or NAME --url URL",
        usage="edge mcp add NAME [OPTIONS] -- COMMAND [ARGS...]\n"
        "       edge mcp add NAME --url URL [--transport http|sse] [--header K=V] [OPTIONS]",
        description="Add an MCP server to mcp.json, then connect to it once to check it. "
        "For a stdio server, everything after -- is its command line.",
    )
    ma.add_argument("name", help="what the server is called; its tools are NAME__TOOL")
    ma.add_argument("--url", help="an HTTP server's endpoint (streamable HTTP or SSE)")
    ma.add_argument("--transport", choices=["http", "sse"], default="http", help="default http")
    ma.add_argument("--header", action="append", default=[], metavar="K=V", help="repeatable")
    ma.add_argument("--env", action="append", default=[], metavar="K=V", help="repeatable")
    ma.add_argument(
        "--pass-env", action="append", default=[], metavar="NAME",
        help="pass this variable of edge's environment through (repeatable)",
    )  # fmt: skip
    ma.add_argument("--timeout", type=seconds, help="seconds per call (default 60)")
    ma.add_argument("--replace", action="store_true", help="replace a server of that name")
    ma.add_argument("--no-test", action="store_true", help="do not connect to check it")
    ma.set_defaults(handler=handle_add, server_command=[])
    ml = actions.add_parser("list", help="the configured servers (with live status if edge runs)")
    ml.add_argument("--json", action="store_true", help="print the raw JSON")
    ml.add_argument(
        "--tools",
        action="store_true",
        help="also each tool's calls, failures, average and p95 latency (from the running edge)",
    )
    ml.set_defaults(handler=handle_list)
    mt = actions.add_parser("test", help="connect to a server, list its tools, time it")
    mt.add_argument("name", help="the server's name in mcp.json (see edge mcp list)")
    mt.add_argument("--timeout", type=seconds, default=30.0, help="seconds (default 30)")
    mt.set_defaults(handler=handle_test)
    mr = actions.add_parser(
        "remove", help="remove a server from mcp.json (a running edge stops it at once)"
    )
    mr.add_argument("name", help="the server's name in mcp.json (see edge mcp list)")
    mr.set_defaults(handler=handle_remove)
    mf = actions.add_parser(
        "refresh",
        help="have the running edge list a server's tools again now, past its cache",
        description="The running edge keeps each server's tool list for its toolsTtl "
        "(default 300 s) and lists it again on list_changed; this lists it now.",
    )
    mf.add_argument(
        "name", nargs="?", help="the server's name (default: every server)", metavar="NAME"
    )
    mf.add_argument("--timeout", type=seconds, default=30.0, help="seconds (default 30)")
    add_control_option(mf)
    mf.set_defaults(handler=handle_refresh)
    for p in (ma, ml, mt, mr):
        p.add_argument("--file", type=Path, metavar="FILE", help="the servers file (mcp.json)")
        add_config_option(p, help="TOML config naming it")
    add_control_option(ml)
    for p in (ma, mr):
        add_control_option(p, default=None)  # _daemon_control: the config these commands load


def _mcp_file(args: argparse.Namespace) -> Path:
    if args.file is not None:
        return Path(args.file).expanduser()
    path = load(args, no_control=True).mcp_file
    assert path is not None
    return path


#: Seconds a daemon may take to apply a reload (stopping a server waits for its process).
RELOAD_TIMEOUT: Final = 60.0


def _daemon_control(args: argparse.Namespace) -> str:
    """Where the daemon to tell listens: ``--control``, else the config's ``[control]
    listen`` (a wildcard address reached on loopback)."""
    if args.control is not None:
        return str(args.control)
    return reachable(load(args, force_bind=True).control)


def _tell_daemon(args: argparse.Namespace, path: Path) -> dict[str, Any] | None:
    """Have the running daemon read ``path`` again (``POST /mcp/reload``): its report;
    ``None`` when there is no daemon or it reads another file (said in one note).

    Raises:
        _Kept: the daemon cannot take the file as it is now, and keeps its servers.
    """
    from .common import control_post

    control = _daemon_control(args)
    try:
        status, answer = control_post(
            control, "/mcp/reload", {"file": str(path)}, timeout=RELOAD_TIMEOUT
        )
    except ControlUnreachable:
        return None  # no daemon: it reads the file when it starts
    if status == 409:
        print(f"note: {answer.get('error')}: it was not told")
        return None
    if status != 200 or not isinstance(answer, dict):
        error = answer.get("error", answer) if isinstance(answer, dict) else answer
        if status == 404:  # a daemon without the route: it reads the file when it starts
            return None
        raise _Kept(str(error))
    return answer


class _Kept(Exception):
    """The running daemon did not take the file: it keeps its servers (the message: why)."""


def _changes(report: dict[str, Any]) -> str:
    """What a reload changed, in words (``added a; removed b``); empty when nothing."""
    steps = [
        f"{what} {', '.join(report.get(what) or [])}"
        for what in ("added", "removed", "restarted")
        if report.get(what)
    ]
    return "; ".join(steps)


def _servers(args: argparse.Namespace) -> tuple[Path, dict[str, McpServerConfig]]:
    from ..mcp.config import load_servers

    path = _mcp_file(args)
    return path, {s.name: s for s in load_servers(path)}


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} {item!r} is not KEY=VALUE")
        out[key] = value
    return out


def _probe(server: McpServerConfig, within: float) -> bool:
    """Connect to ``server`` once and print how it went; whether it answered."""
    import trio

    from ..mcp.session import probe_server

    report = trio.run(lambda: probe_server(server, within=within))
    if not report["ok"]:
        print(f"{report['name']}: cannot connect: {report['error']} ({report['ms']:.0f} ms)")
        return False
    info = report["server"]
    print(
        f"{report['name']}: {info['name']} {info['version']} "
        f"(MCP {report['protocolVersion']}), connected in {report['connectMs']:.0f} ms, "
        f"tools listed in {report['listToolsMs']:.0f} ms"
    )
    print(f"  {plural(len(report['tools']), 'tool')}: {', '.join(report['tools'])}")
    return True


def handle_add(args: argparse.Namespace) -> int:
    from ..mcp.config import parse_server, save_server

    path = _mcp_file(args)
    command = list(args.server_command)
    if command and args.url:
        return fail("give either -- COMMAND ARGS... or --url, not both")
    if not command and not args.url:
        return fail("give the server's command after -- (stdio) or --url URL")
    try:
        entry: dict[str, Any] = {}
        if command:
            entry = {"command": command[0], "args": command[1:]}
            if args.env:
                entry["env"] = _pairs(args.env, "--env")
            if args.pass_env:
                entry["envPassthrough"] = args.pass_env
        else:
            entry = {"url": args.url, "transport": args.transport}
            if args.header:
                entry["headers"] = _pairs(args.header, "--header")
        if args.timeout is not None:
            entry["timeout"] = args.timeout
    except ValueError as exc:
        return fail(str(exc))
    server = parse_server(args.name, entry)
    save_server(path, server, replace=args.replace)
    print(f"added {server.name} to {path}")
    try:
        report = _tell_daemon(args, path)
    except _Kept as exc:
        return fail(f"the running edge kept its servers: {exc}", 1)
    if report is not None:
        changed = _changes(report)
        if changed:
            print(f"the running edge: {changed}")
        elif server.name in report.get("servers", []):
            print(f"the running edge runs {server.name}")  # it had seen the file already
    if args.no_test:
        return 0
    if not _probe(server, within=30.0):
        print("  (kept in the file: edge run will keep trying it)")
        return 1
    return 0


def handle_remove(args: argparse.Namespace) -> int:
    from ..mcp.config import remove_server

    path = _mcp_file(args)
    remove_server(path, args.name)
    print(f"removed {args.name} from {path}")
    try:
        report = _tell_daemon(args, path)
    except _Kept as exc:
        return fail(f"the running edge kept its servers: {exc}", 1)
    changed = _changes(report) if report is not None else ""
    if changed:
        print(f"the running edge: {changed}")
    return 0


def handle_test(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    path, servers = _servers(args)
    found = servers.get(args.name)
    if found is None:
        raise ConfigError(f"no MCP server named {args.name!r} in {path}")
    return 0 if _probe(found, within=args.timeout) else 1


def _live(control: str) -> dict[str, dict[str, Any]]:
    """Servers as a running daemon reports them; empty when none answers."""
    try:
        [body] = control_get(control, "/mcp/servers", timeout=2.0)
        rows = body["servers"]
    except (ControlUnreachable, ValueError, KeyError):
        return {}
    return {row["name"]: row for row in rows}


def handle_refresh(args: argparse.Namespace) -> int:
    from urllib.parse import urlencode

    query = {"timeout": f"{args.timeout:g}", **({"server": args.name} if args.name else {})}
    try:
        status, answer = control_post(
            args.control, f"/mcp/refresh?{urlencode(query)}", timeout=args.timeout + 10
        )
    except ControlUnreachable as exc:
        return fail(f"{exc}: the tool lists are a running edge's (start one: edge run)", code=1)
    if status == 404 or not isinstance(answer, dict) or "servers" not in answer:
        message = answer.get("error") if isinstance(answer, dict) else None
        return fail(message or f"what answers on {args.control} is not an edge daemon", code=1)
    for server in answer["servers"]:
        if server.get("ok"):
            tools = server.get("tools") or []
            listed = f": {', '.join(tools)}" if tools else ""
            print(f"{server['name']}: {plural(len(tools), 'tool')}{listed}")
        else:
            print(f"{server['name']}: cannot list its tools: {server.get('error')}")
    if not answer["servers"]:
        print("the running edge has no MCP servers")
    return 0 if answer.get("ok") else 1


def handle_list(args: argparse.Namespace) -> int:
    path, servers = _servers(args)
    live = _live(args.control)
    if args.json:
        rows = [live.get(name, s.describe()) for name, s in servers.items()]
        print(json.dumps(rows, indent=2))
        return 0
    if not servers:
        print(f"no MCP servers in {path} (add one with: edge mcp add NAME -- COMMAND ...)")
        return 0
    for name, s in servers.items():
        target = " ".join(s.describe().get("command") or [s.url or ""])
        state = live.get(name)
        status = (
            (f"{state['status']}, {plural(state['tools'], 'tool')}" if state else "not running")
            if live
            else ("disabled" if s.disabled else "")
        )
        print(f"{name:<16} {s.transport:<5} {target}  {status}".rstrip())
        if state and state.get("lastError") and state["status"] != "active":
            print(f"{'':<16} last error: {state['lastError']}")
        if args.tools and state:
            for line in tool_lines(state.get("toolMetrics") or {}):
                print(f"{'':<16} {line}")
    if not live:
        note = " and per-tool figures" if args.tools else ""
        print(f"(edge is not running here: statuses{note} are shown while 'edge run' is up)")
    return 0


def tool_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per tool of a server's ``toolMetrics``: calls, failures, average, p95."""
    if not metrics:
        return ["no tool called yet"]
    width = max(len(name) for name in metrics)
    lines = [f"{'tool':<{width}}  {'calls':>6}  {'failed':>6}  {'avg ms':>8}  {'p95 ms':>8}"]
    for name, m in sorted(metrics.items()):

        def ms(value: Any) -> str:
            return "-" if value is None else f"{float(value):.1f}"

        lines.append(
            f"{name:<{width}}  {int(m.get('calls') or 0):>6}  {int(m.get('failures') or 0):>6}  "
            f"{ms(m.get('avgMs')):>8}  {ms(m.get('p95Ms')):>8}"
        )
    return lines
