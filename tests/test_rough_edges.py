"""What a new user trips over first, as real processes: a directory that cannot be made, no
sound server, help text on a narrow terminal, and the wording of counts."""

from __future__ import annotations

import argparse
import ctypes.util
import os
import socket
import subprocess
from pathlib import Path
from typing import Final

import pytest

from edge.cli.common import ParagraphFormatter, plural

from .conftest import edge_cmd

#: Seconds one command may take on a loaded machine (a bound on failure).
WITHIN: Final = 60


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "PULSE_"))}
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    return env


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        edge_cmd(*args), capture_output=True, text=True, env=env, timeout=WITHIN,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``edge: error:`` line a failed command printed (exit 2), without its prefix."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edge: error: "), result.stderr
    return lines[0].removeprefix("edge: error: ")


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A file where a directory is wanted."""
    path = tmp_path / "a-file"
    path.write_text("not a directory\n")
    return path


def test_a_workspace_that_cannot_be_made_is_one_error_line(
    env: dict[str, str], blocker: Path
) -> None:
    error = one_error(run("run", "--no-control", "--workspace", str(blocker), env=env))
    assert error == f"cannot create the workspace {blocker}: it is not a directory"
    error = one_error(run("tools", "call", "terminal", "--workspace", str(blocker / "ws"), env=env))
    assert error == f"cannot create the workspace {blocker / 'ws'}: Not a directory"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
def test_a_workspace_in_proc_is_one_error_line(env: dict[str, str]) -> None:
    error = one_error(run("run", "--no-control", "--workspace", "/proc/nope", env=env))
    assert error == "cannot create the workspace /proc/nope: No such file or directory"


def test_recordings_onto_a_file_are_one_error_line(
    env: dict[str, str], blocker: Path, tmp_path: Path
) -> None:
    tone = ["capture", "--source", "tone:440", "--duration", "1"]
    error = one_error(run(*tone, "--out", str(blocker), env=env))
    assert error == f"cannot create the recordings directory {blocker}: it is not a directory"
    # The config's recordings directory, for every source at once: said once.
    config = tmp_path / "config.toml"
    config.write_text(f'[capture]\nrecordings = "{blocker / "rec"}"\n')
    error = one_error(run(*tone, "--source", "tone:660", "--config", str(config), env=env))
    assert error == (
        f"2 sources could not start: cannot create the recordings directory {blocker / 'rec'}: "
        f"{blocker} is not a directory"
    )


needs_libpulse = pytest.mark.skipif(
    ctypes.util.find_library("pulse") is None and os.environ.get("CI") != "true",
    reason="libpulse is not installed (apt-get install -y libpulse0)",
)


@needs_libpulse
def test_no_sound_server_names_pulseaudio_and_every_source_that_failed(
    env: dict[str, str], tmp_path: Path
) -> None:
    # A socket file nothing listens on: what a crashed sound server leaves behind.
    dead = tmp_path / "pulse-native"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(dead))
    env["PULSE_SERVER"] = f"unix:{dead}"
    error = one_error(run("capture", "--duplex", "--duration", "1", env=env))
    assert error == (
        f"2 sources could not start: mic and system: no PulseAudio server reachable at "
        f"unix:{dead}, which PULSE_SERVER names (is it running? start it with "
        "`pulseaudio --start`, or install pipewire-pulse)"
    )
    # Without PULSE_SERVER (and nothing in the runtime directory), the same advice.
    del env["PULSE_SERVER"]
    error = one_error(run("capture", "--source", "mic", "--duration", "1", env=env))
    assert error == (
        "mic: no PulseAudio server reachable (is it running? start it with "
        "`pulseaudio --start`, or install pipewire-pulse)"
    )


@pytest.mark.parametrize("command", [["capture"], ["dev-cloud"], []])
def test_help_fits_a_60_column_terminal_but_for_examples(
    env: dict[str, str], command: list[str]
) -> None:
    result = run(*command, "--help", env={**env, "COLUMNS": "60"})
    assert result.returncode == 0, result.stderr
    examples = ("  edge ", "  EDGE_TOKEN=")
    long = [line for line in result.stdout.splitlines() if len(line) > 60]
    assert [line for line in long if not line.startswith(examples)] == []


def test_the_formatter_wraps_prose_and_keeps_indented_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    example = "  x --a-rather-long-example-line --that-stays"
    parser = argparse.ArgumentParser(
        prog="x",
        description="word " * 30,
        epilog="more words " * 10 + f"\n\nexamples:\n{example}\n",
        formatter_class=ParagraphFormatter,
    )
    monkeypatch.setenv("COLUMNS", "40")
    text = parser.format_help()
    lines = text.splitlines()
    assert example in lines
    assert "examples:" in lines
    assert all(len(line) <= 40 for line in lines if not line.startswith("  x "))
    assert lines.count("") >= 3  # the paragraphs stay apart


def test_plural() -> None:
    assert plural(1, "result") == "1 result"
    assert plural(0, "result") == "0 results"
    assert plural(2, "match", "matches") == "2 matches"
    assert plural(1, "match", "matches") == "1 match"
