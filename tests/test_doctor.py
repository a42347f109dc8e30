"""``edge doctor``: real processes, sockets, files and MCP servers; failures made on purpose.

Every run has HOME and the XDG directories in the test's own directory, so the user's
config is never read. The machine's own sound server and user systemd are not relied
on: the run that must pass everything starts a private PulseAudio daemon (as the
capture tests do) and puts a stand-in ``systemctl`` first on PATH that answers the one
question the doctor asks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from edge import __version__
from edge.doctor import (
    Check,
    Subject,
    check_control_port,
    check_mcp_server,
    check_token_file,
    examination,
    node_needs,
    sound_fix,
)
from edge.mcp.config import parse_server

from .conftest import _processes, edge_cmd, start_edge

#: What the stand-in systemctl answers to ``systemctl --user show --property=Version --value``.
SYSTEMCTL: Final = """#!/bin/sh
if [ "$*" = "--user show --property=Version --value" ]; then echo "252 (252.36-1)"; exit 0; fi
echo "the stand-in systemctl does not know: $*" >&2
exit 1
"""

TOKEN: Final = "doctor-test-token-5f3a"
#: ``--timeout`` for the runs here: each check's bound on failure, sized for a busy machine.
SLOW_MACHINE: Final = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = str(tmp_path / "home")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env.pop("EDGE_TOKEN", None)
    env.pop("NO_COLOR", None)
    return env


def doctor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        edge_cmd("doctor", *args), capture_output=True, text=True, env=env, timeout=180
    )


def lines_of(out: str) -> dict[str, str]:
    """Each check's line, by its name: ``{"config": "✗ config: ... — fix: ..."}``."""
    found = {}
    for line in out.splitlines():
        if line[:2] in ("✓ ", "✗ "):
            found[line[2:].split(":", 1)[0]] = line
    return found


async def serve_garbage(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """A plain TCP listener on loopback that is not edge: a banner, then it hangs up."""

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"SSH-2.0-not-edge\r\n")

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


async def test_failing_checks_say_what_and_how_to_fix(
    nursery: trio.Nursery, tmp_path: Path, env: dict[str, str]
) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('[policy]\nallow_tool = ["grep"]\n')
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    servers = tmp_path / "mcp.json"
    servers.write_text(json.dumps({"mcpServers": {"ghost": {"command": "edge-no-such-command-9"}}}))
    port = await nursery.start(serve_garbage)
    args = ["--config", str(config), "--control", f"127.0.0.1:{port}", "--token-file", str(token)]
    args += ["--mcp-file", str(servers), "--timeout", str(SLOW_MACHINE)]

    runs: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def run(*extra: str) -> None:
        runs[" ".join(extra)] = await trio.run_process(
            edge_cmd("doctor", *extra, *args), env=env, capture_stdout=True,
            capture_stderr=True, check=False,
        )  # fmt: skip

    async with trio.open_nursery() as both:  # the text and the JSON report, side by side
        both.start_soon(run)
        both.start_soon(run, "--json")
    done = runs[""]
    out = done.stdout.decode()
    assert done.returncode == 1, (out, done.stderr.decode())
    lines = lines_of(out)
    assert lines["config"].startswith("✗ config: ")
    assert f"{config}: unknown key `policy.allow_tool`" in lines["config"]
    assert "— fix: `edge config check FILE`" in lines["config"]
    assert lines["control port"].startswith(f"✗ control port: 127.0.0.1:{port} is held by another")
    assert "— fix: " in lines["control port"] and "--control" in lines["control port"]
    assert lines["token file"] == (
        f"✗ token file: {token} has mode 0644: its group and others may read or change it"
        f" — fix: chmod 600 {token}"
    )
    assert lines["mcp ghost"].startswith("✗ mcp ghost: command not found")
    assert "— fix: install edge-no-such-command-9" in lines["mcp ghost"]
    assert lines["mcp.json"].startswith(f"✓ mcp.json: {servers}: 1 server")
    assert TOKEN not in out and "\x1b[" not in out  # no token; no colour off a terminal

    done = runs["--json"]
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False
    checks = {c["name"]: c for c in report["checks"]}
    assert all(set(c) == {"name", "ok", "detail", "fix"} for c in report["checks"])
    assert checks["token file"]["ok"] is False
    assert checks["token file"]["fix"] == f"chmod 600 {token}"
    assert checks["config"]["ok"] is False
    assert checks["mcp.json"] == {
        "name": "mcp.json", "ok": True, "detail": f"{servers}: 1 server", "fix": None,
    }  # fmt: skip
    assert TOKEN.encode() not in done.stdout


