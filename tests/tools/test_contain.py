"""Nothing a ``terminal`` call starts outlives it: setsid, set -m, double forks, nohup.

Each escape runs as a real ``terminal`` call through the executor, once per
mechanism this machine offers (a cgroup of its own per call, and the daemon as
child subreaper). The processes it leaves are found by a unique marker in their
argv (``sleep 1000.<random>``); every one must be gone when the call returns.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.daemon import build_registry, child_environment
from edge.errors import ConfigError
from edge.tools.contain import Containment
from edge.tools.execute import Executor
from edge.tools.leftovers import CallRecord, write_record
from edge.tools.policy import Policy
from edge.tools.procfs import Prctl, probe_cgroup, read_proc

from ..conftest import until


def marked(marker: str) -> list[int]:
    """Live processes whose argv holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and marker.encode() in argv:
            found.append(int(entry))
    return found


def zombie_children() -> list[int]:
    zombies = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            zombies.append(int(entry))
    return zombies


@pytest.fixture
def marker() -> Iterator[str]:
    """``1000.<random>``: a sleep length no other process on the machine uses."""
    digits = f"{random.randrange(10**8):08d}"
    yield f"1000.{digits}"
    for pid in marked(f"1000.{digits}"):  # a failed test leaves no sleeper behind
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def no_zombie_left() -> Iterator[None]:
    yield
    # trio reaps its own children as they exit: give a just-ended one a moment.
    deadline = time.monotonic() + 2
    while zombie_children() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert zombie_children() == []


@pytest.fixture(params=["cgroup", "subreaper"])
def containment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Containment]:
    if request.param == "cgroup" and isinstance(why := probe_cgroup(), str):
        pytest.skip(f"no cgroup v2 for calls here: {why}")
    try:
        handle = Containment.create(tmp_path / "state", mechanism=request.param)
    except ConfigError as exc:
        pytest.skip(str(exc))
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def executor(containment: Containment, workspace: Path) -> Executor:
    return Executor(
        registry=build_registry(),
        policy=Policy.create(workspace),
        env=child_environment(),
        processes=containment,
    )


def wait_for_marker(marker: str) -> str:
    """Shell that waits until a process with ``marker`` in argv runs (its own argv lacks it)."""
    number, digits = marker.split(".")
    return f'until grep -qs "{number}[.]{digits}" /proc/[0-9]*/cmdline; do sleep 0.01; done'


def script(escape: str, marker: str) -> str:
    """``escape`` with ``$M`` standing for the marker, then a wait until it runs.

    The marker is put together at run time, so the shell's own argv never holds it.
    """
    number, digits = marker.split(".")
    return f"M={number}.; M=${{M}}{digits}\n{escape}\n{wait_for_marker(marker)}\necho started"


DOUBLE_FORK = (
    f"{sys.executable} -c 'import os, time; "
    "os.fork() or (os.setsid(), os.fork() or time.sleep(1000))' $M"
)

ESCAPES = {
    "setsid-background": "setsid sleep $M &",
    "setsid-fork": "setsid -f sleep $M",
    "job-control": "set -m; sleep $M &",
    "double-fork": DOUBLE_FORK,
    "nohup-setsid": "nohup setsid sleep $M >/dev/null 2>&1 &",
    "ignores-sigterm": "trap '' TERM; setsid sleep $M &",
}


async def assert_gone_soon(marker: str) -> None:
    with trio.move_on_after(1):
        await until(lambda: not marked(marker), poll=0.02)
    assert marked(marker) == [], f"left running after the call: {marker}"


@pytest.mark.parametrize("escape", ESCAPES.values(), ids=ESCAPES.keys())
async def test_escapes_end_with_the_call(executor: Executor, marker: str, escape: str) -> None:
    with trio.fail_after(20):
        result = await executor.call("terminal", {"command": script(escape, marker)}, approved=None)
    assert result.get("exit_code") == 0, result
    assert result["output"].endswith("started\n")
    await assert_gone_soon(marker)


