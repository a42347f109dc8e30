"""``edge run``: the daemon in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Final

from .common import (
    add_control_option,
    add_policy_options,
    check_ws_url,
    load,
    setting,
    setup_logging,
)

#: Shown after the options in this command's --help.
EPILOG: Final = """\
The token comes from --token-file or the EDGE_TOKEN environment variable, never
from the command line (other users can read command lines). Without --cloud the
daemon waits for the cloud's web page to POST a token to /tunnel/activate.

examples:
  edge run
  EDGE_TOKEN=... edge run --cloud wss://cloud.example/edge/tunnel
  edge run --cloud ws://127.0.0.1:8765/tunnel --token-file tok --workspace ~/w --no-control
"""


def add_parser(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the daemon in the foreground (Ctrl-C stops it)",
        allow_abbrev=False,
        description="Run the edge daemon in the foreground.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--cloud", metavar="URL", help="the cloud's tunnel URL (ws:// or wss://)")
    run.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="file holding the cloud token (else $EDGE_TOKEN)",
    )
    add_policy_options(run)
    add_control_option(
        run, help="where the control API listens (default 127.0.0.1:8660)", default=None
    )
    run.add_argument("--no-control", action="store_true", help="do not serve the control API")
    run.add_argument(
        "--force-bind",
        action="store_true",
        help="allow the control API on a non-loopback address (unsafe)",
    )
    run.add_argument(
        "--max-calls",
        type=setting("workers", "max_calls"),
        metavar="N",
        help="tool calls running at once, 1 to 4096 (default 64)",
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"],
        help="default INFO",
    )
    run.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import trio

    from ..daemon import run_until_signalled

    setup_logging(args.log_level)
    config = load(
        args,
        cloud=args.cloud,
        token_file=args.token_file,
        control=args.control,
        no_control=args.no_control,
        force_bind=args.force_bind,
        max_calls=args.max_calls,
        log_level=args.log_level,
    )
    if config.cloud_url:
        check_ws_url("--cloud" if args.cloud else "tunnel.url", config.cloud_url)
    return trio.run(run_until_signalled, config)