def test_everything_passes_on_a_machine_set_up_for_edge(tmp_path: Path, env: dict[str, str]) -> None:
    from .capture.conftest import PulseServer

    pulse = PulseServer()  # skips without pulseaudio (fails under CI=true)
    try:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "systemctl").write_text(SYSTEMCTL)
        (bin_dir / "systemctl").chmod(0o755)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
        env["PULSE_SERVER"] = pulse.server
        config = tmp_path / "edge.toml"
        token = tmp_path / "token"
        token.write_text(TOKEN)
        token.chmod(0o600)
        servers = tmp_path / "mcp.json"
        entry = {"command": sys.executable, "args": ["-m", "mcp_server_time"]}
        servers.write_text(json.dumps({"mcpServers": {"time": entry}}))
        port = free_port()
        config.write_text(
            f'[control]\nlisten = "127.0.0.1:{port}"\n'
            f'[tunnel]\ntoken_file = "{token}"\n[mcp]\nservers = "{servers}"\n'
        )
        done = doctor("--config", str(config), "--timeout", str(SLOW_MACHINE), env=env)
    finally:
        pulse.close()
    lines = lines_of(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(line.startswith("✓ ") for line in lines.values()), done.stdout
    assert lines["control port"] == f"✓ control port: 127.0.0.1:{port} is free"
    assert lines["config"] == f"✓ config: {config}: ok"
    assert lines["token file"] == f"✓ token file: {token}: mode 0600"
    assert lines["sound server"].startswith("✓ sound server: pulseaudio: ")
    assert lines["service manager"] == "✓ service manager: the systemd 252 user manager answers"
    assert lines["mcp time"].startswith("✓ mcp time: mcp-time ")
    assert set(lines) >= {"audio shim", "mcp.json", "declared tools", "plugins", "node", "containment"}
    assert TOKEN not in done.stdout


async def test_a_running_edge_holds_the_control_port(
    nursery: trio.Nursery, tmp_path: Path, env: dict[str, str]
) -> None:
    port = free_port()
    edge = await start_edge(
        nursery, "--workspace", str(tmp_path), "--control", f"127.0.0.1:{port}", env=env
    )
    try:
        with trio.fail_after(30):
            await edge.wait_for_log("control API on")
        done = await trio.run_process(
            edge_cmd("doctor", "--json", "--control", f"127.0.0.1:{port}", "--timeout", str(SLOW_MACHINE)),
            env=env, capture_stdout=True, check=False,
        )  # fmt: skip
    finally:
        edge.proc.terminate()
        with trio.fail_after(30):
            await edge.proc.wait()
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["control port"] == {
        "name": "control port", "ok": True, "fix": None,
        "detail": f"edge {__version__} is running there (127.0.0.1:{port})",
    }  # fmt: skip


# --- the check functions themselves, in-process --------------------------------------


def test_token_file_permissions(tmp_path: Path) -> None:
    token = tmp_path / "token"
    missing = check_token_file(token)
    assert not missing.ok and missing.detail.startswith(f"{token}: No such file")
    token.write_text("")
    token.chmod(0o600)
    assert check_token_file(token) == Check(
        "token file", False, f"{token} is empty", f"write the token to {token}"
    )
    token.write_text(TOKEN)
    assert check_token_file(token) == Check("token file", True, f"{token}: mode 0600")
    token.chmod(0o640)
    group = check_token_file(token)
    assert (group.ok, group.fix) == (False, f"chmod 600 {token}")
    assert "its group may read or change it" in group.detail
    assert check_token_file(None).ok
    assert all(TOKEN not in c.detail for c in (missing, group))


def test_node_is_needed_only_by_node_tools_and_servers(tmp_path: Path) -> None:
    from edge.tools.runtimes.load import DeclaredTool

    node_server = parse_server("files", {"command": "npx", "args": ["-y", "server"]})
    python_server = parse_server("time", {"command": sys.executable})
    off = parse_server("off", {"command": "/usr/bin/node", "disabled": True})
    tool = DeclaredTool(tmp_path / "greet", runtime="node")
    assert node_needs([], [python_server, off]) == []
    assert node_needs([tool], [node_server, python_server]) == ["tool greet", "mcp files"]


def test_sound_fixes() -> None:
    assert "pulseaudio --start" in sound_fix("mic: no PulseAudio server reachable")
    assert "libpulse0" in sound_fix("mic: libpulse.so.0 is not installed")
    assert "Privacy & Security" in sound_fix("mic: anything", platform="darwin")


def test_check_json_shape() -> None:
    record: dict[str, Any] = Check("x", False, "broken", "mend it").as_json()
    assert record == {"name": "x", "ok": False, "detail": "broken", "fix": "mend it"}
    assert Check("y", True, "fine").as_json()["fix"] is None


async def serve_json(
    body: dict[str, Any], *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """An HTTP server on loopback answering every request with ``body`` as JSON."""
    payload = json.dumps(body).encode()

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                request += chunk
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(payload), payload)
            )

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


