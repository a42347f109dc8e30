"""``edge stop``: stop the running daemon cleanly, as SIGTERM does, through its control API.

``POST /stop`` needs the local key (``edge.control.key``), which the daemon
writes into its state directory at each start: the command reads it from the
state directory of the same config (``--config``), so it stops only a daemon
this user runs. It then waits until the daemon no longer answers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final

from .common import (
    ControlUnreachable,
    add_config_option,
    add_control_option,
    control_post,
    fail,
    key_headers,
    load,
    seconds,
)

#: Seconds between the checks whether the daemon still answers.
POLL: Final = 0.1
#: Seconds between the dots on a terminal while waiting.
DOT_EVERY: Final = 0.5


def add_parser(subparsers: Any) -> None:
    stop = subparsers.add_parser(
        "stop",
        help="stop the running daemon cleanly (as SIGTERM does)",
        description="Ask the running daemon to stop: calls in flight are cancelled and their "
        "results sent, captures finish their files, then it exits 0. Waits until it has.",
    )
    add_config_option(stop, help="the daemon's config.toml, for its state directory (default: "
                      "config.toml in the user config dir, if any)")  # fmt: skip
    add_control_option(stop)
    stop.add_argument(
        "--timeout",
        type=seconds,
        default=30.0,
        metavar="S",
        help="how long to wait for it to stop (default %(default)g s)",
    )
    stop.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..control.key import key_file
    from .common import parse_hostport

    state_dir = load(args, no_control=True).state_dir
    headers = key_headers(args.control, state_dir)
    try:
        status, answer = control_post(args.control, "/stop", timeout=10.0, headers=headers)
    except ControlUnreachable as exc:
        return fail(f"{exc}: there is nothing to stop", code=1)
    if status == 403:
        where = (
            "no state directory"
            if state_dir is None
            else key_file(state_dir, parse_hostport(args.control)[1])
        )
        why = "is not this daemon's key" if headers else "could not be read"
        return fail(
            f"the daemon on {args.control} refused to stop: the local key ({where}) {why}; "
            "is it run by another user, or with another state directory (--config)?",
            code=1,
        )
    if status == 404:
        return fail(
            f"the daemon on {args.control} has no POST /stop (an older edge?): stop it with "
            "SIGTERM or Ctrl-C",
            code=1,
        )
    if status != 202:
        message = answer.get("error", answer) if isinstance(answer, dict) else answer
        return fail(str(message), code=1)
    if not _wait_gone(args.control, args.timeout, state_dir if headers else None):
        return fail(
            f"the daemon on {args.control} still answers after {args.timeout:g} s "
            "(still finishing captures or calls?); see its log",
            code=1,
        )
    print("edge stopped")
    return 0


def _wait_gone(control: str, timeout: float, state_dir: Path | None = None) -> bool:
    """Whether the daemon at ``control`` stopped within ``timeout`` seconds: it no longer
    answers and, when its key is known (in ``state_dir``), has removed its key file, the
    last thing it does before it exits. Shows that it waits on stderr (dots on a terminal)."""
    import time

    from ..control.key import read_key
    from .common import ControlClient, parse_hostport

    port = parse_hostport(control)[1]

    tty = sys.stderr.isatty()
    sys.stderr.write(f"stopping the edge daemon on {control}")
    sys.stderr.write("" if tty else "\n")
    sys.stderr.flush()
    deadline = time.monotonic() + timeout
    next_dot = time.monotonic() + DOT_EVERY
    gone = False
    key = read_key(state_dir, port)
    while time.monotonic() < deadline:
        try:
            with ControlClient(control, timeout=2.0) as client:
                client.request("GET", "/health")
        except ControlUnreachable as exc:
            # Nothing listens any more, and the key file this run wrote is gone (or another
            # run's replaced it): the daemon has finished.
            refused = isinstance(exc.__cause__, ConnectionRefusedError)
            if refused and (key is None or read_key(state_dir, port) != key):
                gone = True
                break
            # slow, or a connection closed mid-answer: still stopping
        if tty and time.monotonic() >= next_dot:
            sys.stderr.write(".")
            sys.stderr.flush()
            next_dot += DOT_EVERY
        time.sleep(POLL)
    if tty:
        sys.stderr.write("\n")
        sys.stderr.flush()
    return gone

