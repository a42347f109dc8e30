"""``edge agents list|ask|token``: real ``edge`` commands against an in-process daemon's control
API on loopback (the state directory shared through ``XDG_STATE_HOME``)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from edge.agents.token import read_token, token_file
from edge.daemon import Daemon

from ..conftest import edge_cmd, make_config, until
from ..test_cli import free_port
from .test_a2a_sdk import steps_tool

pytestmark = pytest.mark.usefixtures("no_child_left")

#: Seconds anything here may take on a loaded machine (a bound on failure only).
SOON = 30.0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "xdg-state")
    env.pop("EDGE_TOKEN", None)
    return env


@dataclass
class Edge:
    daemon: Daemon
    control: str
    release: trio.Event
    workspace: Path


@pytest.fixture
async def edge(nursery: trio.Nursery, workspace: Path, env: dict[str, str]) -> Edge:
    state = Path(env["XDG_STATE_HOME"]) / "edge"  # where the CLI looks, by the same env
    daemon = Daemon(make_config(workspace, control=("127.0.0.1", 0), state_dir=state))
    release = trio.Event()
    daemon.registry.add(steps_tool(release))
    await nursery.start(daemon.run)
    assert daemon.control_url is not None
    return Edge(daemon, daemon.control_url.removeprefix("http://"), release, workspace)


@dataclass
class Result:
    code: int
    out: str
    err: str


async def cli(*args: str, env: dict[str, str]) -> Result:
    with trio.fail_after(SOON):
        done = await trio.run_process(
            edge_cmd(*args), env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


async def clis(*commands: tuple[str, ...], env: dict[str, str]) -> list[Result]:
    """Several ``edge`` commands at once (each takes about a second to start on a busy machine)."""
    results: dict[int, Result] = {}

    async def run(i: int, args: tuple[str, ...]) -> None:
        results[i] = await cli(*args, env=env)

    async with trio.open_nursery() as nursery:
        for i, args in enumerate(commands):
            nursery.start_soon(run, i, args)
    return [results[i] for i in range(len(commands))]


async def test_token_is_made_once_and_printed(env: dict[str, str]) -> None:
    state = Path(env["XDG_STATE_HOME"]) / "edge"
    first = await cli("agents", "token", env=env)
    assert first.code == 0, first.err
    token = first.out.strip()
    assert token == read_token(state)
    assert str(token_file(state)) in first.err
    assert stat.S_IMODE(token_file(state).stat().st_mode) == 0o600
    second, where = await clis(("agents", "token"), ("agents", "token", "--path"), env=env)
    assert (second.code, second.out.strip(), second.err) == (0, token, "")
    assert where.out.strip() == str(token_file(state))


async def test_ask_runs_tools_here_with_progress_and_output(
    edge: Edge, env: dict[str, str]
) -> None:
    (edge.workspace / "notes.txt").write_text("alpha\nbeta\n")
    ask = ("agents", "ask", "local", "--control", edge.control)
    read, done, quiet, as_json = await clis(
        (*ask, "file_read", "--args", '{"path": "notes.txt"}'),
        (*ask, "steps", "--args", '{"n": 3}'),
        (*ask, "steps", "-q"),
        (*ask, "steps", "--json"),
        env=env,
    )
    assert read.code == 0, read.err
    assert "beta" in read.out  # (a small read may end before the stream starts: no line due)
    assert done.code == 0, done.err
    assert done.out == "3 steps done\n"
    assert "step 3 (3/3)" in done.err
    assert (quiet.code, quiet.out, quiet.err) == (0, "3 steps done\n", "")
    task = json.loads(as_json.out)
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["artifacts"][0]["parts"] == [{"text": "3 steps done"}]


async def test_ask_says_why_a_task_failed(edge: Edge, env: dict[str, str], tmp_path: Path) -> None:
    other = {**env, "XDG_STATE_HOME": str(tmp_path / "elsewhere")}  # another token, or none
    ask = ("agents", "ask", "local", "--control", edge.control)
    async with trio.open_nursery() as nursery:
        wrong: list[Result] = []

        async def with_another_token() -> None:
            wrong.append(await cli(*ask, "steps", env=other))

        nursery.start_soon(with_another_token)
        unknown, missing = await clis(
            (*ask, "no_such_tool"), (*ask, "file_read", "--args", '{"path": "nope.txt"}'), env=env
        )
    assert unknown.code == 1
    assert "edge: error: the task rejected" in unknown.err
    assert "no_such_tool" in unknown.err
    assert missing.code == 1
    assert "edge: error: the task failed" in missing.err
    assert wrong[0].code == 1
    assert "refused the A2A token" in wrong[0].err
    assert "Traceback" not in unknown.err + missing.err + wrong[0].err


async def test_bad_args_and_no_daemon_are_clear_errors(env: dict[str, str]) -> None:
    control = f"127.0.0.1:{free_port()}"
    bad, listed, *gone = await clis(
        ("agents", "ask", "local", "file_read", "--args", "{path"),
        ("agents", "ask", "local", "file_read", "--args", "[1]"),
        ("agents", "ask", "local", "file_read", "--control", control),
        ("agents", "list", "--control", control),
        env=env,
    )
    assert bad.code == 2
    assert "edge: error: --args is not JSON" in bad.err
    assert listed.code == 2
    assert "JSON object" in listed.err
    for result in gone:
        assert result.code == 1
        assert f"no edge daemon answers on {control}" in result.err
        assert "Traceback" not in result.err


async def test_list_shows_this_edge_and_the_tasks(edge: Edge, env: dict[str, str]) -> None:
    ran = await cli("agents", "ask", "local", "steps", "--control", edge.control, env=env)
    assert ran.code == 0, ran.err
    listed, as_json = await clis(
        ("agents", "list", "--control", edge.control),
        ("agents", "list", "--json", "--control", edge.control),
        env=env,
    )
    assert listed.code == 0, listed.err
    assert f"(agent {edge.daemon.agents.agent_id})" in listed.out
    assert "remote agents: none" in listed.out
    assert "tasks in flight: none" in listed.out
    assert "steps  completed" in listed.out
    assert json.loads(as_json.out)["tasks"][0]["skill"] == "steps"


async def test_ctrl_c_cancels_the_task_and_its_process(edge: Edge, env: dict[str, str]) -> None:
    pid_file = edge.workspace / "pid"
    command = json.dumps({"command": f"echo $$ > {pid_file}; exec sleep 300"})
    proc = await trio.lowlevel.open_process(
        edge_cmd(
            "agents", "ask", "local", "terminal", "--args", command, "--control", edge.control
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        with trio.fail_after(SOON):
            await until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 0.02)
            pid = int(pid_file.read_text())
            (task,) = edge.daemon.agents.list()
            assert task.state == "working"
            proc.send_signal(signal.SIGINT)
            assert proc.stderr is not None
            err = b""
            async for chunk in proc.stderr:
                err += chunk
            code = await proc.wait()
            await until(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 0.02)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 130, err
    assert b"canceled" in err
    assert b"Traceback" not in err
    assert task.state == "canceled"


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def test_a_timeout_beyond_the_daemons_bound_is_a_usage_error(env: dict[str, str]) -> None:
    here, remote = await clis(
        ("agents", "ask", "local", "steps", "--timeout", "604801"),
        ("agents", "ask", "build-box", "steps", "--timeout", "3601"),
        env=env,
    )
    assert here.code == 2
    assert "--timeout: must be at most 604800 seconds" in here.err
    assert remote.code == 2
    assert "edge: error: argument --timeout: a remote agent's task takes at most 3600" in remote.err
    assert "Traceback" not in here.err + remote.err


async def test_ask_for_an_agent_nobody_named_fails_at_once(edge: Edge, env: dict[str, str]) -> None:
    asked = await cli(
        "agents", "ask", "build-box", "steps", "--control", edge.control, env=env
    )  # cli() fails past SOON: an ask that would wait for ever
    assert asked.code == 1
    assert "edge: error: no agent 'build-box' is known" in asked.err
    assert "the tunnel is not connected" in asked.err
    assert edge.daemon.agents.list() == []  # type: ignore[union-attr]


def test_ask_waits_until_the_deadline_and_a_margin() -> None:
    from edge.cli.agents import TIMEOUT_MARGIN, _Follow

    follow = _Follow("steps")
    assert follow.wait_left(1000.0) is None  # no deadline: the tool's own timeout ends it
    follow.take(
        {
            "task": {
                "id": "t",
                "status": {"state": "TASK_STATE_SUBMITTED"},
                "metadata": {"deadline": "2027-01-01T00:01:00.000Z"},
            }
        }
    )
    start = 1798761600.0  # 2027-01-01T00:00:00Z
    assert follow.deadline == start + 60
    assert follow.wait_left(start) == 60 + TIMEOUT_MARGIN
    assert follow.wait_left(start + 600) == TIMEOUT_MARGIN
