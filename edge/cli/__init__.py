"""The ``edge`` command.

Imports stay inside the sub-commands so that ``edge --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import first_leaf

DESCRIPTION = """\
edge is the cloud brain's pair of hands on this machine: it keeps a WebSocket
tunnel to the cloud, runs the tool calls the cloud sends (within what you
allow here), and serves a small control API on 127.0.0.1 for the cloud's web
page and for this CLI. Without a cloud it keeps running, autonomous.
"""

RUN_EPILOG = """\
The token comes from --token-file or the EDGE_TOKEN environment variable, never
from the command line (other users can read command lines). Without --cloud the
daemon waits for the cloud's web page to POST a token to /tunnel/activate.

examples:
  edge run
  EDGE_TOKEN=... edge run --cloud wss://cloud.example/edge/tunnel
  edge run --cloud ws://127.0.0.1:8765/tunnel --token-file tok --workspace ~/w --no-control
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description=DESCRIPTION,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the daemon in the foreground (Ctrl-C stops it)",
        allow_abbrev=False,
        description="Run the edge daemon in the foreground.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--cloud", metavar="URL", help="the cloud's tunnel URL (ws:// or wss://)")
    run.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="file holding the cloud token (else $EDGE_TOKEN)",
    )
    _add_common(run)
    run.add_argument(
        "--control",
        metavar="HOST:PORT",
        help="where the control API listens (default 127.0.0.1:8660)",
    )
    run.add_argument("--no-control", action="store_true", help="do not serve the control API")
    run.add_argument(
        "--force-bind",
        action="store_true",
        help="allow the control API on a non-loopback address (unsafe)",
    )
    run.add_argument(
        "--max-calls", type=int, metavar="N", help="tool calls running at once (default 64)"
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"],
        help="default INFO",
    )

    status = sub.add_parser("status", help="ask the running daemon how it is")
    status.add_argument(
        "--control",
        metavar="HOST:PORT",
        default="127.0.0.1:8660",
        help="the daemon's control API (default 127.0.0.1:8660)",
    )
    status.add_argument("--json", action="store_true", help="print the raw JSON")

    tools = sub.add_parser("tools", help="list or call tools locally (same path as the cloud's)")
    tools_sub = tools.add_subparsers(dest="tools_command", metavar="ACTION", required=True)
    tl = tools_sub.add_parser(
        "list", help="the built-in tools the local policy offers (MCP tools: edge mcp list)"
    )
    _add_common(tl)
    tl.add_argument("--json", action="store_true", help="print names, descriptions and schemas")
    tc = tools_sub.add_parser(
        "call",
        help="run one tool call here and print its result as JSON",
        description="Run a tool through the same checks as a tunnel call (local policy, "
        "schema, timeout, truncation); the cloud's approval does not apply.",
    )
    tc.add_argument("name", help="tool name, e.g. terminal")
    tc.add_argument("--args", default="{}", metavar="JSON", help='e.g. \'{"command": "ls"}\'')
    _add_common(tc)

    cap = sub.add_parser(
        "capture",
        help="record (and transcribe) audio sources side by side, with a live view",
        allow_abbrev=False,
        description="Capture audio in the foreground: one recording (and one ASR stream) per "
        "source, a live level meter per source and transcript lines as they arrive. Ctrl-C "
        "stops every capture cleanly and prints their summaries.",
        epilog=CAPTURE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cap.add_argument(
        "--duplex", action="store_true", help="the microphone and the system's output together"
    )
    cap.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="SOURCE",
        dest="sources",
        help="mic, system, mic:DEVICE, system:SINK, pattern, tone:FREQ or file:PATH (repeatable)",
    )
    cap.add_argument(
        "--chat", metavar="ID", help="chat id prefix; each source adds -KIND (default capture)"
    )
    cap.add_argument(
        "--out", type=Path, metavar="DIR", help="where recordings go (default: the config's)"
    )
    cap.add_argument("--asr", metavar="URL", help="stream to this ASR WebSocket (ws:// or wss://)")
    cap.add_argument(
        "--token-file", type=Path, metavar="FILE", help="token for --asr (else $EDGE_TOKEN)"
    )
    cap.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    cap.add_argument("--format", choices=["flac", "wav"], default="flac", help="default flac")
    cap.add_argument("--rate", type=int, default=16000, metavar="HZ", help="default 16000")
    cap.add_argument("--channels", type=int, default=1, choices=[1, 2], help="default 1")
    cap.add_argument("--json", action="store_true", help="no live view; summaries as JSON")
    cap.add_argument("--config", type=Path, metavar="FILE", help="TOML config")

    mcp = sub.add_parser(
        "mcp",
        help="configure and check MCP servers (their tools become edge tools)",
        description="MCP servers listed in mcp.json (default: in the user config dir) are "
        "started by 'edge run'; their tools are offered to the cloud like the built-ins.",
        epilog=MCP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mcp_sub = mcp.add_subparsers(dest="mcp_command", metavar="ACTION", required=True)
    ma = mcp_sub.add_parser(
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
    ma.add_argument("--timeout", type=float, help="seconds per call (default 60)")
    ma.add_argument("--replace", action="store_true", help="replace a server of that name")
    ma.add_argument("--no-test", action="store_true", help="do not connect to check it")
    ml = mcp_sub.add_parser("list", help="the configured servers (with live status if edge runs)")
    ml.add_argument("--json", action="store_true", help="print the raw JSON")
    mt = mcp_sub.add_parser("test", help="connect to a server, list its tools, time it")
    mt.add_argument("name")
    mt.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    mr = mcp_sub.add_parser("remove", help="remove a server from mcp.json")
    mr.add_argument("name")
    for p in (ma, ml, mt, mr):
        p.add_argument("--file", type=Path, metavar="FILE", help="the servers file (mcp.json)")
        p.add_argument("--config", type=Path, metavar="FILE", help="TOML config naming it")
    ml.add_argument(
        "--control", metavar="HOST:PORT", default="127.0.0.1:8660",
        help="where to ask a running daemon for live status",
    )  # fmt: skip

    dev = sub.add_parser("dev-cloud", help="run a fake cloud to try edge by hand")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8765)
    dev.add_argument("--token", default="dev-token", help="the token it accepts")
    return parser


CAPTURE_EPILOG = """\
Without --asr the audio is recorded locally only. Recordings are FLAC (WAV with
--format wav); while recording they are written as WAV a second at a time, so
even a killed capture leaves a readable file.

examples:
  edge capture --duplex
  edge capture --source mic --duration 60 --out ~/notes
  EDGE_TOKEN=... edge capture --duplex --asr wss://cloud.example/asr
  edge capture --source tone:440 --source tone:660 --asr ws://127.0.0.1:8765/asr
"""


MCP_EPILOG = """\
examples:
  edge mcp add time -- uvx mcp-server-time
  edge mcp add files -- npx -y @modelcontextprotocol/server-filesystem ~/notes
  edge mcp add notes --url http://127.0.0.1:3001/mcp --header "Authorization=Bearer ..."
  edge mcp list
  edge mcp test time
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML config (default: config.toml in the user config dir, if any)",
    )
    p.add_argument(
        "--workspace", type=Path, metavar="DIR", help="where tools work; relative paths start here"
    )
    p.add_argument(
        "--allow-tool",
        action="append",
        metavar="NAME",
        dest="allow_tools",
        help="allow only these tools (repeatable; default: all)",
    )
    p.add_argument(
        "--root",
        action="append",
        type=Path,
        metavar="DIR",
        dest="roots",
        help="another directory file tools may touch (repeatable)",
    )


def _setup_logging(level: str) -> None:
    import logging

    from ..secret import ScrubFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level.upper() != "DEBUG":
        for noisy in ("trio-websocket", "hypercorn", "hpack", "httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _load(args: argparse.Namespace, **extra: Any) -> Any:
    from ..config import load_config

    return load_config(
        config_file=args.config,
        workspace=args.workspace,
        allow_tools=args.allow_tools,
        roots=args.roots,
        **extra,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    import trio

    from ..daemon import run_until_signalled

    _setup_logging(args.log_level)
    config = _load(
        args,
        cloud=args.cloud,
        token_file=args.token_file,
        control=args.control,
        no_control=args.no_control,
        force_bind=args.force_bind,
        max_calls=args.max_calls,
        log_level=args.log_level,
    )
    from ..net.wsclient import parse_ws_url

    if config.cloud_url:
        try:
            parse_ws_url(config.cloud_url)
        except ValueError as exc:
            return _fail(f"--cloud: {exc}")
    from ..errors import EdgeError

    try:
        trio.run(run_until_signalled, config)
    except BaseExceptionGroup as group:
        # The API edge: a start-up error arrives wrapped by the nurseries it crossed.
        ours, rest = group.split(EdgeError)
        if ours is None or rest is not None:
            raise
        return _fail(str(first_leaf(ours)))
    return 0


def _control_base(control: str) -> str:
    """``HOST:PORT`` of a control API → its base URL."""
    from ..config import parse_hostport

    host, port = parse_hostport(control)
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def _cmd_status(args: argparse.Namespace) -> int:
    import httpx

    from ..config import parse_hostport

    host, port = parse_hostport(args.control)
    base = _control_base(args.control)
    try:
        with httpx.Client(base_url=base, timeout=3.0) as client:
            health = client.get("/health").json()
            tunnel = client.get("/tunnel/status").json()
    except httpx.HTTPError as exc:
        return _fail(
            f"no edge daemon answers on {host}:{port} ({exc.__class__.__name__}); "
            "start one with: edge run",
            code=1,
        )
    if args.json:
        print(json.dumps({"health": health, "tunnel": tunnel}, indent=2))
        return 0
    print(f"edge {health['version']}, up {health['uptime']:.0f} s")
    line = f"tunnel: {tunnel['status']}"
    if tunnel.get("url"):
        line += f" ({tunnel['url']})"
    if tunnel.get("reason"):
        line += f": {tunnel['reason']}"
    print(line)
    print(
        f"tools: {health['tools']} effective of {health['offeredTools']} offered; "
        f"{health['callsInFlight']} calls in flight; {tunnel['outbox']} results waiting"
    )
    return 0


def _cmd_tools(args: argparse.Namespace) -> int:
    from ..daemon import build_executor

    config = _load(args, no_control=True)
    executor = build_executor(config)
    if args.tools_command == "list":
        offered = [s for s in executor.registry if executor.policy.allows_tool(s.name)]
        if args.json:
            print(json.dumps([s.describe() for s in offered], indent=2))
        else:
            width = max(len(s.name) for s in offered) if offered else 0
            for spec in offered:
                print(f"{spec.name:<{width}}  {spec.description}")
        return 0
    try:
        call_args = json.loads(args.args)
    except ValueError as exc:
        return _fail(f"--args is not valid JSON: {exc}")
    if not isinstance(call_args, dict):
        return _fail("--args must be a JSON object")

    import trio

    result = trio.run(lambda: executor.call(args.name, call_args, approved=None))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 1 if "error" in result else 0


def _cmd_capture(args: argparse.Namespace) -> int:
    import trio

    from ..capture.capture import CaptureRequest, check_chat_id
    from ..capture.sources import AudioFormat, parse_source
    from ..capture.uplink import AsrTarget
    from ..config import load_config
    from ..errors import CaptureError
    from ..net.wsclient import parse_ws_url
    from .capture_view import run_captures

    _setup_logging("WARNING")
    texts = (["mic", "system"] if args.duplex else []) + args.sources
    if not texts:
        return _fail("nothing to capture: give --duplex or --source SOURCE (see --help)")
    if args.duration is not None and args.duration <= 0:
        return _fail("--duration must be positive")
    config = load_config(config_file=args.config, token_file=args.token_file, no_control=True)
    asr = None
    if args.asr:
        try:
            parse_ws_url(args.asr)
        except ValueError as exc:
            return _fail(f"--asr: {exc}")
        asr = AsrTarget(args.asr, config.token)
    prefix = args.chat or "capture"
    out_dir = args.out.expanduser() if args.out else config.recordings_dir
    try:
        fmt = AudioFormat(args.rate, args.channels)
        specs = [parse_source(t) for t in texts]
        requests = []
        for i, spec in enumerate(specs):
            kinds = [s.kind for s in specs]
            suffix = spec.kind if kinds.count(spec.kind) == 1 else f"{spec.kind}{i + 1}"
            chat_id = check_chat_id(f"{prefix}-{suffix}")
            requests.append(CaptureRequest(chat_id, spec, fmt, out_dir, args.format, asr))
        summaries = trio.run(
            lambda: run_captures(requests, duration=args.duration, as_json=args.json)
        )
    except CaptureError as exc:
        return _fail(str(exc))
    except BaseExceptionGroup as group:
        ours, rest = group.split(CaptureError)
        if ours is None or rest is not None:
            raise
        return _fail(str(first_leaf(ours)))
    return 1 if any(s.get("error") for s in summaries) else 0


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} {item!r} is not KEY=VALUE")
        out[key] = value
    return out


def _mcp_file(args: argparse.Namespace) -> Path:
    from ..config import load_config

    if args.file is not None:
        return Path(args.file).expanduser()
    path = load_config(config_file=args.config, no_control=True).mcp_file
    assert path is not None
    return path


def _print_probe(report: dict[str, Any]) -> None:
    if not report["ok"]:
        print(f"{report['name']}: cannot connect: {report['error']} ({report['ms']:.0f} ms)")
        return
    server = report["server"]
    print(
        f"{report['name']}: {server['name']} {server['version']} "
        f"(MCP {report['protocolVersion']}), connected in {report['connectMs']:.0f} ms, "
        f"tools listed in {report['listToolsMs']:.0f} ms"
    )
    print(f"  {len(report['tools'])} tools: {', '.join(report['tools'])}")


def _cmd_mcp(args: argparse.Namespace) -> int:
    import trio

    from ..errors import ConfigError
    from ..mcp.config import load_servers, parse_server, remove_server, save_server
    from ..mcp.session import probe_server

    path = _mcp_file(args)
    if args.mcp_command == "add":
        command = list(getattr(args, "server_command", []))
        if command and args.url:
            return _fail("give either -- COMMAND ARGS... or --url, not both")
        if not command and not args.url:
            return _fail("give the server's command after -- (stdio) or --url URL")
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
            return _fail(str(exc))
        server = parse_server(args.name, entry)
        save_server(path, server, replace=args.replace)
        print(f"added {server.name} to {path}")
        if args.no_test:
            return 0
        report = trio.run(lambda: probe_server(server, within=30.0))
        _print_probe(report)
        if not report["ok"]:
            print("  (kept in the file: edge run will keep trying it)")
        return 0 if report["ok"] else 1
    if args.mcp_command == "remove":
        remove_server(path, args.name)
        print(f"removed {args.name} from {path}")
        return 0
    servers = {s.name: s for s in load_servers(path)}
    if args.mcp_command == "test":
        found = servers.get(args.name)
        if found is None:
            raise ConfigError(f"no MCP server named {args.name!r} in {path}")
        report = trio.run(lambda: probe_server(found, within=args.timeout))
        _print_probe(report)
        return 0 if report["ok"] else 1
    live = _live_mcp(args.control)
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
            (f"{state['status']}, {state['tools']} tools" if state else "not running")
            if live
            else ("disabled" if s.disabled else "")
        )
        print(f"{name:<16} {s.transport:<5} {target}  {status}".rstrip())
        if state and state.get("lastError") and state["status"] != "active":
            print(f"{'':<16} last error: {state['lastError']}")
    if not live:
        print("(edge is not running here: statuses are shown while 'edge run' is up)")
    return 0


def _live_mcp(control: str) -> dict[str, dict[str, Any]]:
    """Servers as a running daemon reports them; empty when none answers."""
    import httpx

    try:
        with httpx.Client(base_url=_control_base(control), timeout=2.0) as client:
            rows = client.get("/mcp/servers").json()["servers"]
    except (httpx.HTTPError, ValueError, KeyError):
        return {}
    return {row["name"]: row for row in rows}


def _cmd_dev_cloud(args: argparse.Namespace) -> int:
    import trio

    from ..dev.cloud import run_interactive

    _setup_logging("INFO")
    try:
        trio.run(run_interactive, args.host, args.port, args.token)
    except KeyboardInterrupt:
        pass
    return 0


def _fail(message: str, code: int = 2) -> int:
    print(f"edge: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    server_command: list[str] = []
    if argv[:2] == ["mcp", "add"] and "--" in argv:
        # Everything after -- is the server's own command line, options included.
        cut = argv.index("--")
        argv, server_command = argv[:cut], argv[cut + 1 :]
    args = _parser().parse_args(argv)
    args.server_command = server_command
    if args.version:
        from .. import __version__

        print(f"edge {__version__}")
        return 0
    commands = {
        "run": _cmd_run,
        "status": _cmd_status,
        "tools": _cmd_tools,
        "capture": _cmd_capture,
        "mcp": _cmd_mcp,
        "dev-cloud": _cmd_dev_cloud,
    }
    if args.command is None:
        _parser().print_help()
        return 2
    from ..errors import ConfigError

    try:
        return commands[args.command](args)
    except ConfigError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
