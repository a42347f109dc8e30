"""Process groups are torn down whole: on success, timeout and cancellation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

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
