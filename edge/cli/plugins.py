"""``edge plugins list|reload|new|config``: the Python plugins edge runs in runner processes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Final

from .common import (
    ControlUnreachable,
    ParagraphFormatter,
    add_config_option,
    add_control_option,
    control_get,
    control_post,
    fail,
    load,
    plural,
)

#: Shown after the options in this command's --help.
EPILOG: Final = """\
examples:
  edge plugins new weather          write a working plugin skeleton (with a test)
  edge plugins list                 status, runner PID, tools, restarts, last error
  edge plugins config weather units=imperial
  edge plugins reload weather       restart just this plugin's runner

Plugins live in the [plugins] dirs of config.toml (default: plugins/ in the user
config dir); each is a directory with a plugin.toml. See docs/plugins.md.
"""


def add_parser(subparsers: Any) -> None:
    plugins = subparsers.add_parser(
        "plugins",
        help="Python plugins: list, reload, configure, or write a new one",
        description="Each plugin runs in a runner process of its own, supervised by 'edge "
        "run'; its tools join edge's tools (named PLUGIN__TOOL).",
        epilog=EPILOG,
        formatter_class=ParagraphFormatter,
    )
    actions = plugins.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    pl = actions.add_parser("list", help="every plugin: status, runner PID, tools, last error")
    add_config_option(pl)
    add_control_option(pl)
    pl.add_argument("--json", action="store_true", help="print the list as JSON")
    pl.set_defaults(handler=handle_list)
    pr = actions.add_parser("reload", help="restart one plugin's runner, its manifest read again")
    pr.add_argument("name", help="the plugin's id")
    add_control_option(pr)
    pr.set_defaults(handler=handle_reload)
    pn = actions.add_parser("new", help="write a working plugin skeleton, with a test")
    pn.add_argument("name", help="the plugin's id: lower-case letters, digits, - or _")
    add_config_option(pn)
    pn.add_argument("--dir", type=Path, metavar="DIR", help="where (default: the first plugin dir)")
    pn.set_defaults(handler=handle_new)
    pc = actions.add_parser(
        "config",
        help="set config values of a plugin: NAME KEY=VALUE...",
        description="Write KEY=VALUE pairs into the plugin's config.toml (VALUE is read as "
        "TOML when it can be, e.g. 3, true, [1, 2]; else as a string; a value TOML would "
        "read as a date or time, inf or nan stays a string). A running daemon pushes the "
        "new config to the plugin at once.",
    )
    pc.add_argument("name", help="the plugin's id")
    pc.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
    add_config_option(pc)
    add_control_option(pc)
    pc.set_defaults(handler=handle_config)


def _live(control: str) -> list[dict[str, Any]] | None:
    try:
        (answer,) = control_get(control, "/plugins", timeout=3)
    except (ControlUnreachable, ValueError):
        return None
    plugins = answer.get("plugins") if isinstance(answer, dict) else None
    return plugins if isinstance(plugins, list) else None


def handle_list(args: argparse.Namespace) -> int:
    live = _live(args.control)
    rows: list[dict[str, Any]]
    if live is None:
        from ..plugins.manifest import discover

        config = load(args, no_control=True)
        rows = [
            {
                "id": f.id,
                "status": "invalid" if f.manifest is None else "not running",
                "version": f.manifest.version if f.manifest else None,
                "directory": str(f.directory),
                "tools": [],
                "lastError": f.problem,
            }
            for f in discover(config.plugin_dirs)
        ]
        where = ", ".join(str(d) for d in config.plugin_dirs)
    else:
        rows, where = live, ""
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(
            f"no plugins{' in ' + where if where else ''} (write one with: edge plugins new NAME)"
        )
        return 0
    for row in rows:
        pid = f"pid {row['pid']}" if row.get("pid") else ""
        restarts = plural(row["restarts"], "restart") if row.get("restarts") else ""
        tools = plural(len(row["tools"]), "tool") if row.get("tools") else ""
        details = ", ".join(x for x in (pid, tools, restarts) if x)
        print(f"{row['id']:<20} {row['status']:<12} {details}".rstrip())
        for tool in row.get("tools") or []:
            print(f"{'':<20}   {tool}")
        if row.get("lastError") and row["status"] != "running":
            print(f"{'':<20}   last error: {row['lastError']}")
    if live is None:
        print("(edge is not running here: statuses are shown while 'edge run' is up)")
    return 0


def handle_reload(args: argparse.Namespace) -> int:
    try:
        status, answer = control_post(args.control, f"/plugins/{args.name}/reload", timeout=30)
    except ControlUnreachable as exc:
        return fail(f"{exc}: start it with 'edge run' (a reload restarts a running plugin)", 1)
    if status != 200:
        return fail(str(answer.get("error", answer)), 1)
    why = f" ({answer['lastError']})" if answer.get("lastError") else ""
    print(f"{answer['id']}: {answer['status']}{why}")
    return 0 if answer["status"] not in ("invalid", "failed", "parked") else 1


def handle_new(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..plugins.skeleton import write_plugin_skeleton

    try:
        parent = args.dir.expanduser() if args.dir else load(args, no_control=True).plugin_dirs[0]
    except RuntimeError:  # Path.expanduser: a ~user not known here
        return fail(f"--dir {str(args.dir)!r}: cannot expand its `~`: no such user")
    try:
        path = write_plugin_skeleton(args.name, parent)
    except (ConfigError, ValueError, FileExistsError) as exc:
        return fail(str(exc))
    except OSError as exc:
        where = exc.filename or parent
        return fail(f"cannot write the plugin into {where}: {exc.strerror or exc}")
    print(f"wrote {path}")
    print(f"try it: cd {path} && python -m pytest   (then 'edge run' loads it)")
    return 0


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` → {KEY: VALUE}, VALUE read as TOML when it can be, else a string.

    VALUE stays a string, too, when TOML reads it as something a config value
    cannot be (``check_config_value``): ``1979-05-27`` (a date), ``07:32:00``, ``inf``.
    """
    import tomllib

    from ..errors import ConfigError
    from ..plugins.manifest import check_config_value

    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{pair!r} is not KEY=VALUE")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
            check_config_value(key, value)
        except (tomllib.TOMLDecodeError, RecursionError, ConfigError):
            value = text
        values[key] = value
    return values


def handle_config(args: argparse.Namespace) -> int:
    try:
        values = parse_pairs(args.pairs)
    except ValueError as exc:
        return fail(str(exc))
    try:
        status, answer = control_post(
            args.control, f"/plugins/{args.name}/config", {"values": values}, timeout=10
        )
    except ControlUnreachable:
        return _config_offline(args, values)
    if status != 200:
        return fail(str(answer.get("error", answer)), 1)
    print(json.dumps(answer["config"], indent=2))
    return 0


def _config_offline(args: argparse.Namespace, values: dict[str, Any]) -> int:
    """No daemon: write the file; the next 'edge run' reads it."""
    from ..errors import ConfigError
    from ..plugins.manifest import discover, write_user_config

    config = load(args, no_control=True)
    found = next((f for f in discover(config.plugin_dirs) if f.id == args.name), None)
    if found is None:
        return fail(f"no plugin {args.name!r} in " + ", ".join(map(str, config.plugin_dirs)), 1)
    if found.manifest is None:
        return fail(f"plugin {args.name} is invalid: {found.problem}", 1)
    try:
        path = write_user_config(found.manifest, values)
    except ConfigError as exc:
        return fail(str(exc), 1)
    print(f"wrote {path} (edge is not running: the next 'edge run' uses it)")
    return 0
