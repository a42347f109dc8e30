"""The systemd unit: its text, and ``systemd-analyze verify`` with an empty stderr.

``systemd-analyze verify`` exits 0 on some mistakes (an unknown key, a value it
cannot parse) and only warns, so the tests demand an empty stderr. It runs as
``--user`` (the unit is a user unit: user-manager semantics, user search paths),
which needs a runtime directory (``XDG_RUNTIME_DIR``) but no running manager.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from edge.errors import ServiceError
from edge.exitcodes import UPDATED
from edge.service.systemd import exec_start, quote_arg, unit_text
from edge.update.install import INSTALL_TIMEOUT

from .conftest import run_edge, unit_path

ENV = {"EDGE_SERVICE": "systemd", "PATH": "/usr/bin:/bin"}


def settings(text: str) -> dict[str, list[str]]:
    """key → values of a unit's text (comments and sections left out)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze --user verify UNIT`` (skipped, saying why, if it is not installed).

    The runtime directory is a short one of its own in the temporary directory, not under
    ``tmp_path`` (longer under pytest-xdist): the machine's user units name sockets in it
    (gpg-agent's), and a socket path over 107 bytes is an error verify prints.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    runtime = tempfile.mkdtemp(prefix="edge-verify-")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "DBUS_"))}
        env.update(HOME=str(unit.parent), XDG_RUNTIME_DIR=runtime, SYSTEMD_LOG_COLOR="0")
        return subprocess.run(
            [analyze, "--user", "verify", str(unit)],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def test_the_unit_restarts_on_failure_and_on_an_update_and_logs_to_the_journal() -> None:
    text = unit_text(["/opt/edge/bin/edge", "run"], ENV, version="9.9")
    found = settings(text)
    assert found["ExecStart"] == ["/opt/edge/bin/edge run"]
    assert found["Restart"] == ["on-failure"]
    assert found["RestartForceExitStatus"] == [str(UPDATED)] == ["11"]
    assert found["SuccessExitStatus"] == ["11"]  # an update is not a failure
    assert found["Environment"] == ['"EDGE_SERVICE=systemd"', '"PATH=/usr/bin:/bin"']
    assert found["StandardOutput"] == found["StandardError"] == ["journal"]
    assert found["KillMode"] == ["mixed"]  # SIGTERM to edge alone: it stops its children
    # A stopping edge lets an update's installer finish: systemd must not SIGKILL it first.
    (stop,) = found["TimeoutStopSec"]
    assert int(stop) >= INSTALL_TIMEOUT + 30
    assert found["WantedBy"] == ["default.target"]
    assert "edge 9.9" in text


def test_words_are_quoted_and_escaped_as_systemd_reads_them() -> None:
    assert quote_arg("/usr/bin/edge", first=True) == "/usr/bin/edge"
    assert quote_arg("/home/a b/edge", first=True) == '"/home/a b/edge"'
    assert quote_arg("/x/100%/edge", first=True) == '"/x/100%%/edge"'
    assert quote_arg("/x/$HOME/edge", first=True) == '"/x/$HOME/edge"'  # not expanded there
    assert quote_arg("$HOME") == '"$$HOME"'
    assert quote_arg('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    assert quote_arg(";") == '";"'
    assert quote_arg("") == '""'


@pytest.mark.parametrize(
    ("command", "why"),
    [
        (["edge", "run"], "absolute"),
        (['/x/"q"/edge'], "refuses"),
        (["/x/it's/edge"], "refuses"),
        (["/usr/bin/edge", "a\nExecStartPre=/bin/evil"], "control character"),
        ([], "needs a command"),
    ],
)
def test_what_a_unit_cannot_hold_is_refused(command: list[str], why: str) -> None:
    with pytest.raises(ServiceError, match=why):
        unit_text(command, ENV, version="0")


def test_an_environment_value_cannot_break_out_of_its_line() -> None:
    with pytest.raises(ServiceError, match="control character"):
        unit_text(["/usr/bin/edge"], {"PATH": "/bin\nExecStartPre=/bin/evil"}, version="0")
    with pytest.raises(ServiceError, match="not an environment variable name"):
        unit_text(["/usr/bin/edge"], {"A=B": "c"}, version="0")


def test_exec_start_reads_the_command_back() -> None:
    text = unit_text(["/home/a b/edge", "run", "--config", "/c d/x.toml"], ENV, version="0")
    assert exec_start(text) == '"/home/a b/edge" run --config "/c d/x.toml"'
    assert exec_start("[Service]\nType=simple\n") is None


def test_the_installed_unit_passes_systemd_analyze_verify(home: Path, env: dict[str, str]) -> None:
    done = run_edge("service", "install", env=env)
    assert done.returncode == 0, done.stderr
    unit = unit_path(home)
    program = settings(unit.read_text(encoding="utf-8"))["ExecStart"][0].split()[0]
    assert os.path.isabs(program), program
    assert os.access(program, os.X_OK), program
    checked = verify(unit)
    assert (checked.returncode, checked.stderr) == (0, "")


def test_awkward_paths_and_arguments_pass_verify(tmp_path: Path) -> None:
    """A program under a directory with a space, ``%`` and ``$``, and arguments with quotes,
    backslashes and ``$``: systemd reads every word back (a wrong escape in the program
    makes verify say it is "not executable")."""
    bin_dir = tmp_path / "my tools 100% $HOME"
    bin_dir.mkdir()
    program = bin_dir / "edge"
    program.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    program.chmod(0o755)
    args = ["run", "--config", str(tmp_path / 'a "b" \\c $d %e.toml')]
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    unit = unit_dir / "edge.service"
    unit.write_text(unit_text([str(program), *args], {**ENV, "X": 'q"\\ %'}, version="0"))
    checked = verify(unit)
    assert (checked.returncode, checked.stderr) == (0, "")


def test_verify_does_see_a_bad_unit(tmp_path: Path) -> None:
    """The check can fail: a misspelt key only warns (exit 0) but is on stderr."""
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    unit = unit_dir / "edge.service"
    text = unit_text(["/bin/sh", "-c", "exit 0"], ENV, version="0")
    unit.write_text(text.replace("Restart=on-failure", "Restrat=on-failure"))
    checked = verify(unit)
    assert "Unknown key" in checked.stderr
    assert "Restrat" in checked.stderr
    unit.write_text(text.replace("/bin/sh", str(tmp_path / "no-such-edge")))
    assert "is not executable" in verify(unit).stderr
