"""The launchd agent: its property list through ``plistlib``, and install, status and
uninstall for a macOS host against a temporary HOME.

launchd cannot run here (Linux): what is checked is the file (its keys, its mode,
where it and the logs go) and the ``launchctl`` command lines, given to a stand-in
``launchctl`` (``conftest.LAUNCHCTL_SHIM``), which also lets a job go some calls after
``bootout`` returned, as launchd does some time after. That launchd accepts the agent
and acts on these commands is not verified here.
"""

from __future__ import annotations

import os
import plistlib
import stat
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from edge.errors import ServiceError
from edge.service.launchd import EXIT_TIMEOUT, LABEL, agent, agent_bytes
from edge.service.manage import Host, InstallOptions, install, logs_command, status, uninstall
from edge.update.install import INSTALL_TIMEOUT

from .conftest import LAUNCHCTL_SHIM, calls, write_shim


def test_the_agent_round_trips_through_plistlib_with_the_required_keys(tmp_path: Path) -> None:
    home = tmp_path / "Users" / "me"
    command = ["/opt/homebrew/bin/edge", "run", "--config", "/Users/me/edge & co/c.toml"]
    data = agent_bytes(agent(command, {"EDGE_SERVICE": "launchd", "PATH": "/usr/bin"}, home))
    loaded = plistlib.loads(data)
    assert loaded["Label"] == LABEL
    assert loaded["ProgramArguments"] == command
    assert loaded["RunAtLoad"] is True
    # Start again after a failure or an update (exit 11), and after a crash; not after exit 0.
    assert loaded["KeepAlive"] == {"SuccessfulExit": False, "Crashed": True}
    logs = home / "Library" / "Logs" / "edge"
    assert Path(loaded["StandardOutPath"]).parent == logs
    # edge logs to edge.log itself (--log-file); what it prints goes beside it.
    assert loaded["StandardErrorPath"] == loaded["StandardOutPath"] == str(logs / "edge.stderr.log")
    assert loaded["EnvironmentVariables"] == {"EDGE_SERVICE": "launchd", "PATH": "/usr/bin"}
    assert loaded["WorkingDirectory"] == str(home)
    # A stopping edge lets an update's installer finish: launchd must not kill it before.
    assert loaded["ExitTimeOut"] == EXIT_TIMEOUT >= INSTALL_TIMEOUT + 30
    assert data.startswith(b"<?xml")


@pytest.mark.parametrize(
    "command", [["edge", "run"], ["/usr/bin/edge", "run\x07"], []], ids=["relative", "bell", "none"]
)
def test_what_a_property_list_cannot_hold_is_refused(command: list[str], tmp_path: Path) -> None:
    with pytest.raises(ServiceError):
        agent(command, {"EDGE_SERVICE": "launchd"}, tmp_path)


@pytest.fixture
def mac(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Host, Path]:
    """A macOS host (uid 501) with the stand-in launchctl on its PATH; and the call log."""
    # The default config path comes from this process's environment (platformdirs).
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    shims = tmp_path / "shims"
    write_shim(shims, "launchctl", LAUNCHCTL_SHIM)
    log = tmp_path / "launchctl.log"
    home = tmp_path / "home"
    home.mkdir()
    environ = {"HOME": str(home), "PATH": f"{shims}:/usr/bin:/bin", "SHIM_LOG": str(log)}
    host = Host(
        home=home, environ=environ, platform="darwin", user="me", uid=501,
        argv0="/nowhere/__main__.py", executable=sys.executable,
    )  # fmt: skip
    return host, log