async def test_without_cgroup_kill_a_kill_loop_empties_the_cgroup(
    executor: Executor, containment: Containment, marker: str
) -> None:
    """Before Linux 5.14 there is no ``cgroup.kill``: SIGKILL each pid until it is empty."""
    if containment.site is None:
        pytest.skip("only the cgroup mechanism has cgroup.kill")
    containment.site = dataclasses.replace(containment.site, kill=False)
    escape = "trap '' TERM; setsid -f sleep $M; set -m; sleep $M &"
    with trio.fail_after(20):
        result = await executor.call("terminal", {"command": script(escape, marker)}, approved=None)
    assert result.get("exit_code") == 0, result
    await assert_gone_soon(marker)


async def test_a_cleared_environment_and_double_fork(executor: Executor, marker: str) -> None:
    """``env -i`` removes the call's token: only the cgroup still holds such a process."""
    if executor.processes is not None and executor.processes.mechanism != "cgroup":
        pytest.xfail("the subreaper finds orphans by their token, which env -i removes")
    escape = "env -i /usr/bin/setsid -f /bin/sleep $M"
    with trio.fail_after(20):
        result = await executor.call("terminal", {"command": script(escape, marker)}, approved=None)
    assert result.get("exit_code") == 0, result
    await assert_gone_soon(marker)


async def test_a_cancelled_call_ends_everything(executor: Executor, marker: str) -> None:
    command = f"M={marker}; setsid sleep $M & sleep $M"
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def call() -> None:
            with scope:
                await executor.call("terminal", {"command": command}, approved=None)

        nursery.start_soon(call)
        with trio.fail_after(20):
            await until(lambda: len(marked(marker)) == 2, poll=0.02)
        scope.cancel()
    await assert_gone_soon(marker)


async def test_a_timed_out_call_ends_everything(executor: Executor, marker: str) -> None:
    command = f"M={marker}; setsid -f sleep $M; trap '' TERM; sleep $M"
    with trio.fail_after(20):
        result = await executor.call("terminal", {"command": command, "timeout": 1}, approved=None)
    assert result.get("timed_out") is True, result
    await assert_gone_soon(marker)


async def test_orphans_that_exit_early_are_reaped(executor: Executor) -> None:
    """Under the subreaper, an orphan that exits during the call is the daemon's to reap."""
    with trio.fail_after(20):
        result = await executor.call(
            "terminal", {"command": "(sleep 0.1 &); (setsid sleep 0.1 &); sleep 0.5"}, approved=None
        )
    assert result.get("exit_code") == 0, result
    # the autouse fixture checks that no zombie is left


async def test_code_calls_are_contained_too(executor: Executor, marker: str) -> None:
    source = (
        "import os, subprocess, time\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "def running():\n"
        "    for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "        try:\n"
        "            with open(f'/proc/{pid}/cmdline', 'rb') as f:\n"
        f"                if b'{marker}' in f.read().split(bytes(1)):\n"
        "                    return True\n"
        "        except OSError:\n"
        "            pass\n"
        "while not running():\n"
        "    time.sleep(0.01)\n"
    )
    args = {"language": "python", "source": source}
    with trio.fail_after(20):
        result = await executor.call("code", args, approved=None)
    assert result.get("exit_code") == 0, result
    await assert_gone_soon(marker)


async def test_a_running_call_is_recorded_privately(
    executor: Executor, containment: Containment, marker: str
) -> None:
    assert containment.calls_dir is not None
    command = f"M={marker}; sleep $M"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            partial(executor.call, "terminal", {"command": command}, approved=None)
        )
        with trio.fail_after(20):
            await until(lambda: bool(marked(marker)), poll=0.02)
            (record,) = containment.calls_dir.glob("*.json")
            # Written before the command starts, and again with its leader once it runs:
            # the command may be running before the daemon has rewritten the record.
            await until(lambda: CallRecord.from_json(record.read_text()).leader is not None)
        assert record.stat().st_mode & 0o777 == 0o600
        saved = CallRecord.from_json(record.read_text())
        assert saved.leader is not None
        assert saved.daemon == os.getpid()
        assert (saved.cgroup is not None) == (containment.mechanism == "cgroup")
        nursery.cancel_scope.cancel()
    assert list(containment.calls_dir.glob("*.json")) == []


