"""``edge config show|check|init``: the configuration in effect, a strict check, a starter file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Final

from .common import add_control_option, add_policy_options, fail, setting

#: Shown after the options in this command's --help.
EPILOG: Final = """\
show: every key of config.toml with its effective value and where it came from:
default, file (which), environment (EDGE_TOKEN: shown as set, never its value)
or flag. show takes the flags edge run takes, so their effect shows.

examples:
  edge config init                 # a commented config.toml in the user config dir
  edge config check                # the config file in use, strictly
  edge config show --workspace ~/w --json
"""

#: How ``show`` writes a value that is not set.
NOT_SET: Final = "(not set)"


def add_parser(subparsers: Any) -> None:
    config = subparsers.add_parser(
        "config",
        help="the configuration: show it with where each value came from, check it, start one",
        description="edge's configuration file, config.toml.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show", help="the effective configuration and where each value came from"
    )
    add_policy_options(show)
    show.add_argument("--cloud", metavar="URL", help="the cloud's tunnel URL, as edge run takes it")
    show.add_argument(
        "--token-file", type=Path, metavar="FILE", help="the token file, as edge run takes it"
    )
    add_control_option(show, help="the control API's address, as edge run takes it", default=None)
    show.add_argument("--no-control", action="store_true", help="no control API, as edge run")
    show.add_argument(
        "--force-bind", action="store_true",
        help="a non-loopback control address allowed, as edge run takes it",
    )  # fmt: skip
    show.add_argument(
        "--max-calls", type=setting("workers", "max_calls"), metavar="N",
        help="tool calls at once, as edge run takes it",
    )  # fmt: skip
    show.add_argument(
        "--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="the log level, as edge run takes it",
    )  # fmt: skip
    show.add_argument(
        "--log-file", type=Path, metavar="FILE", help="the log file, as edge run takes it"
    )
    show.add_argument(
        "--log-format", type=str.lower, choices=["text", "json"],
        help="the log format, as edge run takes it",
    )  # fmt: skip
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=handle_show)
    check = actions.add_parser("check", help="check a config file strictly (exit 2 if invalid)")
    check.add_argument(
        "file", nargs="?", type=Path, metavar="FILE",
        help="the file (default: config.toml in the user config dir)",
    )  # fmt: skip
    check.set_defaults(handler=handle_check)
    init = actions.add_parser(
        "init", help="write a commented starter config.toml (never over an existing file)"
    )
    init.add_argument(
        "file", nargs="?", type=Path, metavar="FILE",
        help="where (default: config.toml in the user config dir)",
    )  # fmt: skip
    init.set_defaults(handler=handle_init)


def _text(value: Any) -> str:
    """A value as ``show`` writes it: strings bare, the rest as in config.toml."""
    from ..config import toml_value

    if value is None:
        return NOT_SET
    return value if isinstance(value, str) else toml_value(value)


def handle_show(args: argparse.Namespace) -> int:
    from ..config import default_paths, load_config_traced

    traced = load_config_traced(
        config_file=args.config, cloud=args.cloud, token_file=args.token_file,
        control=args.control, no_control=args.no_control, force_bind=args.force_bind,
        workspace=args.workspace, allow_tools=args.allow_tools, roots=args.roots,
        max_calls=args.max_calls, log_level=args.log_level, log_file=args.log_file,
        log_format=args.log_format, read_token=False,
    )  # fmt: skip
    values = traced.values()
    if args.json:
        settings = {
            name: {"value": value, "origin": traced.origins[name].as_json()}
            for name, value in values.items()
        }
        print(json.dumps({"file": _path(traced.file), "settings": settings}, indent=2))
        return 0
    if traced.file is not None:
        how = "--config" if args.config is not None else "default"
        print(f"config file: {traced.file} ({how})")
    else:
        print(f"config file: none ({default_paths()[0]} is not there)")
    texts = {name: _text(value) for name, value in values.items()}
    key_width = max(map(len, texts))
    value_width = min(max(map(len, texts.values())), 48)
    for name, text in texts.items():
        origin = str(traced.origins[name])
        print(f"{name:<{key_width}}  {text:<{value_width}}  {origin}".rstrip())
    return 0


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def handle_check(args: argparse.Namespace) -> int:
    from ..config import check_config_file, default_paths
    from ..exitcodes import CONFIG, OK

    path: Path | None = args.file
    if path is None:
        path = default_paths()[0]
        if not path.exists():
            print(f"{path}: not there; edge runs on its defaults (edge config init writes one)")
            return OK
    problems = check_config_file(path)
    for problem in problems:
        fail(problem)
    if problems:
        return CONFIG
    print(f"{path}: ok")
    return OK


def handle_init(args: argparse.Namespace) -> int:
    from ..config import default_paths, write_starter
    from ..exitcodes import FAILURE, OK

    path: Path = args.file if args.file is not None else default_paths()[0]
    try:
        path = path.expanduser()
    except RuntimeError:
        return fail(f"{str(path)!r}: cannot expand its `~`: no such user")
    try:
        write_starter(path)
    except FileExistsError:
        return fail(
            f"{path} is there already; edge config init never replaces a file: move it "
            "away first (or edit it: edge config check checks it)",
            code=FAILURE,
        )
    except OSError as exc:
        return fail(f"cannot write {path}: {exc.strerror or exc}", code=FAILURE)
    print(f"wrote {path} (mode 0600): every key at its default, commented out")
    print(f"check it with: edge config check {path}")
    return OK
