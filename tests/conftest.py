"""Shared fixtures: a fake cloud on loopback, a workspace, a running daemon, leak probes.

Also suite-wide settings: hypothesis runs without its per-example deadline (a
timed assertion, which tests do not make, on a busy machine); a skip raised
inside a trio test keeps its reason in ``-ra``; and a report's captured text is
made encodable as UTF-8, which pytest-xdist's workers send it in (see
``pytest_runtest_makereport``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from hypothesis import HealthCheck, settings

from edge.config import Config
from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud
from edge.net.backoff import Backoff
from edge.nurseries.tunnel import TunnelOptions
from edge.secret import Secret

TOKEN = "test-token-123"

#: Seconds a daemon started by a test has to connect to the fake cloud (a bound on failure).
CONNECT_WITHIN: Final = 30.0

settings.register_profile(
    "edge", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("edge")


def _only_leaf(exc: BaseException | None) -> BaseException | None:
    """The one exception inside ``exc``'s nested groups, if it holds exactly one."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return None if isinstance(exc, BaseExceptionGroup) else exc


def _utf8(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates) backslash-escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


#: Workers per idle core: most tests wait on subprocesses, sockets and sleeps.
WORKERS_PER_IDLE_CORE: Final = 1.5
#: At most this many workers (each starts daemons, PulseAudio, browsers of its own).
MAX_WORKERS: Final = 3


def idle_cores(seconds: float = 0.5) -> float:
    """How many cores were idle over the last ``seconds`` (``/proc/stat``; all of them
    where it cannot be read)."""
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    cores = os.cpu_count() or 1
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return float(cores)
    if total1 <= total0:
        return float(cores)
    return cores * (idle1 - idle0) / (total1 - total0)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: workers for the cores idle now, so that a machine busy with other work
    runs the suite in one worker (its time bounds are sized for a loaded machine, not for
    three workers sharing what little CPU is left) and an idle one in up to three."""
    return max(1, min(MAX_WORKERS, round(idle_cores() * WORKERS_PER_IDLE_CORE)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Give back the reason of a skip raised inside a trio test.

    pytest-trio (0.8) turns a ``pytest.skip(reason)`` that reaches it inside an
    exception group (a test or fixture running in a nursery) into a bare
    ``pytest.skip()`` raised while handling the group, so ``-ra`` would print
    only "Skipped". The reason is taken back from the group.
    """
    report = yield
    # Under pytest-xdist a report travels to the controller as UTF-8: a lone surrogate in
    # captured output or logs (tests/test_logs.py logs one on purpose) is escaped.
    report.sections = [(title, _utf8(text)) for title, text in report.sections]
    bare = call.excinfo.value if call.excinfo is not None else None
    if report.skipped and isinstance(bare, pytest.skip.Exception) and not bare.msg:
        inner = _only_leaf(bare.__context__)
        if isinstance(inner, pytest.skip.Exception) and inner.msg:
            path, line, _ = item.location
            report.longrepr = (path, (line or 0) + 1, f"Skipped: {inner.msg}")
    return report


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
async def cloud(nursery: trio.Nursery) -> FakeCloud:
    return await nursery.start(FakeCloud([TOKEN]).serve)


def make_config(workspace: Path, cloud: FakeCloud | None = None, **overrides: Any) -> Config:
    cfg = Config(
        workspace=workspace,
        cloud_url=cloud.url if cloud is not None else None,
        token=Secret(TOKEN) if cloud is not None else None,
        control=None,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def fast_tunnel(**extra: Any) -> TunnelOptions:
    """Tunnel options that keep reconnect tests short on the real clock."""
    return TunnelOptions(**{"backoff": Backoff(first=0.05, cap=0.2, jitter=0.0), **extra})


@pytest.fixture
async def edge(nursery: trio.Nursery, cloud: FakeCloud, workspace: Path) -> AsyncIterator[Daemon]:
    daemon = await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=fast_tunnel()).run)
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
    yield daemon


def task_tree() -> list[str]:
    """Names of every task trio is running now."""
    names: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        names.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    walk(trio.lowlevel.current_root_task())
    return names


def _processes() -> Iterator[tuple[int, str, int, int]]:
    """(pid, state, parent pid, process group) of every process in /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        yield int(entry), fields[0], int(fields[1]), int(fields[2])


def processes_in_group(pgid: int) -> list[int]:
    """Pids of live (not zombie) processes whose process group is ``pgid``."""
    return [pid for pid, state, _, group in _processes() if group == pgid and state != "Z"]


def child_processes(pid: int | None = None) -> list[int]:
    """Pids of live children of ``pid`` (default: this process)."""
    parent = os.getpid() if pid is None else pid
    return [p for p, state, ppid, _ in _processes() if ppid == parent and state != "Z"]


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@pytest.fixture
def no_child_left() -> Iterator[None]:
    before = set(child_processes())
    yield
    assert set(child_processes()) - before == set()


async def until(predicate: Any, poll: float = 0.005) -> None:
    """Wait until ``predicate()`` holds, for state that signals no event (daemon internals)."""
    while not predicate():
        await trio.sleep(poll)


class Proxy:
    """A loopback TCP proxy that can freeze: bytes stop flowing both ways, sockets stay open."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.frozen = False

    async def serve(self, *, task_status: trio.TaskStatus[Proxy] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client, await trio.open_tcp_stream("127.0.0.1", self.target_port) as upstream:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
                nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope) -> None:
        try:
            async for chunk in src:
                while self.frozen:
                    await trio.sleep(0.01)
                await dst.send_all(chunk)
        except trio.BrokenResourceError:
            pass
        scope.cancel()


def edge_cmd(*args: str) -> list[str]:
    """The ``edge`` command line, run with this interpreter."""
    return [sys.executable, "-m", "edge", *args]


class EdgeProcess:
    """``edge run`` in a subprocess, its stderr collected as it comes."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.log = ""

    async def collect(self) -> None:
        assert self.proc.stderr is not None
        async for chunk in self.proc.stderr:
            self.log += chunk.decode()

    async def wait_for_log(self, text: str) -> None:
        await until(lambda: text in self.log, poll=0.01)


async def start_edge(nursery: trio.Nursery, *args: str, env: dict[str, str]) -> EdgeProcess:
    """Start ``edge run ARGS`` with ``env``; its log is collected in ``nursery``."""
    proc = await trio.lowlevel.open_process(edge_cmd("run", *args), env=env, stderr=subprocess.PIPE)
    edge = EdgeProcess(proc)
    nursery.start_soon(edge.collect)
    return edge
