"""The parts of ``edge.service.manage`` and ``backends`` a CLI run cannot reach: which edge
the service runs, what environment it gets, lingering, a shell without XDG_RUNTIME_DIR,
a platform with neither manager."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge.errors import ServiceError
from edge.service.backends import SystemdUser
from edge.service.manage import Host, edge_command, service_environment, status


def host(home: Path, environ: dict[str, str], **changes: Any) -> Host:
    """A Linux host for user ``me`` (uid 1000) started as ``python -m edge``."""
    base = Host(
        home=home, environ=environ, platform="linux", user="me", uid=1000,
        argv0="/nowhere/__main__.py", executable=sys.executable,
    )  # fmt: skip
    return replace(base, **changes)


def test_a_shell_without_xdg_runtime_dir_finds_the_running_manager(
    tmp_path: Path, home: Path, env: dict[str, str], manager: Path
) -> None:
    """As under ``su``: the manager's runtime directory is /run/user/UID; it is found there."""
    runtime_root = tmp_path / "run-user"
    runtime_root.mkdir()
    (runtime_root / "1000").symlink_to(env.pop("XDG_RUNTIME_DIR"))
    backend = SystemdUser(host(home, env, runtime_root=runtime_root))
    assert backend.unreachable() is None
    assert backend.env["XDG_RUNTIME_DIR"] == str(runtime_root / "1000")




def test_the_linger_message_follows_the_linger_mark(tmp_path: Path, home: Path) -> None:
    marks = tmp_path / "linger"
    marks.mkdir()
    user = host(home, {"PATH": "/usr/bin:/bin"}, linger_dir=marks)
    assert "loginctl enable-linger me" in SystemdUser(user).linger_lines()[0]
    (marks / "me").touch()
    assert SystemdUser(user).linger_lines() == ["lingering is on for me: edge starts at boot"]




def test_edge_command_falls_back_to_python_m_edge(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python3"
    python.parent.mkdir()
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    other = tmp_path / "bin" / "edge"  # an edge beside it, but not one this python runs
    other.write_text("#!/usr/bin/python2\nfrom edge.cli import main\n")
    other.chmod(0o755)
    assert edge_command("/x/edge/__main__.py", str(python)) == [str(python), "-m", "edge"]
    assert edge_command("-c", str(python)) == [str(python), "-m", "edge"]




def test_status_on_a_host_with_neither_manager() -> None:
    with pytest.raises(ServiceError, match=r"systemd .* launchd"):
        status(host(Path("/nonexistent"), {}, platform="sunos5"))


def test_edge_command_takes_the_script_it_was_started_as_without_resolving_links(
    tmp_path: Path,
) -> None:
    real = tmp_path / "Cellar" / "edge" / "0.1.0" / "bin" / "edge"
    real.parent.mkdir(parents=True)
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    link = tmp_path / "bin" / "edge"
    link.parent.mkdir()
    link.symlink_to(real)
    assert edge_command(str(link), sys.executable) == [str(link)]


def test_the_service_environment_never_holds_the_token_nor_relative_paths() -> None:
    environ = {
        "PATH": "/usr/local/bin:bin:.::/usr/bin:/usr/local/bin",
        "XDG_CONFIG_HOME": "/home/me/.cfg",
        "XDG_DATA_HOME": "relative/data",
        "EDGE_TOKEN": "secret",
        "HOME": "/home/me",
    }
    assert service_environment(host(Path("/home/me"), environ), "systemd") == {
        "EDGE_SERVICE": "systemd",
        "PATH": "/usr/local/bin:/usr/bin",
        "XDG_CONFIG_HOME": "/home/me/.cfg",
    }
    assert service_environment(host(Path("/h"), {}), "launchd") == {"EDGE_SERVICE": "launchd"}
