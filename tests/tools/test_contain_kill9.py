"""``kill -9`` of ``edge run`` mid-call: its command dies with it, the rest at the next start."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from edge.dev.cloud import FakeCloud

from ..conftest import TOKEN, start_edge, until
from .test_contain import marked

pytestmark = pytest.mark.usefixtures("no_child_left")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def markers() -> Iterator[tuple[str, str]]:
    pair = tuple(f"1000.{random.randrange(10**8):08d}" for _ in range(2))
    yield pair[0], pair[1]
    for marker in pair:  # whatever happens, no sleeper outlives the test
        for pid in marked(marker):
            os.kill(pid, signal.SIGKILL)


async def test_kill_9_then_restart_leaves_nothing(
    nursery: trio.Nursery, tmp_path: Path, workspace: Path, markers: tuple[str, str]
) -> None:
    cloud = await nursery.start(FakeCloud([TOKEN]).serve)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    env.pop("EDGE_TOKEN", None)
    args = ["--cloud", cloud.url, "--token-file", str(token_file),
            "--workspace", str(workspace), "--no-control"]
    first, second = markers
    command = f"echo $$ > leader; A={first}; B={second}; setsid sleep $A & sleep $B"
    edge = await start_edge(nursery, *args, env=env)
    try:
        with trio.fail_after(30):
            await cloud.wait_connected()
            await cloud.start_call("terminal", {"command": command, "timeout": 600})
            await until(lambda: bool(marked(first) and marked(second)), poll=0.02)
        leader = int((workspace / "leader").read_text())
        assert list((tmp_path / "state" / "edge" / "calls").glob("*.json")) != []

        edge.proc.kill()
        await edge.proc.wait()
        # PR_SET_PDEATHSIG: the call's shell dies with the daemon, at once.
        with trio.fail_after(5):
            await until(lambda: not alive(leader), poll=0.02)
        # What the shell had started is still there, outside the dead daemon's reach...
        assert marked(first)
        assert marked(second)

        # ...until the next start, which ends it before taking any call.
        edge = await start_edge(nursery, *args, env=env)
        with trio.fail_after(30):
            await until(lambda: "processes of terminal and code calls" in edge.log, poll=0.02)
        with trio.fail_after(3):
            await until(lambda: not marked(first) and not marked(second), poll=0.02)
        assert "ended 2 processes left by calls of an earlier run" in edge.log
        assert list((tmp_path / "state" / "edge" / "calls").glob("*.json")) == []
        edge.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await edge.proc.wait() == 0
    finally:
        if edge.proc.returncode is None:
            edge.proc.kill()
            await edge.proc.wait()
