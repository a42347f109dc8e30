"""``edge doctor``: check this machine's set-up, one line per check, each failure with its fix."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .common import add_config_option, add_control_option, paint, seconds

if TYPE_CHECKING:
    from ..doctor import Check

#: Shown after the options in this command's --help.
EPILOG: Final = """\
Checks: the native audio shim, the sound server (its default source and the
default output's monitor), the control port (free, or a running edge), the config
files (config.toml, mcp.json, declared tools, plugins), the token file's
permissions, each MCP server's connection, node (where a tool or server needs
it), process containment and the user service manager edge service needs. Exit
0 when every check passes, else 1.

examples:
  edge doctor
  edge doctor --config ~/edge.toml --json
"""


def add_parser(subparsers: Any) -> None:
    doctor = subparsers.add_parser(
        "doctor",
        help="check this machine's set-up for edge (each failure with its fix)",
        description="Check whether this machine is set up to run edge.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(doctor)
    add_control_option(
        doctor, help="the control API's address (default: the config's, else 127.0.0.1:8660)",
        default=None,
    )  # fmt: skip
    doctor.add_argument(
        "--token-file", type=Path, metavar="FILE", help="the token file (default: the config's)"
    )
    doctor.add_argument(
        "--mcp-file", type=Path, metavar="FILE", help="the MCP servers file (default: the config's)"
    )
    doctor.add_argument(
        "--timeout", type=seconds, default=10.0, metavar="SECONDS",
        help="how long each check may wait (default 10): an MCP server, the sound server",
    )  # fmt: skip
    doctor.add_argument(
        "--json", action="store_true", help='print {"ok", "checks": [{"name","ok","detail","fix"}]}'
    )
    doctor.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import trio

    from ..doctor import Subject, examination

    subject = Subject(
        config_file=args.config, control=args.control, token_file=args.token_file,
        mcp_file=args.mcp_file, timeout=args.timeout,
    )  # fmt: skip

    async def examine_and_report() -> int:
        # Reported inside the block: an MCP server that did not answer may still be
        # stopping (the SDK's own clock), and leaving the block waits for it.
        async with examination(subject) as checks:
            return print_report(checks, as_json=args.json)

    return trio.run(examine_and_report)


def print_report(checks: list[Check], *, as_json: bool) -> int:
    """Print the checks (a line each, or JSON), flushed; the exit status."""
    from ..exitcodes import FAILURE, OK

    ok = all(check.ok for check in checks)
    if as_json:
        report = {"ok": ok, "checks": [c.as_json() for c in checks]}
        print(json.dumps(report, indent=2), flush=True)
        return OK if ok else FAILURE
    out = sys.stdout
    for check in checks:
        if check.ok:
            print(f"{paint('✓', 'green', out)} {check.name}: {check.detail}")
        else:
            fix = f" — fix: {check.fix}" if check.fix else ""
            print(f"{paint('✗', 'red', out)} {check.name}: {check.detail}{fix}")
    failed = sum(not check.ok for check in checks)
    if failed:
        print(f"{failed} of {len(checks)} checks failed")
    out.flush()  # before any MCP server that did not answer is done stopping
    return OK if ok else FAILURE
