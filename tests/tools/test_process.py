"""Commands are torn down whole: on success, timeout and cancellation, group and containment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from edge.tools.contain import Containment
from edge.tools.process import run_captured

from ..conftest import processes_in_group


async def test_cancel_terminates_the_whole_group(tmp_path: Path) -> None:
    script = "echo $$ > pgid; (trap '' TERM; sleep 60) & sleep 60 & wait"
    with trio.move_on_after(0.5):
        await run_captured(["bash", "-c", script], cwd=tmp_path, env=os.environ)
    pgid = int((tmp_path / "pgid").read_text())
    # the TERM-ignoring child needed SIGKILL; it is gone too
    assert processes_in_group(pgid) == []


async def test_output_past_the_cap_is_counted_not_kept(tmp_path: Path) -> None:
    done = await run_captured(
        [sys.executable, "-c", "import sys; sys.stdout.write('y' * 5000)"],
        cwd=tmp_path, env=os.environ, max_bytes=1000,
    )
    assert done.exit_code == 0
    assert done.output == "y" * 1000
    assert done.dropped_bytes == 4000


async def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    done = await run_captured(["printf", "a\\377b"], cwd=tmp_path, env=os.environ)
    assert done.output == "a\ufffdb"


async def test_a_containment_ends_what_left_the_group(tmp_path: Path) -> None:
    """``setsid`` leaves the process group; the call's containment still holds it."""
    handle = Containment.create(tmp_path / "state")
    script = "setsid sleep 60 & echo $! > escaped; sleep 0.2"
    try:
        done = await run_captured(
            ["bash", "-c", script], cwd=tmp_path, env=os.environ, processes=handle
        )
    finally:
        handle.close()
    assert done.exit_code == 0
    escaped = int((tmp_path / "escaped").read_text())
    assert not alive(escaped)
    assert list((tmp_path / "state" / "calls").glob("*")) == []


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_the_call_token_is_in_the_environment(tmp_path: Path) -> None:
    done = await run_captured(["sh", "-c", 'echo "$EDGE_CALL"'], cwd=tmp_path, env=os.environ)
    assert len(done.output.strip()) == 16


async def test_output_of_a_contained_command(tmp_path: Path) -> None:
    handle = Containment.create(None)
    source = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    try:
        done = await run_captured(
            [sys.executable, "-c", source], cwd=tmp_path, env=os.environ, processes=handle
        )
    finally:
        handle.close()
    assert (done.exit_code, sorted(done.output.split())) == (3, ["err", "out"])
