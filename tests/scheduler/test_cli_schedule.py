"""``edge schedule``: real ``edge`` commands in subprocesses, against an in-process daemon's
control API on loopback, and without a daemon (the store edited directly)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Final

import pytest
import trio

from edge.daemon import Daemon

from ..conftest import edge_cmd, fast_tunnel, make_config
from ..test_cli import free_port

#: Seconds for anything here to happen on a loaded machine (a bound on failure only).
SOON: Final = 30.0

pytestmark = pytest.mark.usefixtures("no_child_left")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env.pop("EDGE_TOKEN", None)
    env["COLUMNS"] = "200"
    return env


class Done:
    def __init__(self, done: subprocess.CompletedProcess[bytes]) -> None:
        self.code = done.returncode
        self.out = done.stdout.decode()
        self.err = done.stderr.decode()


async def edge(env: dict[str, str], control: str, *args: str) -> Done:
    """``edge schedule ARGS --control CONTROL`` to the end."""
    with trio.fail_after(SOON):
        done = await trio.run_process(
            edge_cmd("schedule", *args, "--control", control),
            env=env, capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    return Done(done)


async def together(env: dict[str, str], control: str, *commands: tuple[str, ...]) -> list[Done]:
    """Several ``edge schedule`` commands at once (the suite runs on few cores: fewer waits)."""
    done: list[Done | None] = [None] * len(commands)

    async def one(i: int, args: tuple[str, ...]) -> None:
        done[i] = await edge(env, control, *args)

    async with trio.open_nursery() as nursery:
        for i, args in enumerate(commands):
            nursery.start_soon(one, i, args)
    return [d for d in done if d is not None]


def task_id(out: str) -> str:
    found = re.search(r"\bs-[0-9a-f]{6}\b", out)
    assert found, out
    return found[0]


async def test_without_a_daemon_the_store_is_edited_and_nothing_runs(
    env: dict[str, str], tmp_path: Path
) -> None:
    control = f"127.0.0.1:{free_port()}"  # nothing listens there
    added = await edge(
        env, control, "add", "--every", "5m", "terminal", "--args", '{"command": "true"}',
        "--name", "disk",
    )  # fmt: skip
    assert added.code == 0, added.err
    assert "scheduled" in added.out
    assert "(disk): every 5 min, terminal" in added.out
    assert "nothing runs until edge run" in added.err
    ident = task_id(added.out)
    db = tmp_path / "state" / "edge" / "edge.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, name, tool, origin FROM schedule_tasks").fetchall()
    assert rows == [(ident, "disk", "terminal", "local")]

    far, farther = await together(
        env, control,
        ("add", "--at", "9999-12-31T23:59:59-05:00", "terminal"),
        ("add", "--at", "9999-12-31T23:59", "--tz", "Etc/GMT+12", "terminal"),
    )  # fmt: skip
    for done in (far, farther):
        assert done.code == 2, done.err
        assert done.err.startswith("edge: error: "), done.err
        assert "years" in done.err
        assert "Traceback" not in done.err

    listed, history, ran, bad, bad_args = await together(
        env, control,
        ("list", "--json"), ("history", "disk"), ("run", "disk"),
        ("add", "--every", "soon", "terminal"),
        ("add", "--every", "5m", "terminal", "--args", "[1]"),
    )  # fmt: skip
    assert listed.code == 0, listed.err
    [row] = json.loads(listed.out)
    assert (row["id"], row["schedule"], row["lastRun"]) == (ident, "every 5 min", None)
    assert "nothing runs until edge run" in listed.err
    assert (history.code, history.out) == (0, "no runs yet\n")
    assert ran.code == 1
    assert "run needs one" in ran.err
    assert "edge run" in ran.err
    assert bad.code == 2
    assert bad.err.startswith("edge: error: not a duration"), bad.err
    assert bad_args.code == 2
    assert "--args must be a JSON object" in bad_args.err

    removed = await edge(env, control, "remove", "disk")
    assert removed.code == 0, removed.err
    assert "removed disk" in removed.out
    gone, empty = await together(env, control, ("remove", "disk"), ("list",))
    assert gone.code == 1
    assert "no scheduled task 'disk'" in gone.err
    assert empty.out.startswith("no scheduled tasks")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM schedule_tasks").fetchone() == (0,)


async def test_with_a_daemon_the_commands_drive_it(
    env: dict[str, str], tmp_path: Path, workspace: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state" / "edge"
    control = f"127.0.0.1:{free_port()}"
    # Added with no daemon: the daemon started later takes it from the store.
    offline = await edge(
        env, control, "add", "--cron", "0 9 * * *", "--tz", "UTC", "terminal",
        "--args", '{"command": "true"}', "--name", "morning",
    )  # fmt: skip
    assert offline.code == 0, offline.err
    host, port = control.rsplit(":", 1)
    cfg = make_config(workspace, control=(host, int(port)), state_dir=state)
    daemon: Daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    try:
        assert [t.name for t in daemon.scheduler.tasks()] == ["morning"]

        added = await edge(env, control, "add", "--every", "1h", "terminal", "--args",
                           '{"command": "echo hello"}', "--name", "greet")  # fmt: skip
        assert added.code == 0, added.err
        assert "(greet): every 1 h, terminal; next run 20" in added.out
        assert "nothing runs" not in added.err
        bad = await edge(env, control, "add", "--at", "2001-01-01T00:00Z", "terminal")
        assert bad.code == 2
        assert "in the past" in bad.err
        ident = task_id(added.out)
        assert daemon.scheduler.get(ident) is not None

        other = {**env, "XDG_STATE_HOME": str(tmp_path / "elsewhere")}  # not the daemon's key
        refused = await edge(other, control, "remove", "greet")
        ran = await edge(env, control, "run", "greet")
        assert (ran.code, ran.out) == (0, f"{ident}: ok\nhello\n"), ran.err
        assert refused.code == 1
        assert "local key" in refused.err
        assert daemon.scheduler.get(ident) is not None

        history, paused = await together(env, control, ("history", "greet"), ("pause", "greet"))
        assert history.code == 0
        assert f"{ident}  ok  hello" in history.out
        assert paused.code == 0
        assert paused.out.startswith(f"paused {ident}")
        assert daemon.scheduler.get(ident).paused  # type: ignore[union-attr]
        listed, missing = await together(env, control, ("list",), ("resume", "nope"))
        assert missing.code == 1
        assert "no scheduled task 'nope'" in missing.err
        line = next(row for row in listed.out.splitlines() if row.startswith(ident))
        assert re.search(r"greet .* ok .* paused$", line), line
        assert "morning" in listed.out
        assert "nothing runs" not in listed.err
        resumed = await edge(env, control, "resume", ident)
        assert resumed.code == 0
        assert not daemon.scheduler.get(ident).paused

        removed = await edge(env, control, "remove", "greet")
        assert removed.code == 0
        assert removed.out == f"removed {ident}\n"
        assert daemon.scheduler.get(ident) is None
    finally:
        await daemon.stop()