def test_install_status_uninstall(mac: tuple[Host, Path]) -> None:
    host, log = mac
    plist = host.home / "Library" / "LaunchAgents" / "local.edge.plist"
    outcome = install(host, InstallOptions())
    assert outcome.path == plist
    assert outcome.lines[0] == f"wrote {plist}"
    assert stat.S_IMODE(plist.stat().st_mode) == 0o644
    with plist.open("rb") as f:
        loaded = plistlib.load(f)
    assert os.path.isabs(loaded["ProgramArguments"][0])
    log_file = host.home / "Library" / "Logs" / "edge" / "edge.log"
    assert loaded["ProgramArguments"][-3:] == ["run", "--log-file", str(log_file)]
    assert any(line == f"log: {log_file} (edge service logs)" for line in outcome.lines)
    assert loaded["EnvironmentVariables"]["EDGE_SERVICE"] == "launchd"
    assert (host.home / "Library" / "Logs" / "edge").is_dir()  # launchd does not create it
    assert calls(log) == [
        ["print", "gui/501/local.edge"],
        ["enable", "gui/501/local.edge"],
        ["bootstrap", "gui/501", str(plist)],
    ]
    (host.home / "Library" / "Logs" / "edge" / "edge.log").write_text(
        "".join(f"line {i}\n" for i in range(30))
    )
    st = status(host)
    assert (st.installed, st.enabled, st.running, st.pid) == (True, True, True, 4242)
    assert st.log_lines == tuple(f"line {i}" for i in range(20, 30))
    assert st.command is not None
    assert st.command.endswith(f" run --log-file {log_file}")
    assert logs_command(host, lines=5, follow=True)[1:] == [
        "-n", "5", "-F", str(host.home / "Library" / "Logs" / "edge" / "edge.log"),
    ]  # fmt: skip

    log.unlink()
    again = install(host, InstallOptions())
    assert again.lines[0] == f"updated {plist}"
    assert any("restarted" in line for line in again.lines)
    # bootout, then print until the job is gone (here at once), then bootstrap
    assert [c[0] for c in calls(log)] == ["print", "bootout", "print", "enable", "bootstrap"]

    log.unlink()
    gone = uninstall(host)
    assert not plist.exists()
    assert calls(log) == [
        ["print", "gui/501/local.edge"],
        ["bootout", "gui/501/local.edge"],
        ["print", "gui/501/local.edge"],
    ]
    assert any("logs stay" in line for line in gone.lines)
    st = status(host)
    assert (st.installed, st.running) == (False, False)
    assert "nothing to remove" in uninstall(host).lines[0]


def test_without_launchctl_the_agent_is_written_with_the_command_to_load_it(
    mac: tuple[Host, Path],
) -> None:
    host, _ = mac
    # A PATH without launchctl (macOS has a real one in /bin, which must not be touched).
    bare = replace(host, environ={**host.environ, "PATH": str(host.home)})
    outcome = install(bare, InstallOptions())
    assert outcome.path.exists()
    assert f"launchctl bootstrap gui/501 {outcome.path}" in outcome.lines[-1]
    assert status(bare).state == "unknown: launchctl is not here"


def test_a_reinstall_waits_for_launchd_to_let_the_old_job_go(mac: tuple[Host, Path]) -> None:
    """launchd lets a job go after ``bootout`` has returned; a bootstrap before that fails
    (5: Input/output error)."""
    host, log = mac
    install(host, InstallOptions())
    slow = replace(host, environ={**host.environ, "SHIM_LEAVING": "3"})
    log.unlink()
    again = install(slow, InstallOptions())
    assert any("restarted" in line for line in again.lines)
    verbs = [c[0] for c in calls(log)]
    # still there for 3 prints after the bootout, gone at the 4th: then the bootstrap
    assert verbs == ["print", "bootout", "print", "print", "print", "print", "enable", "bootstrap"]
    assert status(slow).running is True


def test_a_bootstrap_refused_while_launchd_is_busy_is_tried_again(mac: tuple[Host, Path]) -> None:
    host, log = mac
    busy = replace(host, environ={**host.environ, "SHIM_BOOTSTRAP_BUSY": "2"})
    outcome = install(busy, InstallOptions())
    assert any("started" in line for line in outcome.lines)
    assert [c[0] for c in calls(log)].count("bootstrap") == 3  # 37, 37, then loaded
    assert status(busy).running is True