async def test_leftovers_of_a_dead_daemon_are_ended_at_start(
    containment: Containment, marker: str
) -> None:
    """A record whose daemon is gone names processes: the next start ends them."""
    assert containment.calls_dir is not None
    dead = await trio.lowlevel.open_process(["true"])
    await dead.wait()
    token = "feedfacefeedface"
    cgroup = None
    if containment.site is not None:
        cgroup = containment.site.base.parent / f"edge-{dead.pid}" / token
        cgroup.mkdir(parents=True)
    sleeper = await trio.lowlevel.open_process(
        ["sleep", marker], env={**os.environ, "EDGE_CALL": token}, start_new_session=True,
        preexec_fn=None if cgroup is None else _joiner(cgroup),
    )
    try:
        where = None if cgroup is None else str(cgroup)
        record = CallRecord(token, where, None, None, dead.pid, None)
        write_record(containment.calls_dir / f"{token}.json", record)
        with trio.fail_after(10):
            assert await containment.sweep_leftovers() == 1
            assert await sleeper.wait() == -signal.SIGKILL
        assert list(containment.calls_dir.glob("*.json")) == []
        assert cgroup is None or not cgroup.parent.exists()
    finally:
        sleeper.kill()
        await sleeper.wait()


def _joiner(cgroup: Path) -> Any:
    def join() -> None:
        with open(cgroup / "cgroup.procs", "w") as f:
            f.write("0")

    return join


async def test_a_live_daemons_records_are_left_alone(containment: Containment) -> None:
    assert containment.calls_dir is not None
    path = containment.calls_dir / "0123456789abcdef.json"
    init = read_proc(1)
    assert init is not None
    write_record(path, CallRecord("0123456789abcdef", None, None, None, 1, init.start))
    assert await containment.sweep_leftovers() == 0
    assert path.exists()


def test_describes_its_mechanism(containment: Containment) -> None:
    text = containment.describe()
    if containment.mechanism == "cgroup":
        assert text == f"cgroup v2 at {containment.site.base if containment.site else ''}"
        assert text.endswith(f"/edge-{os.getpid()}")
    else:
        assert text.startswith("subreaper")


def test_closing_gives_the_subreaper_flag_back(tmp_path: Path) -> None:
    prctl = Prctl.load()
    if prctl is None:
        pytest.skip("prctl is Linux only")
    before = prctl.child_subreaper()
    handle = Containment.create(tmp_path, mechanism="subreaper")
    assert prctl.child_subreaper()
    handle.close()
    assert prctl.child_subreaper() == before


PDEATHSIG_SOURCE = (
    "import ctypes\n"
    "sig = ctypes.c_int()\n"
    "ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG\n"
    "print(sig.value)\n"
)


@pytest.mark.parametrize("via", ["setpriv", "preexec_fn"])
async def test_the_command_dies_with_the_daemon(
    executor: Executor, containment: Containment, via: str
) -> None:
    """Its parent-death signal is SIGKILL, whichever way the child was set up."""
    if via == "setpriv" and containment.setpriv is None:
        pytest.skip("setpriv with --pdeathsig is not installed")
    if via == "preexec_fn":
        containment.setpriv = None
    with trio.fail_after(20):
        result = await executor.call(
            "code", {"language": "python", "source": PDEATHSIG_SOURCE}, approved=None
        )
    assert result == {"output": f"{int(signal.SIGKILL)}\n", "exit_code": 0}


@pytest.mark.slow
async def test_a_call_outlives_the_worker_thread_idle_timeout(
    executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent-death signal follows the forking thread: it must be the loop's, not a worker's.

    trio's worker threads exit after ``IDLE_TIMEOUT`` (10 s) idle; a command forked
    from one would be killed then. The test shortens that to 1 s (a new worker thread
    reads it when it starts waiting) and outlives it three times over.
    """
    from trio._core import _thread_cache

    monkeypatch.setattr(_thread_cache, "IDLE_TIMEOUT", 1)
    await trio.to_thread.run_sync(lambda: None)  # a worker thread exists, and goes idle
    with trio.fail_after(40):
        result = await executor.call("terminal", {"command": "sleep 3; echo lived"}, approved=None)
    assert result == {"output": "lived\n", "exit_code": 0}
