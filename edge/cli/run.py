"""``edge run``: the daemon in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Final

from .common import (
    add_control_option,
    add_policy_options,
    check_ws_url,
    fail,
    load,
    progress,
    setting,
    setup_logging,
)

#: Shown after the options in this command's --help.
EPILOG: Final = """\
The token comes from --token-file or the EDGE_TOKEN environment variable, never
from the command line (other users can read command lines). Without --cloud the
daemon waits for the cloud's web page to POST a token to /tunnel/activate.

Logs: to stderr (the terminal when run by hand, the journal under systemd), at
INFO unless --log-level, -q (WARNING) or -v (DEBUG) says otherwise; each tool call
is one line (id, tool, outcome, duration, size; never its args or output).
With --log-file (or [log] file) every line goes to the file and stderr gets only
warnings and errors; edge rotates the file at 10 MiB (FILE.1 to FILE.3 kept).
'edge service install' logs to ~/.local/state/edge/log/edge.log
(~/Library/Logs/edge/edge.log on macOS).

examples:
  edge run
  EDGE_TOKEN=... edge run --cloud wss://cloud.example/edge/tunnel
  edge run --cloud ws://127.0.0.1:8765/tunnel --token-file tok --workspace ~/w --no-control
  edge run --log-file ~/edge.log --log-format json
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
        type=_level,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR, any case (default: [log] level, else INFO)",
    )
    run.add_argument(
        "--log-file",
        type=Path,
        metavar="FILE",
        help="also log to FILE, appended (made 0600, rotated at 10 MiB to FILE.1..3, reopened "
        "when moved); stderr then gets warnings and errors only (default: [log] file, else no "
        "file)",
    )
    run.add_argument(
        "--log-format",
        type=_format,
        metavar="FORMAT",
        help="text, or json: one object a line (default: [log] format, else text)",
    )
    run.set_defaults(handler=handle)


def _level(text: str) -> str:
    """``type=`` for ``--log-level``: a level in any case (``edge.logs.parse_level``)."""
    from ..errors import ConfigError
    from ..logs import parse_level

    try:
        return parse_level(text, "the level")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _format(text: str) -> str:
    """``type=`` for ``--log-format``: ``text`` or ``json``."""
    from ..errors import ConfigError
    from ..logs import parse_format

    try:
        return parse_format(text, "the format")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def handle(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "INFO", format=args.log_format or "text")  # until loaded
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
    log_file = config.log_file
    if args.log_file is not None:
        try:
            log_file = args.log_file.expanduser()
        except RuntimeError:  # ~user that is not known here, or no home directory
            home = str(args.log_file).split("/", 1)[0]
            return fail(f"--log-file {str(args.log_file)!r}: cannot expand {home!r}: "
                        "no such user, or no home directory")  # fmt: skip
    try:
        setup_logging(
            config.log_level, file=log_file, format=args.log_format or config.log_format
        )
    except OSError as exc:
        return fail(f"cannot open the log file {log_file}: {_why(exc)}")
    if log_file is not None:
        progress(f"edge: logging to {log_file} (here: warnings and errors only)")
    import trio  # only now: a wrong option or config is said without the daemon's imports

    from ..daemon import run_until_signalled

    return trio.run(run_until_signalled, config)


def _why(exc: OSError) -> str:
    """Why the log file could not be opened: a parent that is a file is named as such
    (``make_private_dir`` meets it as "File exists")."""
    if isinstance(exc, FileExistsError) and exc.filename is not None:
        return f"{exc.filename} is not a directory"
    return exc.strerror or str(exc)
