"""``edge tools list`` and ``edge tools call`` through a real ``edge run`` (``GET /tools``,
``POST /tools/call`` with the local key), and here when no daemon answers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import httpx
import pytest
import trio

from edge.control.key import read_key
from edge.dev.cloud import FakeCloud

from .conftest import TOKEN, EdgeProcess, edge_cmd, start_edge, until
from .mcp.conftest import SERVERS, UP
from .test_cli import free_port

pytestmark = pytest.mark.usefixtures("no_child_left")

#: Seconds for anything here to happen on a loaded machine (a bound on failure only).
SOON: Final = 30.0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env.pop("EDGE_TOKEN", None)
    return env


def write_servers(env: dict[str, str]) -> None:
    path = Path(env["XDG_CONFIG_HOME"]) / "edge" / "mcp.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"command": sys.executable, "args": [str(SERVERS / "behave.py")]}
    path.write_text(json.dumps({"mcpServers": {"behave": entry, "ghost": {"command": "/no/such"}}}))


async def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    with trio.fail_after(UP):
        done = await trio.run_process(
            edge_cmd(*args), env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@asynccontextmanager
async def running_edge(
    nursery: trio.Nursery, *args: str, env: dict[str, str]
) -> AsyncIterator[tuple[EdgeProcess, str]]:
    """``edge run ARGS`` on a free control port; stopped (SIGTERM, else killed) on the way out."""
    control = f"127.0.0.1:{free_port()}"
    edge = await start_edge(nursery, "--control", control, *args, env=env)
    try:
        with trio.fail_after(SOON):
            await edge.wait_for_log("control API on")
        yield edge, control
    finally:
        with trio.CancelScope(shield=True):
            if edge.proc.returncode is None:
                edge.proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(SOON):
                    await edge.proc.wait()
            if edge.proc.returncode is None:
                edge.proc.kill()
                await edge.proc.wait()


async def test_list_and_call_through_a_running_edge(
    nursery: trio.Nursery, env: dict[str, str], workspace: Path, cloud: FakeCloud
) -> None:
    write_servers(env)
    allowed = ("terminal", "file_read", "behave__*")
    policy = [arg for name in allowed for arg in ("--allow-tool", name)]
    async with running_edge(
        nursery, "--workspace", str(workspace), "--cloud", cloud.url, *policy,
        env={**env, "EDGE_TOKEN": TOKEN},
    ) as (edge, control):  # fmt: skip
        with trio.fail_after(UP):
            await cloud.wait_for(lambda: "behave__add" in (cloud.approved or []))

        listed = await cli("tools", "list", "--control", control, "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        rows = {row["name"]: row for row in json.loads(listed.stdout)}
        assert (rows["terminal"]["allowed"], rows["terminal"]["approved"], rows["terminal"]["effective"]) == (True, True, True)
        assert (rows["grep"]["allowed"], rows["grep"]["approved"], rows["grep"]["effective"]) == (False, False, False)
        assert rows["behave__add"]["source"] == "mcp:behave" and rows["behave__add"]["effective"]
        assert rows["ghost__*"]["status"] == "error" and "/no/such" in rows["ghost__*"]["problem"]
        text = await cli("tools", "list", "--control", control, env=env)
        lines = {line.split()[0]: line.split() for line in text.stdout.splitlines()}
        assert lines["terminal"][1:5] == ["builtin", "yes", "yes", "yes"]
        assert lines["grep"][1:5] == ["builtin", "no", "no", "no"]
        assert f"(from the running edge on {control})" in text.stdout

        # Calls run on the daemon's workers, under its policy, without the cloud's approval.
        echo = await cli("tools", "call", "terminal", "--args", '{"command": "echo hi"}', "--control", control, env=env)
        assert echo.returncode == 0, echo.stderr
        assert json.loads(echo.stdout)["output"] == "hi\n"
        with trio.fail_after(30):  # the daemon's one line for the call, read from its pipe
            await edge.wait_for_log(" terminal ok in ")
        assert re.search(r"call local-\w+ terminal ok in ", edge.log)
        added = await cli("tools", "call", "behave__add", "--args", '{"a": 40, "b": 2}', "--control", control, env=env)
        assert json.loads(added.stdout)["structured"] == {"result": 42}
        # Per-tool figures of the running edge: calls, failures, average and p95 latency.
        figures = await cli("mcp", "list", "--tools", "--control", control, env=env)
        assert figures.returncode == 0, figures.stderr
        [add_row] = [line.split() for line in figures.stdout.splitlines() if line.split()[:1] == ["add"]]
        assert add_row[1:3] == ["1", "0"] and float(add_row[3]) > 0 and float(add_row[4]) > 0
        assert "tool  " in figures.stdout and "p95 ms" in figures.stdout
        # A forced refresh of one server's tool list, past the daemon's cache.
        refreshed = await cli("mcp", "refresh", "behave", "--control", control, env=env)
        assert refreshed.returncode == 0, refreshed.stderr
        assert refreshed.stdout.startswith("behave: ") and " add," in refreshed.stdout
        nobody = await cli("mcp", "refresh", "nobody", "--control", control, env=env)
        assert nobody.returncode == 1 and "no MCP server named 'nobody'" in nobody.stderr
        refused = await cli("tools", "call", "grep", "--args", '{"pattern": "x"}', "--control", control, env=env)
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["error"] == "tool 'grep' is not allowed by the local policy"
        typo = await cli("tools", "call", "behave__ad", "--control", control, env=env)
        assert typo.returncode == 1
        assert json.loads(typo.stdout)["error"] == "unknown tool 'behave__ad'; did you mean 'behave__add'?"
        wrong = await cli("tools", "call", "file_read", "--args", '{"path": 5}', "--control", control, env=env)
        assert json.loads(wrong.stdout)["error"] == "invalid args for file_read: \"path\": 5 is not of type 'string'"
        outside = await cli("tools", "call", "file_read", "--args", '{"path": "/etc/hostname"}', "--control", control, env=env)
        assert f"outside the allowed roots ({workspace.resolve()})" in json.loads(outside.stdout)["error"]

        # Without the local key (another state directory): refused, not run here instead.
        stranger = {**env, "XDG_STATE_HOME": str(workspace.parent / "elsewhere")}
        nokey = await cli("tools", "call", "terminal", "--args", '{"command": "echo hi"}', "--control", control, env=stranger)
        assert nokey.returncode == 1 and "refused the call" in nokey.stderr and "--local" in nokey.stderr
        assert len(re.findall(r"call local-\w+ terminal ", edge.log)) == 1

        # A client that goes away cancels its call: the command's process ends with it.
        pid_file = workspace / "pid"
        _, port = control.rsplit(":", 1)
        key = read_key(Path(env["XDG_STATE_HOME"]) / "edge", int(port))
        assert key is not None
        body = {"name": "terminal", "args": {"command": f"echo $$ > {pid_file}; exec sleep 60"}}

        async def call_then_leave() -> None:
            async with httpx.AsyncClient(base_url=f"http://{control}", timeout=SOON) as client:
                await client.post("/tools/call", json=body, headers={"x-edge-key": key})

        async with trio.open_nursery() as calling:
            calling.start_soon(call_then_leave)
            with trio.fail_after(SOON):
                await until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", poll=0.02)
            calling.cancel_scope.cancel()
        pid = int(pid_file.read_text())
        with trio.fail_after(SOON):
            await until(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), poll=0.02)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def test_here_without_a_daemon(env: dict[str, str], workspace: Path) -> None:
    write_servers(env)
    nobody = f"127.0.0.1:{free_port()}"
    runs: dict[str, subprocess.CompletedProcess[str]] = {}

    async def run(key: str, *args: str) -> None:
        runs[key] = await cli(*args, env=env)

    async with trio.open_nursery() as nursery:  # at once: each starts what it needs itself
        nursery.start_soon(run, "listed", "tools", "list", "--control", nobody, "--workspace", str(workspace))
        nursery.start_soon(run, "added", "tools", "call", "behave__add", "--args", '{"a": 1, "b": 2}', "--control", nobody)
        nursery.start_soon(run, "ghost", "tools", "call", "ghost__x", "--local")
        nursery.start_soon(run, "typo", "tools", "call", "termnal", "--local")
    listed, added, ghost, typo = runs["listed"], runs["added"], runs["ghost"], runs["typo"]
    assert listed.returncode == 0, listed.stderr
    assert "starting 2 MCP servers..." in listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert lines["behave__echo"].split()[1:5] == ["mcp:behave", "yes", "-", "-"]
    assert lines["ghost__*"].split()[1:3] == ["mcp:ghost", "ERROR:"]
    assert "approval comes from the cloud" in listed.stdout

    # Only the server the tool belongs to is started for a call.
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["output"] == "3" and "starting 1 MCP server..." in added.stderr
    assert json.loads(ghost.stdout)["error"] == "MCP server 'ghost' did not start: command not found: /no/such"
    assert typo.returncode == 1 and "starting" not in typo.stderr
    assert json.loads(typo.stdout)["error"] == "unknown tool 'termnal'; did you mean 'terminal'?"
