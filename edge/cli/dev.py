"""``edge dev-cloud``: a fake cloud to try edge by hand."""

from __future__ import annotations

import argparse
from typing import Any

from .common import port, setup_logging


def add_parser(subparsers: Any) -> None:
    dev = subparsers.add_parser(
        "dev-cloud",
        help="run a fake cloud to try edge by hand",
        description=(
            "A fake cloud: the tunnel on /tunnel and speech recognition on /asr, and beside it "
            "a fake model gateway (an OpenAI-compatible chat/completions endpoint, named to edge "
            "in 'connected') for edge ask/chat. The gateway answers 'echo: ' and your message; "
            "a message '/call NAME {JSON}' makes it ask for a call of tool NAME with those "
            "arguments, and after tool results it answers 'tool results: ' and what they said."
        ),
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=port, default=8765, help="default 8765 (0: any free port)")
    dev.add_argument("--token", default="dev-token", help="the token it accepts")
    dev.add_argument(
        "--gateway-port",
        type=port,
        default=0,
        help="port of the fake model gateway (default 0: any free port; the URL is printed)",
    )
    dev.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import trio

    from ..dev.cloud import run_interactive

    setup_logging("INFO")
    try:
        trio.run(run_interactive, args.host, args.port, args.token, args.gateway_port)
    except KeyboardInterrupt:
        pass
    return 0
