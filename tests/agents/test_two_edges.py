"""Two real ``edge run`` processes, one fake cloud relaying between them.

Each edge has its own state directory, config (its ``[agents] name``),
workspace and plugin (``ticker``, whose ``count`` reports progress). The cloud
asks edge one to run ``agent_ask``, which hands work to edge two: a request with
progress and a response; a cancel that cascades across both (edge two's
``sleep`` is gone); a deadline; a reconnect of each edge mid-stream (every
event once, in order); and edge two killed with SIGKILL mid-task (edge one's
task fails, it does not hang), after which edge two, started again, fails what
it was running. The edges start once for the whole module's one test.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.agents.tasks import STOPPED
from edge.dev.cloud import FakeCloud
from edge.store import DB_FILE

from ..conftest import TOKEN, EdgeProcess, start_edge, until
from ..plugins.kit import alive

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_child_left")]

#: A bound on anything the test waits for (generous: a loaded machine, real processes).
SOON = 60.0

TICKER = """\
id = "ticker"
version = "0.1.0"
description = "counts, reporting progress"
entry = "main"
sdk = ">=1.0,<2"
capabilities = []
env = []
"""

TICKER_MAIN = '''\
import trio
from edge.plugin import Context, Plugin

plugin = Plugin()


@plugin.tool(timeout=120)
async def count(ctx: Context, n: int = 3, step: float = 0.1) -> dict:
    """Count to n, reporting progress at each step."""
    for done in range(1, n + 1):
        await trio.sleep(step)
        ctx.progress(done, n, f"{done} of {n}")
    return {"output": f"counted to {n}"}
'''


@dataclass
class Edge:
    name: str
    root: Path
    args: list[str]
    env: dict[str, str]
    process: EdgeProcess | None = None

    @property
    def workspace(self) -> Path:
        return self.root / "ws"

    @property
    def db(self) -> Path:
        return self.root / "state" / "edge" / DB_FILE

    def read_pid(self, name: str) -> int | None:
        try:
            text = (self.workspace / name).read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text else None


def make_edge(root: Path, name: str, cloud: FakeCloud) -> Edge:
    home = root / name
    (home / "ws").mkdir(parents=True)
    config = home / "config" / "edge"
    plugin = config / "plugins" / "ticker"
    plugin.mkdir(parents=True)
    (plugin / "plugin.toml").write_text(TICKER)
    (plugin / "main.py").write_text(TICKER_MAIN)
    (config / "config.toml").write_text(f'[agents]\nname = "{name}"\n')
    token_file = home / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    env = dict(os.environ)
    env.update(
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
    )
    env.pop("EDGE_TOKEN", None)
    args = ["--cloud", cloud.url, "--token-file", str(token_file), "--workspace", str(home / "ws")]
    args += ["--no-control", "--log-level", "INFO"]
    return Edge(name, home, args, env)


def agent_named(cloud: FakeCloud, name: str) -> str | None:
    for ident, report in cloud.agents.items():
        if report.get("agent", {}).get("name") == name and any(
            t["name"] == "ticker__count" for t in report.get("tools", [])
        ):
            return ident
    return None


async def stop(edge: Edge) -> None:
    process = edge.process
    if process is None or process.proc.returncode is not None:
        return
    process.proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(20):
        await process.proc.wait()
    if process.proc.returncode is None:
        process.proc.kill()
        await process.proc.wait()


def kill_quietly(pid: int | None) -> None:
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def task_row(db: Path, task_id: str) -> tuple[Any, ...] | None:
    if not db.exists():
        return None
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute(
            "SELECT state, reason FROM agent_tasks WHERE id = ?", (task_id,)
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


def in_order(events: list[dict[str, Any]]) -> bool:
    return [e["seq"] for e in events] == list(range(1, len(events) + 1))


@pytest.fixture
async def edges(
    nursery: trio.Nursery, tmp_path: Path
) -> AsyncIterator[tuple[FakeCloud, Edge, Edge, trio.Nursery]]:
    cloud = await nursery.start(FakeCloud([TOKEN]).serve)
    one, two = make_edge(tmp_path, "one", cloud), make_edge(tmp_path, "two", cloud)
    try:
        one.process = await start_edge(nursery, *one.args, env=one.env)
        two.process = await start_edge(nursery, *two.args, env=two.env)
        with trio.fail_after(SOON):
            await cloud.wait_for(lambda: agent_named(cloud, "one") and agent_named(cloud, "two"))
        yield cloud, one, two, nursery
    finally:
        with trio.CancelScope(shield=True):
            await stop(one)
            await stop(two)


async def test_two_edges_collaborate_through_the_cloud(
    edges: tuple[FakeCloud, Edge, Edge, trio.Nursery],
) -> None:
    cloud, _one, two, nursery = edges
    one_id, two_id = agent_named(cloud, "one"), agent_named(cloud, "two")
    assert one_id is not None
    assert two_id is not None

    async def ask_one(tool: str, args: dict[str, Any], **extra: Any) -> str:
        return await cloud.ask_agent(
            one_id, "agent_ask", {"agent": "two", "tool": tool, "args": args, **extra}
        )

    # A request, its progress, the response.
    with trio.fail_after(SOON):
        task = await ask_one("ticker__count", {"n": 3})
        final = await cloud.agent_final(task)
    events = cloud.agent_events(task)
    assert final["state"] == "completed", final
    assert final["result"]["output"] == "counted to 3"
    assert in_order(events)
    assert [e["progress"] for e in events if "progress" in e] == [1, 2, 3]

    # A cancel cascades: edge one's task, the task it handed to edge two, its process.
    command = "echo $$ > sleeper; exec sleep 300"
    sleeper: int | None = None
    try:
        with trio.fail_after(SOON):
            task = await ask_one("terminal", {"command": command, "timeout": 600}, timeout=600)
            await until(lambda: two.read_pid("sleeper") is not None, poll=0.05)
            sleeper = two.read_pid("sleeper")
            assert sleeper is not None
            assert alive(sleeper)
            await cloud.cancel_agent_task(task, "changed my mind")
            final = await cloud.agent_final(task)
            assert final["state"] == "canceled"
            assert final["message"] == "changed my mind"
            await until(lambda: not alive(sleeper), poll=0.05)
            received = len(cloud.routes[task].received)
            await cloud.cancel_agent_task(task, "again")  # a no-op
            await trio.sleep(0.5)
            assert len(cloud.routes[task].received) == received
    finally:
        kill_quietly(sleeper)

    # A deadline: the task fails, saying why.
    with trio.fail_after(SOON):
        task = await cloud.ask_agent(
            two_id, "terminal", {"command": "sleep 60"}, deadline=time.time() + 2
        )
        final = await cloud.agent_final(task)
    assert final["state"] == "failed"
    assert "deadline passed" in final["message"]

    # A reconnect of each edge mid-stream: every event once, in order, and the response.
    cloud.away_grace = 30.0  # they come back well before
    with trio.fail_after(SOON):
        task = await ask_one("ticker__count", {"n": 16, "step": 0.15})
        await until(lambda: len(cloud.agent_events(task)) >= 5, poll=0.02)
        await cloud.drop_agent(one_id)
        await cloud.wait_agent(one_id)
        await until(lambda: len(cloud.agent_events(task)) >= 12, poll=0.02)
        await cloud.drop_agent(two_id)
        final = await cloud.agent_final(task)
    events = cloud.agent_events(task)
    assert final["state"] == "completed", final
    assert final["result"]["output"] == "counted to 16"
    assert in_order(events)
    assert [e["progress"] for e in events if "progress" in e] == list(range(1, 17))

    # Edge two killed mid-task: edge one's task fails, it does not hang.
    cloud.away_grace = 1.0
    sleeper = None
    assert two.process is not None
    try:
        with trio.fail_after(SOON):
            await cloud.wait_agent(two_id)
            (two.workspace / "sleeper").unlink()
            task = await ask_one("terminal", {"command": command, "timeout": 600}, timeout=600)
            await until(lambda: two.read_pid("sleeper") is not None, poll=0.05)
            sleeper = two.read_pid("sleeper")
            handed = next(t for t, r in cloud.routes.items() if r.requester == one_id
                          and r.responder == two_id and not r.done)  # fmt: skip
            two.process.proc.kill()
            assert await two.process.proc.wait() == -signal.SIGKILL
            final = await cloud.agent_final(task)
        assert final["state"] == "failed"
        assert f"agent {two_id} went away" in final["result"]["error"]
        assert task_row(two.db, handed) == ("working", None)
    finally:
        kill_quietly(sleeper)

    # Edge two, started again, fails the task it was running when it was killed.
    two.process = await start_edge(nursery, *two.args, env=two.env)
    with trio.fail_after(SOON):
        await cloud.wait_agent(two_id)  # the same agent id
        await until(lambda: task_row(two.db, handed) == ("failed", STOPPED), poll=0.05)
