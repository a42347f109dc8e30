"""File tools against a process that swaps directories and files for symlinks out of the roots.

A real child process exchanges, in a tight loop (``renameat2(RENAME_EXCHANGE)``),
a directory inside the workspace with a symlink to a sentinel directory
outside, and a file with a symlink to a secret file outside, while thousands
of file-tool calls go through the real tunnel from the fake cloud. Nothing
outside may be read, written or deleted, however the calls and the swaps fall.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.daemon import Daemon, build_registry
from edge.dev.cloud import FakeCloud
from edge.tools.execute import Executor
from edge.tools.policy import Policy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's"),
]

SWAPPER_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }
int main(int argc, char **argv) {
    long swaps = 0;
    signal(SIGTERM, on_term);
    while (!stop)
        for (int i = 1; i + 1 < argc; i += 2)
            if (syscall(SYS_renameat2, AT_FDCWD, argv[i], AT_FDCWD, argv[i + 1],
                        RENAME_EXCHANGE) == 0)
                swaps++;
    printf("%ld\n", swaps);
    return 0;
}
"""

SWAPPER_PY = r"""
import ctypes, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
pairs = [(a.encode(), b.encode()) for a, b in zip(sys.argv[1::2], sys.argv[2::2])]
swaps = 0
while not stop:
    for a, b in pairs:
        swaps += libc.renameat2(-100, a, -100, b, 2) == 0
print(swaps)
"""

#: Victim files: one per delete or move call that aims at them.
VICTIMS = 600


