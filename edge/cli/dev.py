"""``edge dev-cloud``: a fake cloud to try edge by hand."""

from __future__ import annotations

import argparse
import shutil
from typing import Any

from .common import ParagraphFormatter, port, setup_logging


def add_parser(subparsers: Any) -> None:
    # The command table is plain code without trio: importing it keeps --help fast.
    from ..dev.commands import epilog

    dev = subparsers.add_parser(
        "dev-cloud",
        help="run a fake cloud to try edge by hand",
        description=(
            "A fake cloud: the tunnel on /tunnel and speech recognition on /asr, and beside it "
            "a fake model gateway (an OpenAI-compatible chat/completions endpoint, named to edge "
            "in 'connected') for edge ask/chat. The gateway answers 'echo: ' and your message; "
            "a message '/call NAME {JSON}' makes it ask for a call of tool NAME with those "
            "arguments, and after tool results it answers 'tool results: ' and what they said. "
            "It approves every tool an edge offers until told otherwise."
        ),
        epilog=epilog(shutil.get_terminal_size().columns - 2),
        formatter_class=ParagraphFormatter,
    )
    dev.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help="address to listen on, for the cloud and the gateway (default 127.0.0.1; "
        "IPv6 with or without brackets: ::1, [::1])",
    )
    dev.add_argument(
        "--port",
        type=port,
        default=8765,
        help="port of the cloud: the tunnel and /asr (default 8765; 0: any free port)",
    )
    dev.add_argument(
        "--token", default="dev-token", help="the token it accepts (default dev-token)"
    )
    dev.add_argument(
        "--gateway-port",
        type=port,
        default=0,
        help="port of the fake model gateway (default 0: any free port; the URL is printed)",
    )
    dev.set_defaults(handler=handle)


def _host(text: str) -> str:
    """``type=`` for ``--host``: the address, an IPv6 one's brackets taken off (the URLs
    printed put them back)."""
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def handle(args: argparse.Namespace) -> int:
    """Serve until ``quit``, Ctrl-C, SIGTERM or (on a terminal) the end of input: exit 0."""
    import trio

    from ..dev.console import run_interactive

    setup_logging("INFO")
    try:
        trio.run(run_interactive, args.host, args.port, args.token, args.gateway_port)
    except KeyboardInterrupt:  # before the signal handler is in place
        pass
    return 0
