"""``edge tunnel status|connect|disconnect``: the running daemon's tunnel to the cloud.

``connect`` hands the daemon a token and a URL, as the cloud's web page does
(``POST /tunnel/activate``). The token comes from ``--token-file`` or a hidden
prompt on the terminal, never from the command line, where other users of the
machine can read it; it goes to the daemon only and is neither printed nor kept.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from .common import (
    ControlUnreachable,
    ParagraphFormatter,
    add_control_option,
    check_ws_url,
    control_get,
    control_post,
    fail,
    plural,
)

#: Seconds ``edge tunnel connect`` waits to see the tunnel connected (or refused).
CONNECT_WAIT: Final = 10.0
#: Status changes ``edge tunnel status`` lists, the newest last.
RECENT: Final = 5
#: What to run to hand the daemon a token.
CONNECT_HINT: Final = "edge tunnel connect --url URL"

#: Shown after the options in this command's --help.
EPILOG: Final = """\
examples:
  edge tunnel status                              state, since when, next retry, outbox
  edge tunnel connect --url wss://cloud.example/edge/tunnel     asks for the token
  edge tunnel connect --url ws://127.0.0.1:8765/tunnel --token-file tok
  edge tunnel disconnect                          calls in flight are cancelled

The token is read from --token-file or asked for on the terminal (not echoed),
never taken from the command line.
"""


def add_parser(subparsers: Any) -> None:
    tunnel = subparsers.add_parser(
        "tunnel",
        help="the running daemon's tunnel: status, connect, disconnect",
        description="The running daemon's WebSocket tunnel to the cloud (the /tunnel routes "
        "of its control API).",
        epilog=EPILOG,
        formatter_class=ParagraphFormatter,
    )
    actions = tunnel.add_subparsers(dest="tunnel_command", metavar="ACTION", required=True)

    status = actions.add_parser("status", help="state, since when, reason, next retry, outbox")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    add_control_option(status)
    status.set_defaults(handler=handle_status)

    connect = actions.add_parser(
        "connect", help="connect to the cloud with a token (asked for, or --token-file)"
    )
    connect.add_argument("--url", required=True, help="the cloud's tunnel URL (ws:// or wss://)")
    connect.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="file holding the token (else it is asked for on the terminal)",
    )
    add_control_option(connect)
    connect.set_defaults(handler=handle_connect)

    disconnect = actions.add_parser(
        "disconnect", help="drop the tunnel (calls in flight are cancelled)"
    )
    add_control_option(disconnect)
    disconnect.set_defaults(handler=handle_disconnect)


# --- how the status reads -------------------------------------------------------------


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone()


def local_time(iso: str) -> str:
    """An ISO 8601 time as local time: ``HH:MM:SS`` today, with the date on other days."""
    when = _parse(iso)
    if when.date() == datetime.now().astimezone().date():
        return when.strftime("%H:%M:%S")
    return when.strftime("%Y-%m-%d %H:%M:%S")


def for_how_long(seconds: float) -> str:
    """``42 s``, ``3 min``, ``2 h 5 min``, ``3 days``: a duration as people read one."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def _ago(iso: str) -> float:
    return (datetime.now().astimezone() - _parse(iso)).total_seconds()


def describe(info: dict[str, Any]) -> list[str]:
    """The tunnel's state in a line, then what to do about it (``edge status`` shows these)."""
    status = info["status"]
    line = f"tunnel: {status}"
    if info.get("since"):
        line += f" since {local_time(info['since'])} (for {for_how_long(_ago(info['since']))})"
    url = info.get("url")
    if status == "connected":
        line += f" to {url}" if url else ""
        line += f" as user {info['userId']}" if info.get("userId") else ""
    elif info.get("reason"):
        line += f": {info['reason']}"
    lines = [line]
    if status == "disconnected" and not url:
        lines.append(f"  connect it with: {CONNECT_HINT}")
    elif status == "unauthorized":
        lines.append(f"  the cloud refused the token; connect again with: {CONNECT_HINT}")
    elif status == "connecting":
        attempts = info.get("attempts") or 0
        failed = f"; {plural(attempts, 'failed attempt')} so far" if attempts else ""
        if info.get("nextRetryAt"):
            retry_in = for_how_long(max(1, math.ceil(info.get("retryIn") or 0)))  # not "in 0 s"
            when = f"{local_time(info['nextRetryAt'])} (in {retry_in})"
            lines.append(f"  to {url}: next attempt at {when}{failed}")
        else:
            lines.append(f"  to {url}: an attempt is under way{failed}")
    return lines


