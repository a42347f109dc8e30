"""CLI start-up benchmarks: the wall time of ``edge --help``, ``edge status`` and ``edge
tools list`` against a running daemon, and of ``edge tools list`` with none (it then lists
the tools here).

Each figure is the median of 7 runs, each a new process, printed beside ``python -c pass``
measured in the same run, so that they read as ratios on a noisy machine. The daemon is an
``edge run`` of this script's own (no cloud: its tunnel idles), with its own config, data
and state directories, on a free port; it is stopped whatever happens.

Every command runs twice over: with its bytecode cached (as installed: pip compiles it),
the cache a directory of this run's (``PYTHONPYCACHEPREFIX``), filled by a first run that
is not timed; and, when this environment writes no bytecode (``PYTHONDONTWRITEBYTECODE``)
and edge has no ``__pycache__``, as it runs here, compiled from source every time.

    python bench/bench_cli.py
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

#: Runs of each command; the median is printed.
RUNS: Final = 7
#: Seconds the daemon has to answer ``GET /health`` (a bound on failure only).
START_WITHIN: Final = 60.0
#: What ``edge status`` and ``edge tools list`` should take against a running daemon.
TARGET_MS: Final = 150


def line(name: str, value: str, target: str = "", extra: str = "") -> None:
    print(f"{name:<42} {value:>14}   {target:<18} {extra}")


def edge_script() -> str:
    script = Path(sys.executable).with_name("edge")
    return str(script) if script.exists() else "edge"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wall(cmd: list[str], env: dict[str, str]) -> float:
    """The median wall time of ``cmd`` over ``RUNS`` runs, seconds (each must exit 0)."""
    runs = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


@contextmanager
def running_daemon(workdir: Path, env: dict[str, str]) -> Iterator[str]:
    """``edge run`` on a free port until the block ends; its control address."""
    from edge.cli.common import ControlClient, ControlUnreachable

    control = f"127.0.0.1:{free_port()}"
    log = (workdir / "daemon.log").open("wb")
    cmd = [edge_script(), "run", "--workspace", str(workdir / "ws"), "--control", control]
    proc = subprocess.Popen([*cmd, "--log-level", "ERROR"], env=env, stderr=log)
    try:
        deadline = time.monotonic() + START_WITHIN
        while True:
            try:
                with ControlClient(control, timeout=2.0) as client:
                    client.request("GET", "/health")
                break
            except ControlUnreachable:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"edge run did not start; see {log.name}") from None
                time.sleep(0.05)
        yield control
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=START_WITHIN)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def bench(title: str, env: dict[str, str], control: str, nobody: str) -> None:
    edge = edge_script()
    commands = {
        "edge --help": [edge, "--help"],
        "edge status (daemon)": [edge, "status", "--control", control],
        "edge tools list (daemon)": [edge, "tools", "list", "--control", control],
        "edge tools list (no daemon)": [edge, "tools", "list", "--control", nobody],
    }
    for cmd in commands.values():  # fills the bytecode cache, when there is one
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
    base = wall([sys.executable, "-c", "pass"], env)
    print(f"{title}: python -c pass {base * 1e3:.0f} ms")
    for name, cmd in commands.items():
        took = wall(cmd, env)
        target = f"target < {TARGET_MS} ms" if "(daemon)" in name else ""
        line(f"{name} wall", f"{took * 1e3:.0f} ms", target, f"(ratio {took / base:.1f}x)")


def main() -> None:
    print(f"edge CLI benchmarks ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    with tempfile.TemporaryDirectory(prefix="edge-bench-cli-") as tmp:
        run_all(Path(tmp))


def run_all(workdir: Path) -> None:
    (workdir / "ws").mkdir()
    # Its own config, data and state: not the user's config, key or daemon.
    env = dict(
        os.environ,
        XDG_CONFIG_HOME=str(workdir / "cfg"),
        XDG_DATA_HOME=str(workdir / "data"),
        XDG_STATE_HOME=str(workdir / "state"),
    )
    env.pop("EDGE_TOKEN", None)
    cached = dict(env, PYTHONPYCACHEPREFIX=str(workdir / "pycache"))
    cached.pop("PYTHONDONTWRITEBYTECODE", None)
    import edge

    package = Path(edge.__file__).parent
    compiles = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    from_source = compiles and not any(package.rglob("__pycache__"))
    with running_daemon(workdir, env) as control:
        nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
        bench("bytecode cached", cached, control, nobody)
        if from_source:
            bench("as this environment runs it (no bytecode written)", env, control, nobody)


if __name__ == "__main__":
    main()
