"""Nothing a file call does stalls ``edge run``: not a pathological regex, not a FIFO.

A real ``edge run`` subprocess against the fake cloud: pongs keep coming while
grep chews on ``(a+)+$`` (RE2, linear time, the GIL let go while it matches),
a FIFO is refused at once instead of blocking a thread for ever, and SIGTERM
still stops the daemon.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from edge.dev.cloud import FakeCloud

from ..conftest import TOKEN

pytestmark = pytest.mark.usefixtures("no_child_left")

#: Lines of ``(a+)+$`` bait: Python's backtracking ``re`` takes minutes over each.
BAIT = "a" * 32 + "b\n"


@asynccontextmanager
async def edge_run(
    tmp_path: Path, cloud: FakeCloud, workspace: Path, call_timeout: float
) -> AsyncIterator[trio.Process]:
    """``edge run`` as a real process, connected to ``cloud``; killed if still running."""
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    config = tmp_path / "edge.toml"
    config.write_text(f"[workers]\ntimeout = {call_timeout}\n")
    env = dict(os.environ)
    env.pop("EDGE_TOKEN", None)
    for name in ("CONFIG", "DATA", "STATE"):
        env[f"XDG_{name}_HOME"] = str(tmp_path / name.lower())
    cmd = [sys.executable, "-m", "edge", "run", "--cloud", cloud.url, "--token-file", str(token),
           "--workspace", str(workspace), "--no-control", "--config", str(config),
           "--log-level", "WARNING"]
    log = os.open(tmp_path / "edge.log", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        proc = await trio.lowlevel.open_process(cmd, env=env, stderr=log)
    finally:
        os.close(log)
    try:
        with trio.fail_after(30):
            await cloud.wait_connected()
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


async def pong_or_give_up(cloud: FakeCloud, patience: float = 2.0) -> float:
    with trio.move_on_after(patience):
        return await cloud.ping()
    return patience


def write_pathological(path: Path, lines: int) -> None:
    with open(path, "w") as f:
        f.write(BAIT * 3)
        f.write("a" * (3 * 1024 * 1024) + "b\n")  # a long line: searched in its first 1 MiB
        for _ in range(lines // 1000):
            f.write(BAIT * 1000)
        f.write("aaaa\n")


async def test_a_pathological_regex_does_not_stall_pongs(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, tmp_path: Path
) -> None:
    write_pathological(workspace / "bait.txt", lines=200_000)
    async with edge_run(tmp_path, cloud, workspace, call_timeout=30) as _:
        with trio.fail_after(60):
            call = await cloud.start_call("grep", {"pattern": r"(a+)+$", "path": "bait.txt"})
            pongs = []
            while call not in cloud.results:
                pongs.append(await pong_or_give_up(cloud))
                if pongs[-1] >= 2.0:
                    break
                await trio.sleep(0.005)
            worst = max(pongs) * 1e3
            print(f"\nworst pong during a pathological grep: {worst:.1f} ms, {len(pongs)} pings")
            assert max(pongs) < 0.5  # before RE2: minutes, the GIL held by Python's re
            result = await cloud.result(call)
    lines = [m["line"] for m in result["matches"]]
    assert lines == [4, 200_005]  # the cut long line ends in a's, and the last line
    assert len(result["matches"][0]["text"]) == 500


async def test_a_backreference_is_refused_with_a_reason(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, tmp_path: Path
) -> None:
    (workspace / "f.txt").write_text("abab\n")
    async with edge_run(tmp_path, cloud, workspace, call_timeout=10) as _:
        with trio.fail_after(20):
            result = await cloud.call("grep", {"pattern": r"(ab)\1"})
            lookahead = await cloud.call("grep", {"pattern": r"a(?=b)"})
    assert result == {
        "error": "pattern uses a backreference (\\1), which grep does not support: "
        "grep uses RE2 syntax, linear time"
    }
    assert "a lookahead" in lookahead["error"]


async def test_a_fifo_holds_up_neither_calls_nor_shutdown(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, tmp_path: Path
) -> None:
    os.mkfifo(workspace / "fifo")
    (workspace / "d").mkdir()
    os.mkfifo(workspace / "d" / "pipe")
    (workspace / "d" / "note.txt").write_text("needle\n")
    async with edge_run(tmp_path, cloud, workspace, call_timeout=3) as proc:
        start = trio.current_time()
        with trio.fail_after(10):  # opening the FIFO for reading would block for ever
            read = await cloud.call("file_read", {"path": "fifo"})
            grep = await cloud.call("grep", {"pattern": "x", "path": "fifo"})
            tree = await cloud.call("grep", {"pattern": "needle", "path": "d"})
        answered = trio.current_time() - start
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            code = await proc.wait()
        stopped = trio.current_time() - start - answered
    print(f"\nFIFO calls answered in {answered:.3f} s; SIGTERM to exit {stopped:.3f} s")
    assert read == {"error": f"{workspace}/fifo is a FIFO, not a regular file"}
    assert grep == {"error": f"{workspace}/fifo is a FIFO, not a regular file"}
    assert tree["output"] == "d/note.txt:1:needle"
    assert answered < 3  # answered, not timed out
    assert code == 0
    assert stopped < 5
