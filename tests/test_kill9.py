"""``kill -9`` on a real ``edge run``: the cloud still gets an answer for every call.

One call is running (``sleep 30``) and one has finished while the cloud was
away, so its result waits in the journal. Edge is killed outright, started
again on the same state directory, and the cloud receives both: the finished
result, and an "interrupted" error for the call that was running.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest
import trio

from edge.dev.cloud import FakeCloud
from edge.nurseries.journal import INTERRUPTED
from edge.store import DB_FILE

from .conftest import TOKEN, start_edge, until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_child_left")]


def journaled(db: Path) -> tuple[list[str], list[str]]:
    """(running call ids, result call ids) in the journal of a live edge, as JSON texts."""
    if not db.exists():
        return [], []
    conn = sqlite3.connect(db, timeout=5)
    try:
        calls = [r[0] for r in conn.execute("SELECT call_id FROM journal_calls")]
        results = [r[0] for r in conn.execute("SELECT call_id FROM journal_results")]
    except sqlite3.OperationalError:  # the tables are not made yet
        return [], []
    finally:
        conn.close()
    return calls, results


def read_pgid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


def stop_group(pgid: int | None) -> None:
    if pgid is None:
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def test_kill_9_loses_no_result(
    nursery: trio.Nursery, workspace: Path, tmp_path: Path
) -> None:
    cloud = await nursery.start(FakeCloud([TOKEN]).serve)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    env = dict(os.environ)
    env.update(
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_STATE_HOME=str(tmp_path / "state"),
    )
    env.pop("EDGE_TOKEN", None)
    db = tmp_path / "state" / "edge" / DB_FILE
    args = ["--cloud", cloud.url, "--token-file", str(token_file), "--workspace", str(workspace)]
    args += ["--no-control", "--log-level", "INFO"]
    pgid_file = workspace / "pgid"
    first = await start_edge(nursery, *args, env=env)
    try:
        with trio.fail_after(30):
            await cloud.wait_connected()
            await cloud.start_call("terminal", {"command": "echo $$ > pgid; sleep 30"}, "running")
            command = "until [ -e go ]; do sleep 0.05; done; echo finished"
            await cloud.start_call("terminal", {"command": command}, "finished")
            await until(lambda: read_pgid(pgid_file) is not None, poll=0.02)
            cloud.refuse_status = 503  # the cloud goes away...
            await cloud.drop()
            (workspace / "go").touch()  # ... and then the second call finishes
            await until(lambda: journaled(db) == (['"running"'], ['"finished"']), poll=0.05)
        first.proc.kill()
        with trio.fail_after(10):
            assert await first.proc.wait() == -signal.SIGKILL
    finally:
        if first.proc.returncode is None:
            first.proc.kill()
        stop_group(read_pgid(pgid_file))
    assert cloud.results == {}

    cloud.refuse_status = None
    second = await start_edge(nursery, *args, env=env)
    try:
        with trio.fail_after(30):
            await cloud.wait_for(lambda: {"running", "finished"} <= set(cloud.results))
        lost = {"running", "finished"} - set(cloud.results)
        print(f"\nresults lost across kill -9: {len(lost)} of 2")
        assert cloud.results["finished"] == {"output": "finished\n", "exit_code": 0}
        interrupted = cloud.results["running"]
        assert interrupted["error"] == INTERRUPTED
        assert interrupted["interrupted"] is True
        with trio.fail_after(10):
            await until(lambda: journaled(db) == ([], []), poll=0.05)  # confirmed, forgotten
        second.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await second.proc.wait() == 0
    finally:
        if second.proc.returncode is None:
            second.proc.kill()
    assert "2 results from the last run wait for the cloud" in second.log, second.log