def status_lines(info: dict[str, Any]) -> list[str]:
    """What ``edge tunnel status`` prints: ``describe``, the outbox, the recent changes."""
    lines = describe(info)
    if info["status"] in ("disconnected", "unauthorized") and info.get("url"):
        lines.append(f"  url: {info['url']}")
    outbox = info.get("outbox", 0)
    journal = "kept on disk" if info.get("journal") == "store" else "kept in memory"
    details = [f"outbox: {plural(outbox, 'result')} waiting ({journal})"]
    if info.get("connections"):
        details.append(f"{plural(info['connections'], 'connection')} since the start")
    if info.get("resent"):
        details.append(f"{plural(info['resent'], 'result')} sent again")
    if info.get("droppedResults"):
        details.append(f"{plural(info['droppedResults'], 'result')} dropped")
    lines.append("  " + "; ".join(details))
    if "effectiveTools" in info:
        lines.append(
            f"  tools: {len(info.get('approvedTools') or [])} approved by the cloud, "
            f"{len(info['effectiveTools'])} effective"
        )
    history = info.get("history") or []
    if len(history) > 1:
        lines.append("  recent changes:")
        for change in history[-RECENT:]:
            why = f": {change['reason']}" if change.get("reason") else ""
            lines.append(f"    {local_time(change['at'])}  {change['status']}{why}")
    return lines


# --- the handlers ---------------------------------------------------------------------


def _no_daemon(exc: ControlUnreachable) -> int:
    return fail(f"{exc}; start one with: edge run", code=1)


def _daemon_error(answer: Any) -> int:
    message = answer.get("error", answer) if isinstance(answer, dict) else answer
    return fail(str(message), code=1)


def _status(control: str) -> dict[str, Any]:
    """GET /tunnel/status; ``ControlUnreachable`` also when what answers is not edge."""
    try:
        (info,) = control_get(control, "/tunnel/status", timeout=5.0)
    except ValueError:
        info = None
    if not isinstance(info, dict) or "status" not in info:
        raise ControlUnreachable(f"what answers on {control} is not an edge daemon")
    return info


def handle_status(args: argparse.Namespace) -> int:
    try:
        info = _status(args.control)
    except ControlUnreachable as exc:
        return _no_daemon(exc)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("\n".join(status_lines(info)))
    return 0


def _read_token(args: argparse.Namespace) -> str | None:
    """The token from ``--token-file``, else a hidden prompt; ``None`` after an error line."""
    if args.token_file is not None:
        from ..config import read_token_file

        return read_token_file(args.token_file.expanduser()).reveal()
    if not sys.stdin.isatty():
        fail(
            "no terminal to ask for the token on: give it with --token-file FILE "
            "(a token is never taken from the command line)"
        )
        return None
    import getpass

    try:
        token = getpass.getpass(f"token for {args.url} (not shown): ").strip()
    except EOFError:
        token = ""
    if not token:
        fail("no token given: nothing was changed")
        return None
    return token


def handle_connect(args: argparse.Namespace) -> int:
    check_ws_url("--url", args.url)
    token = _read_token(args)
    if token is None:
        return 2
    try:
        before = _status(args.control).get("history") or []
        code, answer = control_post(
            args.control, "/tunnel/activate", {"jwt": token, "tunnelUrl": args.url}, timeout=10.0
        )
    except ControlUnreachable as exc:
        return _no_daemon(exc)
    if code != 202:
        return _daemon_error(answer)
    print(f"tunnel: connecting to {args.url}", flush=True)
    return _wait_connected(args.control, args.url, before[-1] if before else None)


def _wait_connected(control: str, url: str, last_seen: dict[str, Any] | None) -> int:
    """Watch the status changes that came after ``last_seen`` for up to ``CONNECT_WAIT`` s:
    exit 0 once connected (or still trying), 1 if the cloud refused the token."""
    import time

    deadline = time.monotonic() + CONNECT_WAIT
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            info = _status(control)
        except ControlUnreachable as exc:
            return _no_daemon(exc)
        history = info.get("history") or []
        fresh = history[history.index(last_seen) + 1 :] if last_seen in history else history
        for change in fresh:
            if change["status"] == "unauthorized":
                return fail(f"the cloud refused the token: {change.get('reason')}", code=1)
            if change["status"] == "connected" and info["status"] == "connected":
                who = f" as user {info['userId']}" if info.get("userId") else ""
                print(f"tunnel: connected to {url}{who}")
                return 0
        time.sleep(0.1)
    why = f" ({info['reason']})" if info.get("reason") else ""
    print(f"tunnel: still connecting{why}; see: edge tunnel status")
    return 0


def handle_disconnect(args: argparse.Namespace) -> int:
    try:
        code, answer = control_post(args.control, "/tunnel/disconnect", timeout=10.0)
    except ControlUnreachable as exc:
        return _no_daemon(exc)
    if code != 200:
        return _daemon_error(answer)
    print("tunnel: disconnected (calls in flight were cancelled; their results wait in the outbox)")
    return 0
