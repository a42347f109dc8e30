"""``edge service install|uninstall|status|logs``: edge as a user service (systemd, launchd)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .common import add_config_option, fail, int_range

if TYPE_CHECKING:
    from ..service.manage import ServiceStatus

#: Shown after the options in this command's --help.
EPILOG: Final = """\
examples:
  edge service install                       run 'edge run' as a service of this user
  edge service install --token-file ~/.config/edge/token
  edge service install --dry-run             print the unit (or agent), change nothing
  edge service status                        installed? enabled? running? last log lines
  edge service logs -f                       follow the log
  edge service uninstall                     stop it and remove it

Linux: a systemd user unit, ~/.config/systemd/user/edge.service, that runs
'edge run --log-file ~/.local/state/edge/log/edge.log' (the config's [log] file
if it names one); warnings and errors reach the journal too (journalctl --user
-u edge.service); start at boot needs 'loginctl enable-linger USER'. macOS: a
launchd agent, ~/Library/LaunchAgents/local.edge.plist, logging to
~/Library/Logs/edge/edge.log (stdout and stderr: edge.stderr.log beside it).
edge rotates its log file itself at 10 MiB, keeping edge.log.1 to edge.log.3;
'edge service logs' reads the file.
The service restarts edge when it fails and when it installed an update (exit 11).
No token is written into the unit: give a token file (--token-file, or
[tunnel] token_file in the config). See docs/service.md.
"""


def add_parser(subparsers: Any) -> None:
    service = subparsers.add_parser(
        "service",
        help="run edge as a user service: install, uninstall, status, logs",
        description="edge as a service of this user: a systemd user unit on Linux, a\n"
        "launchd agent on macOS. It runs 'edge run' of this installation, starts it\n"
        "again when it fails or has installed an update, and logs to a file:\n"
        "~/.local/state/edge/log/edge.log (Linux), ~/Library/Logs/edge/edge.log (macOS).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    si = actions.add_parser(
        "install",
        help="write the unit (or agent) and start it; again: rewrite it and restart",
        description="Write the unit (Linux) or agent (macOS) that runs this edge's 'edge run', "
        "then enable and start it where a user service manager answers (else say how).",
    )
    add_config_option(si, help="the config file 'edge run' reads (default: its own default)")
    si.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="the file holding the cloud token (only its path goes into the unit)",
    )
    si.add_argument(
        "--dry-run", action="store_true", help="print the unit (or agent); write and start nothing"
    )
    si.set_defaults(handler=handle_install)
    su = actions.add_parser("uninstall", help="stop the service and remove it")
    su.set_defaults(handler=handle_uninstall)
    ss = actions.add_parser(
        "status", help="whether it is installed, enabled, running, and its last log lines"
    )
    ss.add_argument("--json", action="store_true", help="print the status as JSON")
    ss.set_defaults(handler=handle_status)
    sl = actions.add_parser(
        "logs", help="the service's log: its log file (the journal while there is none)"
    )
    sl.add_argument(
        "-n",
        "--lines",
        type=int_range(0, 1_000_000),
        default=50,
        metavar="N",
        help="how many of the last lines (default %(default)s)",
    )
    sl.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    sl.set_defaults(handler=handle_logs)


def handle_install(args: argparse.Namespace) -> int:
    from ..errors import ServiceError
    from ..service.manage import Host, InstallOptions, install

    options = InstallOptions(config_file=args.config, token_file=args.token_file)
    try:
        outcome = install(Host.current(), options, dry_run=args.dry_run)
    except ServiceError as exc:
        return fail(str(exc), 1)
    if args.dry_run:
        sys.stdout.write(outcome.text)
        print(f"(dry run: {outcome.path} not written, nothing started)", file=sys.stderr)
        for line in outcome.lines:
            print(line, file=sys.stderr)
        return 0
    for line in outcome.lines:
        print(line)
    return 0


def handle_uninstall(args: argparse.Namespace) -> int:
    from ..errors import ServiceError
    from ..service.manage import Host, uninstall

    try:
        outcome = uninstall(Host.current())
    except ServiceError as exc:
        return fail(str(exc), 1)
    for line in outcome.lines:
        print(line)
    return 0


def _word(value: bool | None) -> str:
    return "unknown" if value is None else "yes" if value else "no"


def _print_status(st: ServiceStatus) -> None:
    if not st.installed:
        print(f"edge service: not installed (no {st.path}); install it with: edge service install")
        if st.running:
            print(f"  but a service is running: {st.state}")
        return
    print(f"edge service: {st.kind} {st.path}")
    print("  installed: yes")
    print(f"  enabled:   {_word(st.enabled)}")
    if st.running is None:
        print(f"  running:   {st.state}")
    else:
        pid = f", pid {st.pid}" if st.pid else ""
        print(f"  running:   {_word(st.running)}{pid} ({st.state})")
    if st.command:
        print(f"  command:   {st.command}")
    for note in st.notes:
        print(f"  {note}")
    print(f"last log lines ({st.log_source}):")
    for line in st.log_lines:
        print(f"  {line}")


def handle_status(args: argparse.Namespace) -> int:
    from ..errors import ServiceError
    from ..service.manage import Host, status

    try:
        st = status(Host.current())
    except ServiceError as exc:
        return fail(str(exc), 1)
    if args.json:
        print(json.dumps(st.as_json(), indent=2))
    else:
        _print_status(st)
    return 0


def handle_logs(args: argparse.Namespace) -> int:
    import os
    import subprocess

    from ..errors import ServiceError
    from ..service.manage import Host, logs_command

    try:
        argv = logs_command(Host.current(), lines=args.lines, follow=args.follow)
    except ServiceError as exc:
        return fail(str(exc), 1)
    sys.stdout.flush()
    env = {k: v for k, v in os.environ.items() if k != "EDGE_TOKEN"}  # journalctl needs no token
    return subprocess.run(argv, env=env, check=False).returncode
