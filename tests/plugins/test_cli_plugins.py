"""``edge plugins`` and ``edge tools`` with plugins, as a user runs them: real subprocesses,
with and without a running daemon."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ..conftest import edge_cmd, start_edge
from .kit import alive, write_plugin

pytestmark = pytest.mark.slow

CODE = '''
        @plugin.tool
        def add(a: int, b: int = 1) -> dict:
            """Add two numbers."""
            return {"sum": a + b}

        @plugin.tool
        def units(ctx: Context) -> dict:
            return {"units": ctx.config["units"]}
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    runtime = Path(tempfile.mkdtemp(prefix="edge-t-", dir="/tmp"))
    env = dict(os.environ)
    env.update(
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_RUNTIME_DIR=str(runtime),
    )
    env.pop("EDGE_TOKEN", None)
    yield env
    shutil.rmtree(runtime, ignore_errors=True)


def plugins_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "edge" / "plugins"


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(edge_cmd(*args), capture_output=True, text=True, env=env, timeout=60)


def test_without_a_daemon(env: dict[str, str]) -> None:
    write_plugin(plugins_dir(env), "calc", CODE, config={"units": "metric"})
    write_plugin(plugins_dir(env), "future", CODE, sdk=">=3")

    listed = run_cli("plugins", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "calc" in listed.stdout and "not running" in listed.stdout
    assert "future" in listed.stdout and "needs SDK >=3" in listed.stdout

    called = run_cli("tools", "call", "calc__add", "--args", '{"a": 40, "b": 2}', env=env)
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["sum"] == 42
    bad = run_cli("tools", "call", "calc__add", "--args", '{"a": "x"}', env=env)
    assert bad.returncode == 1 and "error" in json.loads(bad.stdout)
    down = run_cli("tools", "call", "future__add", env=env)
    assert down.returncode == 1 and "needs SDK >=3" in json.loads(down.stdout)["error"]

    tools = run_cli("tools", "list", "--json", env=env)
    assert tools.returncode == 0, tools.stderr
    rows = {row["name"]: row for row in json.loads(tools.stdout)}
    assert rows["calc__add"]["source"] == "plugin:calc"
    assert rows["future__*"]["status"] == "invalid"

    configured = run_cli("plugins", "config", "calc", "units=imperial", env=env)
    assert configured.returncode == 0, configured.stderr
    assert "edge is not running" in configured.stdout
    assert (plugins_dir(env) / "calc" / "config.toml").read_text() == 'units = "imperial"\n'
    assert oct((plugins_dir(env) / "calc" / "config.toml").stat().st_mode & 0o777) == "0o600"
    after = run_cli("tools", "call", "calc__units", env=env)
    assert json.loads(after.stdout)["units"] == "imperial"
    wrong = run_cli("plugins", "config", "calc", "colour=red", env=env)
    assert wrong.returncode == 1 and "no config key `colour`" in wrong.stderr

    reload = run_cli("plugins", "reload", "calc", "--control", f"127.0.0.1:{free_port()}", env=env)
    assert reload.returncode == 1 and "start it with 'edge run'" in reload.stderr
    assert "Traceback" not in reload.stderr + wrong.stderr + down.stderr


def test_new_writes_a_plugin_that_works(env: dict[str, str]) -> None:
    made = run_cli("plugins", "new", "hello", env=env)
    assert made.returncode == 0, made.stderr
    directory = plugins_dir(env) / "hello"
    assert (directory / "plugin.toml").is_file()
    again = run_cli("plugins", "new", "hello", env=env)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    bad = run_cli("plugins", "new", "Not A Name", env=env)
    assert bad.returncode == 2
    called = run_cli("tools", "call", "hello__greet", "--args", '{"name": "Ada"}', env=env)
    assert called.returncode == 0, called.stderr + called.stdout
    assert "Ada" in called.stdout


async def test_with_a_running_daemon(
    nursery: trio.Nursery, workspace: Path, env: dict[str, str]
) -> None:
    write_plugin(plugins_dir(env), "calc", CODE, config={"units": "metric"})
    port = free_port()
    control = f"127.0.0.1:{port}"
    edge = await start_edge(nursery, "--workspace", str(workspace), "--control", control, env=env)
    try:
        with trio.fail_after(30):
            await edge.wait_for_log("plugin calc is running")

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return run_cli(*args, env=env)

        listed = await trio.to_thread.run_sync(cli, "plugins", "list", "--json", "--control", control)
        (info,) = json.loads(listed.stdout)
        assert info["status"] == "running" and alive(info["pid"])
        text = await trio.to_thread.run_sync(cli, "plugins", "list", "--control", control)
        assert "calc" in text.stdout and f"pid {info['pid']}" in text.stdout

        configured = await trio.to_thread.run_sync(
            cli, "plugins", "config", "calc", "units=kelvin", "--control", control
        )
        assert configured.returncode == 0, configured.stderr
        assert json.loads(configured.stdout)["units"] == "kelvin"

        reloaded = await trio.to_thread.run_sync(cli, "plugins", "reload", "calc", "--control", control)
        assert reloaded.returncode == 0, reloaded.stderr
        missing = await trio.to_thread.run_sync(cli, "plugins", "reload", "nope", "--control", control)
        assert missing.returncode == 1 and "no plugin 'nope'" in missing.stderr

        edge.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await edge.proc.wait() == 0
        assert not alive(info["pid"])
    finally:
        if edge.proc.returncode is None:
            edge.proc.kill()
            await edge.proc.wait()
