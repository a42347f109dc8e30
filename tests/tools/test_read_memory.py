"""Reads stream: a 256 MiB line costs a bounded amount of memory, measured in a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux"),
]

#: The size of the one-line file (bytes).
BIG: Final = 256 * 1024 * 1024
#: How much more memory at its peak the process may use for a call (bytes).
BOUND: Final = 64 * 1024 * 1024

CHILD = r"""
import json, resource, sys
import trio
from edge.daemon import build_registry
from edge.tools.execute import Executor
from edge.tools.policy import Policy

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

async def main():
    executor = Executor(build_registry(), Policy.create(sys.argv[1]), {})
    warm = await executor.call("grep", {"pattern": "x", "path": "small.txt"}, approved=None)
    assert "output" in warm, warm
    await executor.call("file_read", {"path": "small.txt"}, approved=None)
    report = {}
    for name, tool, args in [
        ("file_read", "file_read", {"path": "big.txt", "limit": 1}),
        ("file_read offset", "file_read", {"path": "big.txt", "offset": 1}),
        ("grep", "grep", {"pattern": "a+b", "path": "big.txt"}),
    ]:
        before = peak()
        result = await executor.call(tool, args, approved=None)
        report[name] = {
            "grew": peak() - before,
            "output_chars": len(result.get("output", "")),
            "fields": {k: v for k, v in result.items() if k not in ("output", "matches")},
        }
    print(json.dumps(report))

trio.run(main)
"""


def test_a_huge_line_is_read_in_bounded_memory(workspace: Path) -> None:
    (workspace / "small.txt").write_text("x\n")
    block = b"a" * (1024 * 1024)
    with open(workspace / "big.txt", "wb") as f:
        for _ in range(BIG // len(block)):
            f.write(block)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(workspace)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for name, seen in report.items():
        print(f"\n{name} of a {BIG >> 20} MiB line: peak RSS grew {seen['grew'] / 2**20:.1f} MiB")
    read = report["file_read"]
    assert read["grew"] < BOUND  # before: the whole line, 500 MiB and more
    assert read["output_chars"] == 50_000
    assert read["fields"] == {"lines": 1, "size": BIG, "truncated": True}
    assert report["file_read offset"]["fields"] == {"lines": 0, "size": BIG}
    assert report["file_read offset"]["grew"] < BOUND
    grep = report["grep"]
    assert grep["grew"] < BOUND
    assert grep["fields"]["count"] == 0  # searched in its first MiB: all a's, no b
