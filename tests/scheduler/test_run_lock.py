"""The run lock: a running daemon holds it, and ``edge schedule`` then refuses to edit the
store behind it when its control API does not answer (``--no-control``, another port)."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from edge.daemon import Daemon
from edge.store import daemon_running, hold_run_lock

from ..conftest import make_config
from ..test_cli import edge_cmd, free_port


def test_the_lock_is_seen_while_held_and_only_then(tmp_path: Path) -> None:
    assert not daemon_running(tmp_path)  # no file yet
    with hold_run_lock(tmp_path), hold_run_lock(tmp_path):  # shared: two daemons may hold it
        assert daemon_running(tmp_path)
    assert not daemon_running(tmp_path)
    assert (tmp_path / "edge.lock").stat().st_mode & 0o777 == 0o600


async def test_edge_schedule_will_not_edit_a_running_daemons_store(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    state = tmp_path / "state" / "edge"  # where XDG_STATE_HOME below puts the CLI's
    workspace = tmp_path / "ws"
    workspace.mkdir()
    daemon: Daemon = await nursery.start(Daemon(make_config(workspace, state_dir=state)).run)
    assert daemon_running(state)
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "d"),
    }
    control = f"127.0.0.1:{free_port()}"  # nothing listens there
    with trio.fail_after(30):
        done = await trio.run_process(
            edge_cmd("schedule", "remove", "nope", "--control", control),
            env=env, capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "an edge daemon runs with the state directory" in err
    assert "Traceback" not in err
    await daemon.stop()
    await daemon.stopped.wait()
    assert not daemon_running(state)
