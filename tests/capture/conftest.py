"""A private PulseAudio daemon with null sinks, and tones played into it.

The daemon is started once per test session in its own runtime directory and
reached through ``PULSE_SERVER``; edge's native backend (libpulse, dlopen'd)
reads that like any PulseAudio client. Its sinks:

    sys_out      the default sink: what "the machine plays"; ``system`` records its monitor
    mic_feed     a sink whose monitor is remapped as ``virtual_mic``, the default source

Without the ``pulseaudio`` binary the tests that need it skip, naming the
package to install, except under ``CI=true``, where that is a failure. The
binaries are looked for by sync fixtures (``pulse``, ``private_pulse``,
``paplay``), so a skip happens before a test starts anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

import numpy as np
import pytest
import soundfile
import trio

PULSE_PACKAGES = "pulseaudio pulseaudio-utils"
#: Seconds the test PulseAudio daemon has to answer ``pactl info`` (a bound on failure).
SERVER_START: Final = 30.0


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        message = f"{binary} is not installed (apt-get install -y {PULSE_PACKAGES})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the sound tests: {message}")
        pytest.skip(message)


class PulseServer:
    """A private PulseAudio daemon in its own runtime directory (see the module doc)."""

    def __init__(self) -> None:
        _need("pulseaudio")
        _need("pactl")
        self.runtime = Path(tempfile.mkdtemp(prefix="edge-pulse-"))
        socket = self.runtime / "native"
        self.server = f"unix:{socket}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        env.update(
            PULSE_RUNTIME_PATH=str(self.runtime),
            PULSE_STATE_PATH=str(self.runtime),
            HOME=str(self.runtime),
        )
        self.process = subprocess.Popen(
            [
                "pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "--use-pid-file=no",
                "--disable-shm=yes", "--log-target=stderr", "--log-level=error",
                f"--load=module-native-protocol-unix socket={socket} auth-anonymous=1",
                "--load=module-null-sink sink_name=sys_out",
                "--load=module-null-sink sink_name=mic_feed",
                "--load=module-remap-source master=mic_feed.monitor source_name=virtual_mic",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            self._wait_ready({**env, "PULSE_SERVER": self.server})
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, client_env: dict[str, str]) -> None:
        deadline = time.monotonic() + SERVER_START
        while subprocess.run(["pactl", "info"], env=client_env, capture_output=True).returncode:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                _, err = self.process.communicate()
                pytest.fail(f"the test PulseAudio daemon did not start: {err.decode()[-500:]}")
            time.sleep(0.05)
        for command in (["set-default-sink", "sys_out"], ["set-default-source", "virtual_mic"]):
            subprocess.run(["pactl", *command], env=client_env, check=True)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stderr.close()  # type: ignore[union-attr]
        shutil.rmtree(self.runtime, ignore_errors=True)


@pytest.fixture(scope="session")
def pulse() -> Iterator[str]:
    """Start a private PulseAudio daemon for the session; yields its PULSE_SERVER value."""
    server = PulseServer()
    saved = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = server.server
    try:
        yield server.server
    finally:
        if saved is None:
            os.environ.pop("PULSE_SERVER", None)
        else:
            os.environ["PULSE_SERVER"] = saved
        server.close()


@pytest.fixture
def private_pulse() -> Iterator[PulseServer]:
    """A PulseAudio daemon of the test's own, for a test that kills it; stopped after."""
    server = PulseServer()
    try:
        yield server
    finally:
        server.close()


def write_tone(path: Path, freq: float, seconds: float = 30, rate: int = 48000) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * freq * t), rate, subtype="PCM_16")
    return path


class Player:
    """Plays tone files into sinks with paplay; every player is killed on exit."""

    def __init__(self, directory: Path, paplay: str = "paplay") -> None:
        self.directory = directory
        self.paplay = paplay
        self.processes: list[trio.Process] = []

    async def play(self, freq: float, sink: str) -> trio.Process:
        path = write_tone(self.directory / f"tone-{freq:g}.wav", freq)
        # A small latency, or the null sink hands its monitor audio in seconds-long blocks.
        process = await trio.lowlevel.open_process(
            [self.paplay, "--latency-msec=20", "-d", sink, str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process

    async def stop(self) -> None:
        for process in self.processes:
            process.kill()
            await process.wait()
        self.processes.clear()


@pytest.fixture
def paplay(pulse: str) -> str:
    """The ``paplay`` binary (skips, or fails under ``CI=true``, without it)."""
    _need("paplay")
    return shutil.which("paplay") or "paplay"


@pytest.fixture
async def player(paplay: str, tmp_path: Path) -> AsyncIterator[Player]:
    p = Player(tmp_path, paplay)
    try:
        yield p
    finally:
        with trio.CancelScope(shield=True):
            await p.stop()


def audio_threads() -> list[str]:
    """Native threads of edge's audio backends still alive in this process."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except FileNotFoundError:
            continue
        if name in ("edge-audio", "threaded-ml"):
            names.append(name)
    return names


def non_trio_threads() -> int:
    """Threads of this process other than trio's cached worker threads."""
    count = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except FileNotFoundError:
            continue
        if not name.startswith("Trio thread"):
            count += 1
    return count
