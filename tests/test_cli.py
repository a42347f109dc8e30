"""The ``edge`` command as a user runs it: real subprocesses, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from edge.dev.cloud import FakeCloud

from .conftest import TOKEN, EdgeProcess, edge_cmd, processes_in_group, start_edge, until

pytestmark = pytest.mark.usefixtures("no_child_left")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env.pop("EDGE_TOKEN", None)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(edge_cmd(*args), capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_run_autonomous_then_stop_on_signal(
    nursery: trio.Nursery, workspace: Path, env: dict[str, str], signum: int
) -> None:
    port = free_port()
    edge = await start_edge(nursery, "--workspace", str(workspace), "--control", f"127.0.0.1:{port}", env=env)
    with trio.fail_after(20):
        await edge.wait_for_log("tunnel idle: waiting for POST")
    assert f"control API on http://127.0.0.1:{port}" in edge.log
    status = await trio.to_thread.run_sync(
        lambda: run_cli("status", "--control", f"127.0.0.1:{port}", env=env)
    )
    assert status.returncode == 0, status.stderr
    assert "tunnel: disconnected" in status.stdout
    start = trio.current_time()
    edge.proc.send_signal(signum)
    with trio.fail_after(10):
        code = await edge.proc.wait()
    assert code == 0, edge.log
    # A bound on failure sized for a loaded machine (README: about a second when quiet;
    # bench_spine measures it).
    assert trio.current_time() - start < 8.0
    assert "Traceback" not in edge.log


async def test_run_against_the_cloud_and_stop_mid_call(
    nursery: trio.Nursery, workspace: Path, env: dict[str, str], tmp_path: Path
) -> None:
    cloud = await nursery.start(FakeCloud([TOKEN]).serve)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    edge = await start_edge(
        nursery, "--cloud", cloud.url, "--token-file", str(token_file),
        "--workspace", str(workspace), "--no-control", env=env,
    )
    with trio.fail_after(20):
        await cloud.wait_connected()
        assert (await cloud.call("terminal", {"command": "echo via-cli"}))["output"] == "via-cli\n"
        call = await cloud.start_call("terminal", {"command": "echo $$ > pgid; sleep 60"})
        await until(lambda: (workspace / "pgid").exists() and (workspace / "pgid").read_text().strip() != "")
    edge.proc.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        assert await edge.proc.wait() == 0
        result = await cloud.result(call)
    assert result == {"error": "cancelled: edge is shutting down", "cancelled": True}
    assert processes_in_group(int((workspace / "pgid").read_text())) == []
    assert TOKEN not in edge.log
    assert "connected to" in edge.log


def test_token_comes_from_the_environment_not_argv(env: dict[str, str]) -> None:
    result = run_cli("run", "--token", "x", env=env)
    assert result.returncode == 2
    assert "unrecognized arguments: --token" in result.stderr


def test_refuses_a_non_loopback_control_address(env: dict[str, str], workspace: Path) -> None:
    result = run_cli("run", "--control", "0.0.0.0:8660", "--workspace", str(workspace), env=env)
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_clear_error(env: dict[str, str], workspace: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = run_cli("run", "--control", f"127.0.0.1:{port}", "--workspace", str(workspace), env=env)
    assert result.returncode == 2
    assert "address is in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_cloud_url(env: dict[str, str], workspace: Path) -> None:
    result = run_cli("run", "--cloud", "https://cloud.example", "--workspace", str(workspace), env=env)
    assert result.returncode == 2
    assert "is not a ws:// or wss:// URL" in result.stderr


def test_status_without_a_daemon(env: dict[str, str]) -> None:
    result = run_cli("status", "--control", f"127.0.0.1:{free_port()}", env=env)
    assert result.returncode == 1
    assert "no edge daemon answers" in result.stderr


def test_tools_list_and_call(env: dict[str, str], workspace: Path) -> None:
    listing = run_cli("tools", "list", "--workspace", str(workspace), env=env)
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SOURCE", "ALLOWED", "APPROVED", "EFFECTIVE", "DESCRIPTION"]
    assert [line.split()[0] for line in lines[1:-1]] == [
        "terminal", "code", "file_read", "file_write", "file_ops", "grep"
    ]
    assert lines[1].split()[1:5] == ["builtin", "yes", "-", "-"]
    assert "approval comes from the cloud" in lines[-1]
    narrowed = run_cli("tools", "list", "--json", "--allow-tool", "grep", "--workspace", str(workspace), env=env)
    rows = {t["name"]: t for t in json.loads(narrowed.stdout)}
    assert rows["grep"]["allowed"] is True and rows["terminal"]["allowed"] is False
    assert rows["grep"]["approved"] is None and rows["grep"]["effective"] is None

    ok = run_cli("tools", "call", "file_write", "--args", '{"path": "x.txt", "content": "hi"}',
                 "--workspace", str(workspace), env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["bytes"] == 2
    escape = run_cli("tools", "call", "file_read", "--args", '{"path": "../../etc/passwd"}',
                     "--workspace", str(workspace), env=env)
    assert escape.returncode == 1
    assert "outside the allowed roots" in json.loads(escape.stdout)["error"]
    bad = run_cli("tools", "call", "grep", "--args", "{oops", "--workspace", str(workspace), env=env)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr


def test_help_explains(env: dict[str, str]) -> None:
    top = run_cli("--help", env=env)
    assert top.returncode == 0
    assert "control API" in top.stdout
    run = run_cli("run", "--help", env=env)
    for flag in ("--cloud", "--token-file", "--control", "--no-control", "--workspace",
                 "--allow-tool", "--config", "--log-level", "EDGE_TOKEN"):
        assert flag in run.stdout


def test_config_file(env: dict[str, str], tmp_path: Path, workspace: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(f'[policy]\nworkspace = "{workspace}"\nallow_tools = ["file_read"]\n')
    listing = run_cli("tools", "list", "--config", str(config), env=env)
    allowed = [line.split()[0] for line in listing.stdout.splitlines()[1:-1] if line.split()[2] == "yes"]
    assert allowed == ["file_read"]
    config.write_text("[policy\n")
    broken = run_cli("tools", "list", "--config", str(config), env=env)
    assert broken.returncode == 2 and "not valid TOML" in broken.stderr


async def test_dev_cloud_drives_a_real_edge(nursery: trio.Nursery, workspace: Path, env: dict[str, str]) -> None:
    port = free_port()
    cloud = await trio.lowlevel.open_process(
        edge_cmd("dev-cloud", "--port", str(port), "--token", "demo"),
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    out = EdgeProcess(cloud)

    async def collect_stdout() -> None:
        assert cloud.stdout is not None
        async for chunk in cloud.stdout:
            out.log += chunk.decode()

    nursery.start_soon(collect_stdout)
    try:
        with trio.fail_after(20):
            await out.wait_for_log("commands:")
            assert f"ws://127.0.0.1:{port}/tunnel" in out.log
            edge = await start_edge(
                nursery, "--cloud", f"ws://127.0.0.1:{port}/tunnel", "--workspace", str(workspace),
                "--no-control", env={**env, "EDGE_TOKEN": "demo"},
            )
            await edge.wait_for_log("connected to")
            assert cloud.stdin is not None
            await cloud.stdin.send_all(b'call terminal {"command": "echo from-dev-cloud"}\n')
            await out.wait_for_log('"output": "from-dev-cloud\\n"')
            await cloud.stdin.send_all(b"ping\n")
            await out.wait_for_log("pong in")
            gateway = out.log.split("fake model gateway on ", 1)[1].split()[0]
            await cloud.stdin.send_all(b"gw say scripted by hand\n")
            await out.wait_for_log("the gateway's next answer")
            async with httpx.AsyncClient(trust_env=False) as client:
                reply = await client.post(
                    f"{gateway}/chat/completions", headers={"authorization": "Bearer demo"},
                    json={"messages": [{"role": "user", "content": "hi"}]},
                )  # fmt: skip
            assert reply.json()["choices"][0]["message"]["content"] == "scripted by hand"
            edge.proc.send_signal(signal.SIGTERM)
            assert await edge.proc.wait() == 0
            await cloud.stdin.send_all(b"quit\n")
            assert await cloud.wait() == 0
    finally:
        cloud.kill()
        await cloud.wait()


#: (arguments, what argparse says about them): a value out of range never reaches a handler.
BAD_FLAGS = [
    ("run --max-calls 0", "edge run: error: argument --max-calls: must be from 1 to 4096, not 0"),
    ("run --max-calls 4097", "argument --max-calls: must be from 1 to 4096, not 4097"),
    ("run --max-calls -3", "argument --max-calls: must be from 1 to 4096, not -3"),
    ("run --max-calls many", "argument --max-calls: 'many' is not a whole number"),
    ("run --control 127.0.0.1:70000", "argument --control: port 70000 is out of range"),
    ("status --control 127.0.0.1:http", "argument --control: port 'http' in"),
    ("mcp list --control nohost", "argument --control: 'nohost' is not HOST:PORT"),
    ("dev-cloud --port 65536", "edge dev-cloud: error: argument --port: must be from 0 to 65535"),
    ("dev-cloud --port -1", "argument --port: must be from 0 to 65535, not -1"),
    ("mcp test x --timeout 0", "argument --timeout: must be a number of seconds above 0"),
    ("mcp test x --timeout nan", "argument --timeout: 'nan' is not a number"),
    ("mcp add x --timeout -1 -- y", "argument --timeout: must be a number of seconds above 0"),
    ("mcp add x --timeout inf -- y", "argument --timeout: must be a number of seconds above 0"),
]


@pytest.mark.parametrize(("line", "message"), BAD_FLAGS, ids=[line for line, _ in BAD_FLAGS])
def test_numbers_out_of_range_are_argparse_errors(
    env: dict[str, str], workspace: Path, tmp_path: Path, line: str, message: str
) -> None:
    args = line.split()
    if args[0] == "run":
        args = [*args, "--no-control", "--workspace", str(workspace)]
    if args[0] == "mcp":
        args = [*args[:2], "--file", str(tmp_path / "mcp.json"), *args[2:]]
    result = run_cli(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("usage: edge "), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mcp.json").exists()


@pytest.mark.parametrize("duration", ["nan", "inf"])
def test_capture_refuses_a_duration_that_is_no_length(env: dict[str, str], duration: str) -> None:
    result = run_cli("capture", "--source", "pattern", "--duration", duration, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("edge: error: --duration must be positive")
