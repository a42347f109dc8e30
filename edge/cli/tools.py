"""``edge tools list`` and ``edge tools call``: the local tools, through the same
executor as the cloud's calls."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from .common import add_policy_options, fail, load

if TYPE_CHECKING:
    from ..tools.execute import Executor


def add_parser(subparsers: Any) -> None:
    tools = subparsers.add_parser(
        "tools", help="list or call tools locally (same path as the cloud's)"
    )
    actions = tools.add_subparsers(dest="tools_command", metavar="ACTION", required=True)
    tl = actions.add_parser(
        "list", help="the built-in tools the local policy offers (MCP tools: edge mcp list)"
    )
    add_policy_options(tl)
    tl.add_argument("--json", action="store_true", help="print names, descriptions and schemas")
    tl.set_defaults(handler=handle_list)
    tc = actions.add_parser(
        "call",
        help="run one tool call here and print its result as JSON",
        description="Run a tool through the same checks as a tunnel call (local policy, "
        "schema, timeout, truncation); the cloud's approval does not apply.",
    )
    tc.add_argument("name", help="tool name, e.g. terminal")
    tc.add_argument("--args", default="{}", metavar="JSON", help='e.g. \'{"command": "ls"}\'')
    add_policy_options(tc)
    tc.set_defaults(handler=handle_call)


def _executor(args: argparse.Namespace) -> Executor:
    from ..daemon import build_executor

    return build_executor(load(args, no_control=True))


def handle_list(args: argparse.Namespace) -> int:
    executor = _executor(args)
    offered = [s for s in executor.registry if executor.policy.allows_tool(s.name)]
    if args.json:
        print(json.dumps([s.describe() for s in offered], indent=2))
    else:
        width = max(len(s.name) for s in offered) if offered else 0
        for spec in offered:
            print(f"{spec.name:<{width}}  {spec.description}")
    return 0


def handle_call(args: argparse.Namespace) -> int:
    executor = _executor(args)
    try:
        call_args = json.loads(args.args)
    except ValueError as exc:
        return fail(f"--args is not valid JSON: {exc}")
    if not isinstance(call_args, dict):
        return fail("--args must be a JSON object")

    import trio

    result = trio.run(lambda: executor.call(args.name, call_args, approved=None))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 1 if "error" in result else 0
