"""``edge service`` as a user runs it: the real CLI in a subprocess, HOME a temporary directory.

This machine runs no user manager, so ``install`` takes the path a shell without
one takes (``su``, a container): the unit is written and enabled by the real
systemctl, which needs no manager for that, and the commands to start it are
printed. The path with a running manager is driven through the stand-in systemctl
of ``conftest`` (only the calls that need a manager are answered by it).
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge.service.backends import LINGER_DIR

from .conftest import calls, run_edge, unit_path

USER = pwd.getpwuid(os.getuid()).pw_name
TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.dGhpcy1pcy1hLXNlY3JldA"
ENV_TOKEN = "env-token-that-must-not-travel-7f3a"


def linger_hint() -> str:
    if (LINGER_DIR / USER).exists():
        return f"lingering is on for {USER}"
    return f"loginctl enable-linger {USER}"


def test_install_status_uninstall_without_a_user_manager(
    home: Path, env: dict[str, str], real_systemctl: str
) -> None:
    done = run_edge("service", "install", env=env)
    assert done.returncode == 0, done.stderr
    unit = unit_path(home)
    assert done.stdout.splitlines()[0] == f"wrote {unit}"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    text = unit.read_text(encoding="utf-8")
    assert "Environment=\"EDGE_SERVICE=systemd\"" in text
    assert "no user systemd answers here" in done.stdout
    assert "  systemctl --user daemon-reload\n  systemctl --user enable --now edge.service\n" in (
        done.stdout
    )
    assert linger_hint() in done.stdout
    wants = unit.parent / "default.target.wants" / "edge.service"
    assert wants.is_symlink()
    assert wants.resolve() == unit

    shown = run_edge("service", "status", env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"systemd user unit {unit}" in shown.stdout
    assert "enabled:   yes" in shown.stdout
    assert "running:   unknown: no user systemd answers here" in shown.stdout
    assert "last log lines (journalctl --user -u edge.service -n 10):" in shown.stdout
    answer = json.loads(run_edge("service", "status", "--json", env=env).stdout)
    assert (answer["installed"], answer["enabled"], answer["running"]) == (True, True, None)

    again = run_edge("service", "install", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == f"updated {unit}"

    gone = run_edge("service", "uninstall", env=env)
    assert gone.returncode == 0, gone.stderr
    assert f"removed {unit}" in gone.stdout
    assert not unit.exists()
    assert not wants.is_symlink()

    shown = run_edge("service", "status", env=env)
    assert shown.returncode == 0
    assert "not installed" in shown.stdout
    assert "edge service install" in shown.stdout
    twice = run_edge("service", "uninstall", env=env)
    assert (twice.returncode, twice.stderr) == (0, "")
    assert "not installed" in twice.stdout


def test_with_a_running_user_manager_the_unit_is_enabled_and_started(
    home: Path, env: dict[str, str], manager: Path
) -> None:
    done = run_edge("service", "install", env=env)
    assert done.returncode == 0, done.stderr
    assert "enabled and started edge.service" in done.stdout
    assert calls(manager) == [
        ["--user", "show", "--property=Version", "--value"],
        ["--user", "daemon-reload"],
        ["--user", "enable", "edge.service"],
        ["--user", "restart", "edge.service"],
    ]
    shown = run_edge("service", "status", env=env)
    assert "running:   yes, pid 4242 (active (running))" in shown.stdout, shown.stdout
    assert "enabled:   yes" in shown.stdout

    again = run_edge("service", "install", env=env)
    assert "enabled and restarted edge.service" in again.stdout

    manager.unlink()
    gone = run_edge("service", "uninstall", env=env)
    assert gone.returncode == 0, gone.stderr
    assert "stopped and disabled edge.service" in gone.stdout
    assert calls(manager) == [
        ["--user", "show", "--property=Version", "--value"],
        ["--user", "disable", "--now", "edge.service"],
        ["--user", "daemon-reload"],
        ["--user", "reset-failed", "edge.service"],
    ]
    assert not unit_path(home).exists()


def test_a_unit_that_does_not_start_is_an_error_that_says_the_file_is_written(
    home: Path, env: dict[str, str], manager: Path
) -> None:
    env["SHIM_FAIL_START"] = "1"
    done = run_edge("service", "install", env=env)
    assert done.returncode == 1
    assert f"wrote {unit_path(home)}, but it did not start: systemctl --user restart" in (
        done.stderr
    )
    assert "Job for edge.service failed" in done.stderr


def test_no_token_ever_reaches_the_unit(tmp_path: Path, home: Path, env: dict[str, str]) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    token = home / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    config = config_dir / "config.toml"
    config.write_text('[tunnel]\ntoken_file = "token"\n')  # relative: to the home directory
    env["EDGE_TOKEN"] = ENV_TOKEN

    done = run_edge("service", "install", "--config", str(config), env=env)
    assert done.returncode == 0, done.stderr
    text = unit_path(home).read_text(encoding="utf-8")
    assert f"run --config {config}" in text
    assert "--token-file" not in text  # edge run reads tunnel.token_file itself
    assert f"token: read from {token} (tunnel.token_file in the config)" in done.stdout
    for secret in (TOKEN, ENV_TOKEN, "EDGE_TOKEN"):
        assert secret not in text
    assert TOKEN not in done.stdout + done.stderr
    assert ENV_TOKEN not in done.stdout + done.stderr

    other = tmp_path / "other token"
    other.write_text(TOKEN)
    other.chmod(0o644)
    done = run_edge("service", "install", "--token-file", str(other), env=env)
    assert done.returncode == 0, done.stderr
    text = unit_path(home).read_text(encoding="utf-8")
    assert f'--token-file "{other}"' in text
    assert TOKEN not in text
    assert ENV_TOKEN not in text
    assert f"warning: other users can read the token file: chmod 600 {other}" in done.stdout
    assert "EDGE_TOKEN of this shell is not given to the service" not in done.stdout


def test_edge_token_alone_is_not_given_to_the_service(home: Path, env: dict[str, str]) -> None:
    env["EDGE_TOKEN"] = ENV_TOKEN
    done = run_edge("service", "install", "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    assert "EDGE_TOKEN of this shell is not given to the service" in done.stderr
    assert ENV_TOKEN not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "config_text", "message"),
    [
        (["--token-file", "missing-token"], None, "does not exist: create it first"),
        (["--config", "c.toml"], "[tunnel]\nurll = 1\n", "did you mean"),
        (["--config", "nope.toml"], None, "cannot read"),
    ],
    ids=["missing token file", "bad config", "missing config"],
)
def test_what_would_not_start_is_refused_and_nothing_is_written(
    tmp_path: Path, home: Path, env: dict[str, str], args: list[str],
    config_text: str | None, message: str,
) -> None:  # fmt: skip
    if config_text is not None:
        (tmp_path / args[1]).write_text(config_text)
    done = run_edge("service", "install", *args, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr
    assert not unit_path(home).exists()


def test_dry_run_prints_the_unit_and_changes_nothing(home: Path, env: dict[str, str]) -> None:
    done = run_edge("service", "install", "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# edge as a systemd user service")
    assert "ExecStart=" in done.stdout
    assert "[Install]" in done.stdout
    assert "dry run" in done.stderr
    assert not (home / ".config").exists()


def test_the_service_runs_the_edge_it_was_installed_with(home: Path, env: dict[str, str]) -> None:
    """Started as the console script, the unit runs that script (its path, not resolved)."""
    script = Path(sys.executable).parent / "edge"
    if not script.exists():
        pytest.skip(f"no edge console script beside {sys.executable}")
    link = home / "bin" / "edge"
    link.parent.mkdir()
    link.symlink_to(script)
    done = run_edge("service", "install", "--dry-run", env=env)
    log = home / ".local" / "state" / "edge" / "log" / "edge.log"
    # as `python -m edge`: the script beside it
    assert f"ExecStart={script} run --log-file {log}\n" in done.stdout
    direct = subprocess.run(
        [str(link), "service", "install", "--dry-run"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert direct.returncode == 0, direct.stderr
    assert f"ExecStart={link} run --log-file {log}\n" in direct.stdout


def test_logs_runs_journalctl(env: dict[str, str]) -> None:
    done = run_edge("service", "logs", "-n", "3", env=env)
    assert done.returncode == 0, done.stderr  # the journal has nothing of this HOME's user
    assert done.stdout.strip() in ("", "-- No entries --")


def test_the_service_logs_to_its_file_and_logs_reads_it(home: Path, env: dict[str, str]) -> None:
    """The unit passes --log-file (the state directory's log, or the config's [log] file);
    status and logs read that file once it exists, the journal before."""
    done = run_edge("service", "install", env=env)
    assert done.returncode == 0, done.stderr
    log = home / ".local" / "state" / "edge" / "log" / "edge.log"
    assert f" run --log-file {log}\n" in unit_path(home).read_text(encoding="utf-8")
    assert f"log: {log} (edge service logs)" in done.stdout
    shown = run_edge("service", "status", env=env)
    assert f"(edge logs to {log}, which does not exist yet)" in shown.stdout

    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(12)))
    shown = run_edge("service", "status", env=env)
    assert f"last log lines ({log}):\n" + "".join(f"  line {i}\n" for i in range(2, 12)) in (
        shown.stdout
    )
    tail = run_edge("service", "logs", "-n", "2", env=env)
    assert (tail.returncode, tail.stdout) == (0, "line 10\nline 11\n"), tail.stderr

    config = home / "edge.toml"
    config.write_text('[log]\nfile = "logs/mine.log"\n')
    again = run_edge("service", "install", "--config", str(config), "--dry-run", env=env)
    assert again.returncode == 0, again.stderr
    assert f" --log-file {home / 'logs' / 'mine.log'}\n" in again.stdout