class Swapper:
    """The swapping child process; ``stop()`` returns how many exchanges it made."""

    def __init__(self, tmp: Path, pairs: list[tuple[Path, Path]]) -> None:
        args = [str(p) for pair in pairs for p in pair]
        cc = shutil.which("cc")
        if cc is not None:
            subprocess.run([cc, "-O2", "-o", tmp / "swapper", "-x", "c", "-"], input=SWAPPER_C,
                           text=True, check=True)
            cmd = [str(tmp / "swapper"), *args]
        else:
            cmd = [sys.executable, "-c", SWAPPER_PY, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        return int(out.strip() or 0)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Scene:
    """The workspace, the sentinel outside it, and what must stay as it is outside."""

    def __init__(self, tmp: Path) -> None:
        self.ws, self.outside = tmp / "ws", tmp / "outside"
        self.secret = f"SENTINEL-{secrets.token_hex(8)}"
        self.secret_size = 1234
        for top, secret in ((self.outside, self.secret), (self.ws / "d", "inside d")):
            (top / "victims").mkdir(parents=True)
            (top / "sub").mkdir()
            (top / "secret.txt").write_text(secret.ljust(self.secret_size - 1) + "\n"
                                            if top == self.outside else secret + "\n")
            (top / "keep.txt").write_text("keep me\n")
            for i in range(VICTIMS):
                (top / "victims" / f"v{i}").write_text(f"victim {i}\n")
        (self.outside / "outside-only-marker").write_text("marker\n")
        (self.ws / "f").write_text("inside f\n")
        (self.ws / "src").mkdir()
        os.symlink(self.outside, self.ws / "l")
        os.symlink(self.outside / "secret.txt", self.ws / "fl")
        self.before = self.snapshot()

    def pairs(self) -> list[tuple[Path, Path]]:
        return [(self.ws / "d", self.ws / "l"), (self.ws / "f", self.ws / "fl")]

    def snapshot(self) -> dict[str, tuple[Any, ...]]:
        """Every entry outside: kind, size, mtime, and a file's content."""
        seen: dict[str, tuple[Any, ...]] = {}
        for dirpath, dirnames, filenames in os.walk(self.outside):
            for name in [*dirnames, *filenames, "."]:
                path = Path(dirpath) / name
                st = path.lstat()
                data = path.read_bytes() if path.is_file() else b""
                key = str(path.relative_to(self.outside))
                seen[key] = (st.st_mode, st.st_size, st.st_mtime_ns, data)
        return seen

    def calls(self, n: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """``n`` calls aimed through the swapped names, of every kind."""
        victims = iter(range(VICTIMS))
        kinds: list[Callable[[int], tuple[str, dict[str, Any]]]] = [
            lambda i: ("file_read", {"path": "d/secret.txt"}),
            lambda i: ("file_read", {"path": "fl"}),
            lambda i: ("file_read", {"path": "l/secret.txt"}),
            lambda i: ("grep", {"pattern": "SENTINEL|inside", "path": "d", "glob": "*.txt"}),
            lambda i: ("grep", {"pattern": "SENTINEL", "path": "fl"}),
            lambda i: ("file_write", {"path": "d/keep.txt", "content": f"overwritten {i}\n"}),
            lambda i: ("file_write", {"path": f"d/new-{i}.txt", "content": "new\n"}),
            lambda i: ("file_write", {"path": "fl", "content": f"{i}\n", "append": i % 2 == 0}),
            lambda i: ("file_ops", {"op": "delete", "path": f"d/victims/v{next(victims, 0)}"}),
            lambda i: ("file_ops", {"op": "move", "path": f"l/victims/v{next(victims, 0)}",
                                    "dest": f"moved/{i}"}),
            lambda i: ("file_ops", {"op": "move", "path": self._src(i), "dest": f"d/incoming-{i}"}),
            lambda i: ("file_ops", {"op": "list", "path": "d"}),
            lambda i: ("file_ops", {"op": "stat", "path": "d/secret.txt"}),
            lambda i: ("file_ops", {"op": "copy", "path": "d/secret.txt", "dest": f"copies/{i}"}),
            lambda i: ("file_ops", {"op": "copy", "path": "l/sub", "dest": f"trees/{i}"}),
            lambda i: ("file_ops", {"op": "mkdir", "path": f"d/sub/newdir-{i}/x"}),
            lambda i: ("file_ops", {"op": "delete", "path": "d/sub"}),
        ]
        for i in range(n):
            yield kinds[i % len(kinds)](i)

    def _src(self, i: int) -> str:
        (self.ws / "src" / f"s{i}").write_text("to move\n")
        return f"src/s{i}"

    def check(
        self,
        results: list[tuple[str, dict[str, Any], dict[str, Any]]],
        swaps: int,
        tools: tuple[str, ...] = ("file_read", "file_write", "file_ops", "grep"),
    ) -> None:
        reads = [r for r in results if self.secret in json.dumps(r[2])]
        reads += [r for r in results if r[2].get("size") == self.secret_size]
        reads += [r for r in results if "outside-only-marker" in json.dumps(r[2])]
        after = self.snapshot()
        changed = sorted(k for k in self.before.keys() & after.keys() if self.before[k] != after[k])
        deleted = sorted(self.before.keys() - after.keys())
        created = sorted(after.keys() - self.before.keys())
        leaked = [p for p in self.ws.rglob("*") if p.is_file() and not p.is_symlink()
                  and self.secret.encode() in p.read_bytes()]
        outcome = Counter(f"{tool}:{'error' if 'error' in r else 'ok'}" for tool, _, r in results)
        print(f"\n{len(results)} calls, {swaps} swaps, outside accesses: {len(reads)} reads, "
              f"{len(changed)} writes, {len(deleted)} deletes, {len(created)} creations, "
              f"{len(leaked)} copies of the secret; {dict(sorted(outcome.items()))}")
        errors = Counter(r["error"].split(":")[0][:60] for _, _, r in results if "error" in r)
        print(f"errors: {dict(errors.most_common(6))}")
        assert swaps > 0
        assert reads == [], reads[:3]
        assert (changed, deleted, created, leaked) == ([], [], [], [])
        for tool in tools:
            assert outcome[f"{tool}:ok"] > 0, outcome  # the calls were not all refused


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    scene = Scene(tmp_path)
    yield scene
    # Leave a tree pytest can remove: no symlinks in the middle of a swap.
    for path in scene.ws.rglob("*"):
        if path.is_symlink():
            path.unlink()


@pytest.fixture
def swapping(scene: Scene, tmp_path: Path) -> Iterator[Swapper]:
    swapper = Swapper(tmp_path, scene.pairs())
    try:
        yield swapper
    finally:
        swapper.kill()


async def run_batches(
    calls: Iterator[tuple[str, dict[str, Any]]],
    call: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]],
    batch: int,
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    results: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    pending = list(calls)

    async def one(tool: str, args: dict[str, Any]) -> None:
        results.append((tool, args, await call(tool, args)))

    for start in range(0, len(pending), batch):
        async with trio.open_nursery() as nursery:
            for tool, args in pending[start : start + batch]:
                nursery.start_soon(one, tool, args)
    return results


@pytest.fixture
async def tunnel_edge(nursery: trio.Nursery, cloud: FakeCloud, scene: Scene) -> Daemon:
    from ..conftest import fast_tunnel, make_config

    daemon = Daemon(make_config(scene.ws, cloud), tunnel_options=fast_tunnel())
    await nursery.start(daemon.run)
    with trio.fail_after(10):
        await cloud.wait_connected()
    return daemon


async def test_swaps_never_lead_file_tools_out_through_the_tunnel(
    scene: Scene, cloud: FakeCloud, tunnel_edge: Daemon, swapping: Swapper
) -> None:
    with trio.fail_after(60):
        results = await run_batches(scene.calls(2000), cloud.call, batch=40)
    scene.check(results, swapping.stop())


async def test_swaps_never_lead_the_portable_walk_out(scene: Scene, swapping: Swapper) -> None:
    executor = Executor(build_registry(), Policy.create(scene.ws, portable_walk=True), {})

    async def call(tool: str, args: dict[str, Any]) -> dict[str, Any]:
        return await executor.call(tool, args, approved=None)

    with trio.fail_after(60):
        results = await run_batches(scene.calls(1200), call, batch=20)
    scene.check(results, swapping.stop())


async def test_the_cloud_swapping_names_with_moves_cannot_read_out(
    scene: Scene, cloud: FakeCloud, tunnel_edge: Daemon
) -> None:
    # No other process: the cloud itself moves a link to the outside and a real
    # directory around (a move acts on the link itself) while it reads through both names.
    done = trio.Event()
    moves = 0

    async def rotate() -> None:
        nonlocal moves
        while not done.is_set():
            for path, dest in (("l", "t"), ("d", "l"), ("t", "d")):
                result = await cloud.call("file_ops", {"op": "move", "path": path, "dest": dest})
                assert "error" not in result, result
                moves += 1

    reads = [
        ("file_read", {"path": "d/secret.txt"}),
        ("file_read", {"path": "l/secret.txt"}),
        ("grep", {"pattern": "SENTINEL|inside", "path": "l"}),
        ("file_ops", {"op": "list", "path": "d"}),
    ] * 150
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rotate)
            results = await run_batches(iter(reads), cloud.call, batch=16)
            done.set()
    ok = [r for _, _, r in results if "error" not in r]
    print(f"\n{len(results)} reads during {moves} moves by the cloud, {len(ok)} answered")
    assert moves >= 20
    assert ok
    scene.check(results, swaps=moves, tools=("file_read", "file_ops", "grep"))
