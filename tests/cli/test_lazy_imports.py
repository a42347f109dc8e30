"""What ``edge status`` and ``edge tools list`` import when a daemon answers.

A command line that starts with a command imports that command's module alone
(``edge.cli.COMMANDS``), and the control client is the standard library's
``http.client``; checked against a running ``edge run`` (the modules a command
imported, in a fresh interpreter), on loopback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Final

import pytest
import trio

from edge.cli import COMMANDS, MODULE_OF, _import, _parser, command_modules

from ..test_cli import free_port
from ..test_cli_tools_daemon import running_edge

pytestmark = pytest.mark.usefixtures("no_child_left")

#: Seconds for anything here to happen on a loaded machine (a bound on failure only).
SOON: Final = 60.0

#: What ``edge status`` and ``edge tools list`` must not import when the daemon answers:
#: the event loop, the HTTP clients, JSON Schema, the tool registry, the daemon, the MCP
#: and plugin hosts, and the other commands' modules.
HEAVY: Final = (
    "trio", "httpx", "jsonschema", "edge.tools",
    "edge.tools.registry", "edge.daemon", "edge.mcp", "edge.plugins", "edge.nurseries",
    "edge.control.app", "edge.cli.run", "edge.cli.ask", "edge.cli.agents",
    "edge.cli.schedule", "edge.cli.mcp", "edge.cli.update",
)  # fmt: skip

#: Run in a fresh interpreter: the command, then the modules it imported as the last line.
PROBE: Final = """\
import json, sys
from edge.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env.pop("EDGE_TOKEN", None)
    return env


async def probe(*argv: str, env: dict[str, str]) -> tuple[str, set[str]]:
    """``edge ARGV`` in a fresh interpreter: what it printed before the module list, and
    the modules it imported (it must exit 0)."""
    with trio.fail_after(SOON):
        done = await trio.run_process(
            [sys.executable, "-c", PROBE, *argv], env=env, capture_stdout=True,
            capture_stderr=True, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    *printed, last = done.stdout.decode().splitlines()
    result = json.loads(last)
    assert result["code"] == 0, done.stderr.decode()
    return "\n".join(printed), set(result["modules"])


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


async def test_status_and_tools_list_through_a_daemon_import_nothing_heavy(
    nursery: trio.Nursery, env: dict[str, str], workspace: Path
) -> None:
    async with running_edge(nursery, "--workspace", str(workspace), env=env) as (_, control):
        printed, modules = await probe("status", "--control", control, env=env)
        assert printed.startswith("edge ")
        assert "tools: " in printed
        assert heavy(modules) == []
        assert "edge.config" not in modules  # --control given: no config to read

        printed, modules = await probe("tools", "list", "--control", control, env=env)
        assert f"(from the running edge on {control})" in printed
        assert "terminal" in printed
        assert heavy(modules) == []

        printed, modules = await probe("tools", "list", "--control", control, "--json", env=env)
        assert {row["name"] for row in json.loads(printed)} >= {"terminal", "grep"}
        assert heavy(modules) == []


async def test_tools_list_without_a_daemon_still_lists_here(env: dict[str, str]) -> None:
    control = f"127.0.0.1:{free_port()}"
    printed, modules = await probe("tools", "list", "--control", control, env=env)
    assert f"no edge daemon answers on {control}: listed here" in printed
    assert "edge.tools.registry" in modules  # the listing is made here, by the registry


def test_the_commands_table_names_what_each_module_adds() -> None:
    for name, module in zip(COMMANDS, _import(COMMANDS), strict=True):
        choices = _parser([module])._subparsers._group_actions[0].choices  # type: ignore[union-attr]
        assert tuple(choices) == COMMANDS[name], name
    whole = _parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert list(whole) == list(MODULE_OF)


def test_a_command_line_builds_the_parser_of_its_command_alone() -> None:
    assert command_modules(["status", "--json"]) == ["status"]
    assert command_modules(["chat"]) == ["ask"]
    assert command_modules(["dev-cloud", "--help"]) == ["dev"]
    for argv in ([], ["--help"], ["--version", "status"], ["stauts"], ["completion", "bash"]):
        assert command_modules(argv) == list(COMMANDS), argv
