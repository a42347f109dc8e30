"""``edge status``: ask the running daemon how it is."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import ControlUnreachable, add_control_option, control_get, fail


def add_parser(subparsers: Any) -> None:
    status = subparsers.add_parser("status", help="ask the running daemon how it is")
    add_control_option(status, help="the daemon's control API (default 127.0.0.1:8660)")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        health, tunnel = control_get(args.control, "/health", "/tunnel/status", timeout=3.0)
    except ControlUnreachable as exc:
        return fail(f"{exc}; start one with: edge run", code=1)
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
