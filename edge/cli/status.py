"""``edge status``: ask the running daemon how it is.

The tunnel's line is ``edge tunnel status``'s first (``edge.cli.tunnel.describe``),
with what to do next: how to connect an idle tunnel, when a backing-off one tries
again.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import ControlUnreachable, add_control_option, control_get, fail, plural


def add_parser(subparsers: Any) -> None:
    status = subparsers.add_parser("status", help="ask the running daemon how it is")
    add_control_option(status)
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from .tunnel import describe, for_how_long

    try:
        health, tunnel = control_get(args.control, "/health", "/tunnel/status", timeout=3.0)
    except ControlUnreachable as exc:
        return fail(f"{exc}; start one with: edge run", code=1)
    except ValueError:
        return fail(f"what answers on {args.control} is not an edge daemon", code=1)
    if args.json:
        print(json.dumps({"health": health, "tunnel": tunnel}, indent=2))
        return 0
    try:
        lines = [
            f"edge {health['version']}, up {for_how_long(health['uptime'])}",
            *describe(tunnel),
            f"tools: {health['tools']} effective of {health['offeredTools']} offered; "
            f"{plural(health['callsInFlight'], 'call')} in flight; "
            f"{plural(tunnel['outbox'], 'result')} waiting",
        ]
    except (KeyError, TypeError, AttributeError, ValueError):  # an answer of another shape
        return fail(f"what answers on {args.control} is not an edge daemon", code=1)
    print("\n".join(lines))
    return 0
