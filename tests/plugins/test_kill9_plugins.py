"""``kill -9`` on a real ``edge run`` with a plugin: its runners go too, and the next
``edge run`` removes the runtime directory the killed one left."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
import trio

from ..conftest import start_edge, until
from .kit import alive, runner_pids, write_plugin

pytestmark = [pytest.mark.slow]


async def test_kill_9_of_edge_ends_its_runners(
    nursery: trio.Nursery, workspace: Path, tmp_path: Path
) -> None:
    base = Path(tempfile.mkdtemp(prefix="edge-t-", dir="/tmp"))
    try:
        config = tmp_path / "config"
        write_plugin(config / "edge" / "plugins", "calc", "@plugin.tool\ndef one() -> int:\n    return 1\n")
        env = dict(os.environ)
        env.update(
            XDG_CONFIG_HOME=str(config),
            XDG_DATA_HOME=str(tmp_path / "data"),
            XDG_STATE_HOME=str(tmp_path / "state"),
            XDG_RUNTIME_DIR=str(base),
        )
        env.pop("EDGE_TOKEN", None)
        args = ["--workspace", str(workspace), "--no-control", "--log-level", "INFO"]
        first = await start_edge(nursery, *args, env=env)
        try:
            with trio.fail_after(30):
                await first.wait_for_log("plugin calc is running")
                await until(lambda: runner_pids(first.proc.pid) != [])
            runners = runner_pids(first.proc.pid)  # the plugin's, and the spare once it is up
            dirs = list(base.glob("edge-plugins-*"))
            assert len(dirs) == 1, [(d, list(d.iterdir())) for d in dirs]
            (left,) = dirs
            first.proc.send_signal(signal.SIGKILL)
            await first.proc.wait()
            with trio.fail_after(10):  # a runner sees its socket close and exits
                await until(lambda: not any(alive(pid) for pid in runners))
            assert left.exists()  # nobody was there to remove it
        finally:
            if first.proc.returncode is None:
                first.proc.kill()
                await first.proc.wait()
        second = await start_edge(nursery, *args, env=env)
        try:
            with trio.fail_after(30):
                await second.wait_for_log("plugin calc is running")
            assert not left.exists()
            assert len(list(base.glob("edge-plugins-*"))) == 1
            second.proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                assert await second.proc.wait() == 0
            assert list(base.glob("edge-plugins-*")) == []
        finally:
            if second.proc.returncode is None:
                second.proc.kill()
                await second.proc.wait()
    finally:
        shutil.rmtree(base, ignore_errors=True)