async def test_a_health_endpoint_is_edge_only_with_the_keys_only_edge_answers(
    nursery: trio.Nursery,
) -> None:
    other = await nursery.start(serve_json, {"status": "ok", "version": "3.2.1"})
    check = await check_control_port(("127.0.0.1", other))
    assert not check.ok, check
    assert check.detail == f"127.0.0.1:{other} is held by another program (HTTP 200, not edge)"
    edge_like = {"status": "ok", "version": "9.9", "tunnel": "idle", "offeredTools": 0}
    edge = await nursery.start(serve_json, {**edge_like, "callsInFlight": 0})
    assert await check_control_port(("127.0.0.1", edge)) == Check(
        "control port", True, f"edge 9.9 is running there (127.0.0.1:{edge})"
    )


#: An MCP server that never answers and does not stop when its stdin closes: the SDK
#: stops it with SIGTERM, seconds after the check's deadline.
STUBBORN: Final = """\
import time
while True:
    time.sleep(60)
"""


def running(script: Path) -> list[int]:
    """Live processes whose command line names ``script``."""
    found = []
    for pid, state, _, _ in _processes():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if state != "Z" and str(script).encode() in cmdline.split(b"\0"):
            found.append(pid)
    return found


async def test_a_hung_mcp_server_fails_at_the_deadline_and_is_stopped_before_the_end(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv("EDGE_TOKEN", raising=False)
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    servers = tmp_path / "mcp.json"
    entry = {"command": sys.executable, "args": [str(script)]}
    servers.write_text(json.dumps({"mcpServers": {"stuck": entry}}))
    subject = Subject(mcp_file=servers, control="127.0.0.1:0", timeout=1.0)
    with trio.fail_after(SLOW_MACHINE):
        async with examination(subject) as checks:
            stuck = {c.name: c for c in checks}["mcp stuck"]
            assert (stuck.ok, stuck.detail) == (False, "no answer within 1 s")
            assert stuck.fix == "edge doctor --timeout SECONDS waits longer"
        # Leaving the block waited for the SDK to stop it (stdin closed, then SIGTERM).
        assert running(script) == []


async def test_a_missing_working_directory_is_named_with_its_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    server = parse_server("cw", {"command": sys.executable, "cwd": str(missing)})
    with trio.fail_after(SLOW_MACHINE):
        check = await check_mcp_server(server, tmp_path / "mcp.json", within=SLOW_MACHINE)
    assert check == Check(
        "mcp cw", False, f"working directory {missing}: No such file or directory",
        f"make the directory {missing}, or correct its cwd in {tmp_path / 'mcp.json'}",
    )  # fmt: skip
