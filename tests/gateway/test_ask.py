"""``edge ask`` end to end: the CLI process → the daemon's /ask → the fake cloud's gateway,
and the model's tool calls on the tunnel's path; ``--offline`` with no daemon at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud
from edge.dev.gateway import FakeGateway, Step
from tests.conftest import TOKEN, child_processes, edge_cmd, fast_tunnel, make_config, until

pytestmark = pytest.mark.slow

#: Seconds anything here may take before the test counts it as hung.
HANG = 60.0


@pytest.fixture
async def gateway(nursery: trio.Nursery) -> FakeGateway:
    gw = FakeGateway(tokens=[TOKEN])
    await nursery.start(gw.serve)
    return gw


@pytest.fixture
async def connected(
    nursery: trio.Nursery, cloud: FakeCloud, gateway: FakeGateway, workspace: Path
) -> Daemon:
    """A daemon on the fake cloud, which names the fake gateway in ``connected``."""
    cloud.gateway_url = gateway.url
    cfg = make_config(workspace, cloud, control=("127.0.0.1", 0))
    daemon: Daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(HANG):
        await cloud.wait_connected()
        await until(lambda: daemon.cloud_gateway_url == gateway.url and bool(daemon.approved))
    return daemon


def control_of(daemon: Daemon) -> str:
    assert daemon.control_url is not None
    return daemon.control_url.removeprefix("http://")


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "EDGE_TOKEN"}
    out["NO_COLOR"] = "1"
    return out


async def ask(
    *args: str, stdin: bytes = b"", config: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    extra = ["--config", str(config)] if config is not None else []
    with trio.fail_after(HANG):
        return await trio.run_process(
            edge_cmd("ask", *args, *extra), stdin=stdin, capture_stdout=True,
            capture_stderr=True, check=False, env=env(),
        )  # fmt: skip


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m.get("role") == "tool"]


async def test_a_question_streams_its_answer_and_the_model_reads_a_file(
    connected: Daemon, gateway: FakeGateway, workspace: Path
) -> None:
    (workspace / "notes.txt").write_text("the meeting is on Tuesday\n")
    gateway.script(
        Step(calls=(("file_read", {"path": "notes.txt"}),)),
        Step(text="Your notes say the meeting is on Tuesday."),
    )
    done = await ask("when is the meeting?", "--control", control_of(connected))
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert out.strip() == "Your notes say the meeting is on Tuesday."
    assert "[file_read]" in err
    assert 'path="notes.txt"' in err
    assert " ok" in err
    first, second = gateway.requests
    assert first["authorized"]
    assert second["authorized"]
    offered = {t["function"]["name"] for t in first["tools"]}
    assert "file_read" in offered
    assert offered == set(connected.effective_tools())
    assert first["stream"] is True
    [result] = tool_messages(second)
    assert "Tuesday" in result["content"]
    assert TOKEN not in out + err


async def test_several_calls_of_one_turn_run_at_once(
    connected: Daemon, gateway: FakeGateway, workspace: Path
) -> None:
    # Each waits for the other's file: run one after the other, the first gives up alone.
    def meet(mine: str, theirs: str) -> dict[str, Any]:
        wait = (
            f"touch {mine}; i=0; while [ ! -f {theirs} ]; do i=$((i+1)); "
            f"[ $i -gt 600 ] && {{ echo alone; exit 1; }}; sleep 0.05; done; echo met"
        )
        return {"command": wait}

    gateway.script(
        Step(calls=(("terminal", meet("a", "b")), ("terminal", meet("b", "a")))),
        Step(text="both met"),
    )
    done = await ask("meet", "--control", control_of(connected))
    assert done.returncode == 0, done.stderr.decode()
    results = tool_messages(gateway.requests[1])
    assert [r["content"].strip() for r in results] == ["met", "met"]
    ids = [c["id"] for c in gateway.requests[1]["messages"][-3]["tool_calls"]]
    assert [r["tool_call_id"] for r in results] == ids  # in the order the model asked


async def test_arguments_that_do_not_parse_become_an_error_the_model_reads(
    connected: Daemon, gateway: FakeGateway
) -> None:
    gateway.script(Step(calls=(("file_read", '{"path": "x'),)), Step(text="sorry"))
    done = await ask("read x", "--control", control_of(connected))
    assert done.returncode == 0, done.stderr.decode()
    [result] = tool_messages(gateway.requests[1])
    assert result["content"].startswith("Error: arguments of file_read are not valid JSON")
    assert "error: arguments of file_read" in done.stderr.decode()


async def test_a_tool_the_cloud_did_not_approve_is_refused(
    connected: Daemon, gateway: FakeGateway, cloud: FakeCloud
) -> None:
    await cloud.approve_tools(["file_read"])
    await until(lambda: connected.approved == frozenset({"file_read"}))
    gateway.script(Step(calls=(("terminal", {"command": "echo hi"}),)), Step(text="no"))
    done = await ask("run echo", "--control", control_of(connected))
    assert done.returncode == 0
    [result] = tool_messages(gateway.requests[1])
    assert "not approved by the cloud" in result["content"]
    offered = {t["function"]["name"] for t in gateway.requests[0]["tools"]}
    assert offered == {"file_read"}


async def test_json_format_stdin_question_system_and_model(
    connected: Daemon, gateway: FakeGateway
) -> None:
    gateway.script(Step(text="forty-two", model="big-model"))
    done = await ask(
        "-", "--format", "json", "--system", "be brief", "--model", "big-model",
        "--control", control_of(connected), stdin=b"the answer?\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    answer = json.loads(done.stdout)
    assert answer["answer"] == "forty-two"
    assert answer["model"] == "big-model"
    assert answer["toolCalls"] == []
    assert answer["rounds"] == 1
    body = gateway.requests[0]
    assert body["model"] == "big-model"
    assert body["messages"][:2] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "the answer?\n"},
    ]


async def test_a_gateway_error_fails_the_command_with_its_message(
    connected: Daemon, gateway: FakeGateway
) -> None:
    gateway.script(Step(status=503))
    done = await ask("hello", "--control", control_of(connected))
    assert done.returncode == 1
    assert "HTTP 503" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()


async def test_no_daemon_says_how_to_connect_or_go_offline() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = await ask("hello", "--control", f"127.0.0.1:{port}")
    err = done.stderr.decode()
    assert done.returncode == 1
    assert "no edge daemon answers" in err
    assert "edge run" in err
    assert "--offline" in err


async def test_a_daemon_without_a_token_says_how_to_connect(
    nursery: trio.Nursery, workspace: Path
) -> None:
    cfg = make_config(workspace, None, control=("127.0.0.1", 0))
    daemon: Daemon = await nursery.start(Daemon(cfg).run)
    done = await ask("hello", "--control", control_of(daemon))
    err = done.stderr.decode()
    assert done.returncode == 1
    assert "not connected to the cloud" in err
    assert "--offline" in err


async def test_ctrl_c_stops_the_answer_and_cancels_running_calls(
    nursery: trio.Nursery, connected: Daemon, gateway: FakeGateway, workspace: Path
) -> None:
    marker = workspace / "started"
    gateway.script(Step(calls=(("terminal", {"command": f"touch {marker}; sleep 300"}),)))
    proc = await trio.lowlevel.open_process(
        edge_cmd("ask", "sleep", "--control", control_of(connected)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(),
    )  # fmt: skip
    try:
        with trio.fail_after(HANG):
            await until(lambda: marker.exists() and connected.workers.in_flight == 1)
            proc.send_signal(signal.SIGINT)
            code = await proc.wait()
            await until(lambda: connected.workers.in_flight == 0)
            await until(lambda: not [p for p in child_processes() if _is_sleep(p)])
        assert code == 130
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                await pipe.aclose()


def _is_sleep(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"300"]
    except OSError:
        return False


# --- offline: no daemon, a model server on this machine --------------------------------


@pytest.fixture
async def local_server(nursery: trio.Nursery) -> FakeGateway:
    gw = FakeGateway(tokens=None)
    await nursery.start(gw.serve)
    return gw


def offline_config(tmp_path: Path, workspace: Path, server: FakeGateway) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[offline]\nurl = "{server.url}"\nmodel = "local-model"\n'
        f'[policy]\nworkspace = "{workspace}"\n'
        f'[plugins]\ndirs = ["{tmp_path / "no-plugins"}"]\n'
        f'[tools]\ndirs = ["{tmp_path / "no-tools"}"]\n'
    )
    return config


async def test_offline_asks_the_local_server_and_confirms_changes(
    tmp_path: Path, workspace: Path, local_server: FakeGateway
) -> None:
    config = offline_config(tmp_path, workspace, local_server)
    write = ("file_write", {"path": "out.txt", "content": "written"})
    local_server.script(Step(calls=(write,)), Step(text="could not"))
    done = await ask("write it", "--offline", config=config)
    assert done.returncode == 0, done.stderr.decode()
    [result] = tool_messages(local_server.requests[1])
    assert "no terminal to confirm" in result["content"]
    assert "--yes" in result["content"]
    assert not (workspace / "out.txt").exists()
    assert local_server.requests[0]["model"] == "local-model"

    local_server.script(Step(calls=(write,)), Step(text="written"))
    done = await ask("write it", "--offline", "--yes", config=config)
    assert done.returncode == 0, done.stderr.decode()
    assert (workspace / "out.txt").read_text() == "written"
    assert done.stdout.decode().strip() == "written"


async def test_offline_without_a_server_says_where_it_looked(
    tmp_path: Path, workspace: Path
) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text(
        f'[offline]\nurl = "http://127.0.0.1:{port}/v1"\n[policy]\nworkspace = "{workspace}"\n'
    )
    done = await ask("hello", "--offline", config=config)
    err = done.stderr.decode()
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in err
    assert "[offline] url" in err


async def test_chat_keeps_the_conversation_and_its_commands_work(
    tmp_path: Path, workspace: Path, local_server: FakeGateway
) -> None:
    import pty

    config = offline_config(tmp_path, workspace, local_server)
    saved = tmp_path / "chat.json"
    main, sub = pty.openpty()
    proc = await trio.lowlevel.open_process(
        edge_cmd("chat", "--offline", "--config", str(config), "--save", str(saved)),
        stdin=sub, stdout=sub, stderr=sub, env=env(),
    )  # fmt: skip
    os.close(sub)
    seen = b""

    async def expect(text: bytes) -> None:
        nonlocal seen
        while text not in seen:
            try:
                seen += await trio.to_thread.run_sync(os.read, main, 4096)
            except OSError:
                break
        assert text in seen, seen.decode(errors="replace")

    try:
        with trio.fail_after(HANG):
            await expect(b"you> ")
            os.write(main, b"hello there\n")
            await expect(b"echo: hello there")
            os.write(main, b"/tools\n")
            await expect(b"file_read")
            os.write(main, b"second\n")
            await expect(b"echo: second")
            os.write(main, b"/exit\n")
            code = await proc.wait()
        assert code == 0
        second = local_server.requests[1]["messages"]
        users = [m["content"] for m in second if m["role"] == "user"]
        assert users == ["hello there", "second"]  # the first turn is in the second request
        kept = json.loads(saved.read_text())["messages"]
        assert [m["role"] for m in kept] == ["user", "assistant", "user", "assistant"]
        assert saved.stat().st_mode & 0o777 == 0o600
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
        os.close(main)



async def test_new_credentials_forget_the_last_clouds_gateway(
    connected: Daemon, gateway: FakeGateway
) -> None:
    # Moved to another cloud (unreachable here): its token must not go to the old gateway.
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert connected.control_url is not None
    async with httpx.AsyncClient(base_url=connected.control_url, trust_env=False) as client:
        reply = await client.post(
            "/tunnel/activate",
            json={"jwt": "other-clouds-token", "tunnelUrl": f"ws://127.0.0.1:{port}/tunnel"},
        )
    assert reply.status_code == 202
    done = await ask("hello", "--control", control_of(connected))
    assert done.returncode == 1
    assert "named no model gateway" in done.stderr.decode()
    assert gateway.requests == []


async def test_a_reader_that_goes_away_ends_the_answer_quietly(
    connected: Daemon, gateway: FakeGateway
) -> None:
    gateway.script(Step(text="word " * 5000))
    script = (
        f"{' '.join(edge_cmd('ask', 'long', '--control', control_of(connected)))} | head -c 20;"
        ' echo " status=${PIPESTATUS[0]}"'
    )
    with trio.fail_after(HANG):
        done = await trio.run_process(
            ["bash", "-c", script], capture_stdout=True, capture_stderr=True, env=env()
        )
    assert done.stdout.decode().endswith(" status=141\n")
    assert done.stderr == b""


async def test_a_proxy_in_the_environment_is_not_used_for_this_machine(
    connected: Daemon, gateway: FakeGateway
) -> None:
    gateway.script(Step(text="straight"))
    proxied = {**env(), "HTTP_PROXY": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9"}
    with trio.fail_after(HANG):
        done = await trio.run_process(
            edge_cmd("ask", "hi", "--control", control_of(connected)),
            capture_stdout=True, capture_stderr=True, check=False, env=proxied,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "straight"


async def test_offline_bad_settings_are_one_clear_line(
    tmp_path: Path, workspace: Path, local_server: FakeGateway
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[offline]\nurl = "http://[::1/v1"\n[policy]\nworkspace = "{workspace}"\n'
        f'[plugins]\ndirs = ["{tmp_path / "np"}"]\n[tools]\ndirs = ["{tmp_path / "nt"}"]\n'
    )
    done = await ask("hello", "--offline", config=config)
    assert done.returncode == 1
    assert "is not a URL" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()

    config.write_text(
        f'[offline]\nurl = "{local_server.url}"\napi_key_env = "LOCAL_KEY"\n'
        f'[policy]\nworkspace = "{workspace}"\n'
        f'[plugins]\ndirs = ["{tmp_path / "np"}"]\n[tools]\ndirs = ["{tmp_path / "nt"}"]\n'
    )
    key = "sk-secret-part\nsecond-line"  # a key pasted with a line break in it
    with trio.fail_after(HANG):
        done = await trio.run_process(
            edge_cmd("ask", "hello", "--offline", "--config", str(config)),
            capture_stdout=True, capture_stderr=True, check=False,
            env={**env(), "LOCAL_KEY": key},
        )  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 1
    assert "cannot be sent" in err
    assert "sk-secret-part" not in err
    assert "Traceback" not in err
    assert local_server.requests == []
