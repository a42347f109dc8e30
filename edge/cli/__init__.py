"""The ``edge`` command: one module per command group.

- ``run``: ``edge run``, the daemon in the foreground
- ``status``: ``edge status``, ask the running daemon how it is
- ``stop``: ``edge stop``, stop the running daemon cleanly (``POST /stop``, the local key)
- ``tunnel``: ``edge tunnel status|connect|disconnect``, the running daemon's tunnel
- ``record``: ``edge record start|stop|status``, the running daemon's captures
- ``tools``: ``edge tools list|call|new``, the local tools, declared tools to start from
- ``capture``: ``edge capture``, its flags and requests
- ``capture_view``: the live terminal view ``edge capture`` runs
- ``mcp``: ``edge mcp add|list|test|remove``, the MCP servers in mcp.json
- ``plugins``: ``edge plugins list|reload|new|config``, the Python plugins
- ``schedule``: ``edge schedule add|list|run|pause|resume|remove|history``, tool runs on a
  timetable (through the running daemon, else in the store)
- ``agents``: ``edge agents list|ask|token``, this edge as an A2A agent: tasks, the cloud's
  other agents, the local A2A endpoint's token
- ``ask``: ``edge ask`` and ``edge chat``, the model (the cloud's gateway or ``--offline``) with
  the local tools
- ``update``: ``edge update``, a signed, hash-checked update of this edge
- ``service``: ``edge service install|uninstall|status|logs``, edge as a user service
- ``completion``: ``edge completion SHELL``, the completion script for bash, zsh or fish
- ``dev``: ``edge dev-cloud``, a fake cloud to try edge by hand
- ``doctor``: ``edge doctor``, this machine's set-up checked, each failure with its fix
- ``config``: ``edge config show|check|init``, the configuration in effect (and where each
  value came from), a strict check, a commented starter file
- ``common``: options, config loading, logging, the control-API client, exit codes

Every command that runs takes ``-q/--quiet`` and ``-v/--verbose``, added once to the
whole tree (``common.add_verbosity_options``; ``common`` says what they do).

A command module has ``add_parser(subparsers)``, which adds its sub-parser and sets
``handler`` (``Namespace -> int``, the exit code) on it, and may have
``split_argv(argv) -> (argv, extra)``, which takes what argparse must not see out of
the command line (it sees only command lines of its own commands); ``extra`` is set
on the parsed arguments. A new command is a new module and an entry in ``COMMANDS``:
the module and the commands it adds.

A command line that starts with a command imports that command's module alone and
builds the parser with its sub-parser alone, so that ``edge status`` pays neither for
importing the other command modules nor for building their parsers; any other line
(``edge``, ``edge --help``, a mistyped command) and ``edge completion``, which
describes the whole tree, build every one. Command modules import only the standard
library and ``common`` at the top, and the rest inside their handlers, so that
``edge --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any, Final

from .common import ParagraphFormatter, add_verbosity_options, call_handler

__all__ = ["main"]

#: What `edge --help` says edge is.
DESCRIPTION: Final = """\
edge is the cloud brain's pair of hands on this machine: it keeps a WebSocket
tunnel to the cloud, runs the tool calls the cloud sends (within what you
allow here), and serves a small control API on 127.0.0.1 for the cloud's web
page and for this CLI. Without a cloud it keeps running, autonomous.
"""

#: The command modules (``edge.cli.MODULE``), in the order ``edge --help`` lists them,
#: each with the commands its ``add_parser`` adds.
COMMANDS: Final[dict[str, tuple[str, ...]]] = {
    "run": ("run",), "status": ("status",), "stop": ("stop",), "tunnel": ("tunnel",),
    "record": ("record",), "ask": ("ask", "chat"), "agents": ("agents",), "tools": ("tools",),
    "plugins": ("plugins",), "schedule": ("schedule",), "capture": ("capture",),
    "mcp": ("mcp",), "update": ("update",), "service": ("service",), "dev": ("dev-cloud",),
    "doctor": ("doctor",), "config": ("config",), "completion": ("completion",),
}  # fmt: skip

#: Command → the module that adds it.
MODULE_OF: Final[dict[str, str]] = {
    command: module for module, commands in COMMANDS.items() for command in commands
}

#: The commands that need the whole tree's parser (``edge completion`` describes it).
WHOLE_TREE: Final = frozenset({"completion"})


def command_modules(argv: list[str]) -> list[str]:
    """The command modules to build the parser of for ``argv``: the module of the command
    it starts with, else (no command first, or one that needs ``WHOLE_TREE``) all."""
    module = MODULE_OF.get(argv[0]) if argv else None
    if module is None or argv[0] in WHOLE_TREE:
        return list(COMMANDS)
    return [module]


def _import(names: Iterable[str]) -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def _parser(modules: list[ModuleType] | None = None) -> argparse.ArgumentParser:
    """The parser of ``modules``' commands (default: every command)."""
    parser = argparse.ArgumentParser(
        prog="edge",
        description=DESCRIPTION,
        allow_abbrev=False,
        formatter_class=ParagraphFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.set_defaults(handler=None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _import(COMMANDS) if modules is None else modules:
        module.add_parser(subparsers)
    add_verbosity_options(parser)  # -q/--quiet, -v/--verbose on every command that runs
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: dict[str, Any] = {}
    modules = _import(command_modules(argv))
    for module in modules:
        split = getattr(module, "split_argv", None)
        if split is not None:
            argv, more = split(argv)
            extra.update(more)
    parser = _parser(modules)
    args = parser.parse_args(argv)
    for name, value in extra.items():
        setattr(args, name, value)
    args.root_parser = parser  # for `edge completion` (``WHOLE_TREE``), which describes it
    if args.version:
        from .. import __version__

        print(f"edge {__version__}")
        return 0
    if args.handler is None:
        parser.print_help()
        return 2
    return call_handler(args)
