"""``edge dev-cloud`` as a user runs it: a real process on a real terminal (a pty) or a pipe,
a real edge connecting to it."""

from __future__ import annotations

import io
import json
import math
import os
import re
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import httpx
import pytest
import trio
import trio_websocket

from edge.dev.cloud import FakeCloud
from edge.dev.commands import COMMANDS, NAMES, epilog
from edge.dev.console import Console
from edge.dev.gateway import FakeGateway, Step

from .conftest import edge_cmd, start_edge, until

pytestmark = pytest.mark.usefixtures("no_child_left")

#: Seconds a step may take on a loaded machine (a bound on failure, never a measurement).
WITHIN: Final = 30
#: A WebSocket upgrade request for the tunnel, its Bearer token to fill in.
UPGRADE: Final = (
    b"GET /tunnel HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Authorization: Bearer %s\r\n\r\n"
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_STATE_HOME=str(tmp_path / "state"),
    )
    env.pop("EDGE_TOKEN", None)
    return env


class DevCloud:
    """An ``edge dev-cloud`` process; what it prints is collected in ``out``."""

    def __init__(self, proc: trio.Process, output: trio.abc.ReceiveStream) -> None:
        self.proc = proc
        self.output = output
        self.out = ""

    async def collect(self) -> None:
        try:
            async for chunk in self.output:
                self.out += chunk.decode(errors="replace")
        except trio.BrokenResourceError:  # a pty's reader gets EIO once the process is gone
            pass

    async def wait_for(self, text: str) -> None:
        await until(lambda: text in self.out, poll=0.01)

    @property
    def url(self) -> str:
        match = re.search(r"fake cloud on (ws://\S+/tunnel)", self.out)
        assert match, self.out
        return match.group(1)


@pytest.fixture
async def terminal_cloud(
    nursery: trio.Nursery, env: dict[str, str]
) -> AsyncIterator[tuple[DevCloud, trio.lowlevel.FdStream]]:
    """``edge dev-cloud`` with a pty as stdin and stdout (a terminal); the pty's master."""
    master, slave = os.openpty()
    try:
        proc = await trio.lowlevel.open_process(
            edge_cmd("dev-cloud", "--port", "0", "--token", "demo"),
            env=env, stdin=slave, stdout=slave, stderr=subprocess.STDOUT,
        )  # fmt: skip
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    terminal = trio.lowlevel.FdStream(master)
    cloud = DevCloud(proc, terminal)
    nursery.start_soon(cloud.collect)
    try:
        with trio.fail_after(WITHIN):
            await cloud.wait_for("cloud> ")
        yield cloud, terminal
    finally:
        proc.kill()
        await proc.wait()
        await terminal.aclose()


async def test_on_a_terminal_it_prompts_announces_runs_calls_beside_pings_and_stops_on_ctrl_d(
    nursery: trio.Nursery,
    terminal_cloud: tuple[DevCloud, trio.lowlevel.FdStream],
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    cloud, terminal = terminal_cloud
    workspace = tmp_path / "ws"
    workspace.mkdir()
    go = tmp_path / "go"
    edge = await start_edge(
        nursery, "--cloud", cloud.url, "--workspace", str(workspace), "--no-control",
        env={**env, "EDGE_TOKEN": "demo"},
    )  # fmt: skip
    try:
        with trio.fail_after(WITHIN):
            await cloud.wait_for("edge connected: ")
            # A call that runs until the test lets it go: a ping typed meanwhile is answered.
            wait = f"while [ ! -e {go} ]; do sleep 0.05; done; echo released"
            await terminal.send_all(b'call terminal {"command": "%s"}\n' % wait.encode())
            await cloud.wait_for("call 1 (terminal) sent")
            await terminal.send_all(b"ping\n")
            await cloud.wait_for("pong in ")
            assert "answered in" not in cloud.out
            go.touch()
            await cloud.wait_for('"output": "released\\n"')

            await terminal.send_all(b"approve terminal,nope\n")
            replaced = "approved: nope, terminal (replaces the previous set)"
            await cloud.wait_for(f"{replaced}; not offered by the edge: nope")
            await terminal.send_all(b"approve\n")
            await cloud.wait_for("approved: nope, terminal\r\n  change with: approve NAME")
            await terminal.send_all(b"call\n")
            await cloud.wait_for("usage: call TOOL [JSON]")

            edge.proc.send_signal(signal.SIGTERM)
            assert await edge.proc.wait() == 0
            await cloud.wait_for("edge disconnected: ")
            await terminal.send_all(b"\x04")  # Ctrl-D at the start of a line: end of input
            assert await cloud.proc.wait() == 0
        assert "end of input: stopping the fake cloud" in cloud.out
        assert "Traceback" not in cloud.out
    finally:
        edge.proc.kill()
        await edge.proc.wait()


async def test_ctrl_c_on_a_terminal_stops_it_cleanly_with_exit_0(
    terminal_cloud: tuple[DevCloud, trio.lowlevel.FdStream],
) -> None:
    cloud, _ = terminal_cloud
    cloud.proc.send_signal(signal.SIGINT)  # what the terminal sends its foreground on Ctrl-C
    with trio.fail_after(WITHIN):
        assert await cloud.proc.wait() == 0
        await cloud.wait_for("stopping the fake cloud (Ctrl-C)")
    assert "Traceback" not in cloud.out
    assert "KeyboardInterrupt" not in cloud.out


async def test_from_a_pipe_it_runs_the_commands_in_order_then_serves_until_sigterm(
    nursery: trio.Nursery, env: dict[str, str]
) -> None:
    proc = await trio.lowlevel.open_process(
        edge_cmd("dev-cloud", "--port", "0", "--token", "demo"),
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    cloud = DevCloud(proc, proc.stdout)
    nursery.start_soon(cloud.collect)
    try:
        with trio.fail_after(WITHIN):
            await proc.stdin.send_all(b"gw say first\ngw say second\n")
            await proc.stdin.aclose()
            await cloud.wait_for("end of input: serving on until Ctrl-C or SIGTERM")
            # Still serving: a wrong token is refused (and said, without echoing it)...
            port = int(cloud.url.rsplit(":", 1)[1].split("/")[0])
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(UPGRADE % b"not-the-token")
                reply = await stream.receive_some(4096)
            assert reply.startswith(b"HTTP/1.1 401 "), reply
            await cloud.wait_for("refused a connection: wrong token (401)")
            # ...and the gateway answers as scripted, in the order typed.
            gateway = cloud.out.split("fake model gateway on ", 1)[1].split()[0]
            answers = []
            async with httpx.AsyncClient(trust_env=False) as client:
                for _ in range(2):
                    reply = await client.post(
                        f"{gateway}/chat/completions", headers={"authorization": "Bearer demo"},
                        json={"messages": [{"role": "user", "content": "hi"}]},
                    )  # fmt: skip
                    answers.append(reply.json()["choices"][0]["message"]["content"])
            assert answers == ["first", "second"]
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
            await cloud.wait_for("stopping the fake cloud (SIGTERM)")
        assert "not-the-token" not in cloud.out
        assert "cloud> " not in cloud.out  # no prompt when stdin is not a terminal
    finally:
        proc.kill()
        await proc.wait()


def test_a_port_in_use_is_one_error_line(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            edge_cmd("dev-cloud", "--port", str(port)),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=WITHIN,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(f"edge: error: cannot serve the fake cloud on 127.0.0.1:{port}")
    assert "--port 0" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_help_lists_every_stdin_command_from_the_table_the_console_runs(
    env: dict[str, str],
) -> None:
    console = Console(FakeCloud(), FakeGateway(), io.StringIO(), prompt=False)
    assert set(console.handlers) == set(NAMES)
    result = subprocess.run(
        edge_cmd("dev-cloud", "--help"),
        capture_output=True, text=True, env={**env, "COLUMNS": "100"}, timeout=WITHIN,
    )  # fmt: skip
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"  {command.usage}  " in result.stdout, command
    words = " ".join(result.stdout.split())
    assert "Ctrl-D (end of input), quit or Ctrl-C stops it (exit 0)" in words
    assert "--host HOST address to listen on" in words
    # A narrow terminal gets the listing in one column, wrapped to its width (the prose
    # around it is the formatter's to wrap).
    listed = [line for line in epilog(40).splitlines() if line.startswith("  ")]
    assert all(len(line) <= 40 for line in listed if "EDGE_TOKEN=" not in line), listed


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_an_ipv6_host_is_bracketed_in_the_urls_printed_and_sent(nursery: trio.Nursery) -> None:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    cloud, gateway = FakeCloud(["demo"]), FakeGateway(["demo"])
    cloud.gateway_url = await nursery.start(gateway.serve, "::1", 0)
    await nursery.start(cloud.serve, "::1", 0)
    assert re.fullmatch(r"ws://\[::1\]:\d+/tunnel", cloud.url), cloud.url
    assert cloud.asr_url == cloud.url.removesuffix("/tunnel") + "/asr"
    with trio.fail_after(WITHIN):
        async with trio_websocket.open_websocket_url(
            cloud.url, extra_headers=[(b"authorization", b"Bearer demo")]
        ) as ws:
            connected = json.loads(await ws.get_message())
    assert connected["asrUrl"] == cloud.asr_url
    out = io.StringIO()
    Console(cloud, gateway, out, prompt=False).banner("demo")
    assert f"fake cloud on {cloud.url} " in out.getvalue()
    assert f"edge run --cloud {cloud.url}\n" in out.getvalue()


async def test_gw_refuses_seconds_that_are_not_a_finite_number_and_a_call_without_a_tool() -> None:
    gateway, out = FakeGateway(), io.StringIO()
    console = Console(FakeCloud(), gateway, out, prompt=False)
    for line in ("slow nan hi", "slow inf hi", "slow -1 hi", "slow soon hi", "slow", "call", "call no_index"):
        await console.run("gw", line)
    assert gateway.steps_left == 0
    said = out.getvalue().splitlines()
    assert said[:3] == [
        "usage: gw slow SECONDS TEXT (SECONDS: a number, 0 or more; not 'nan')",
        "usage: gw slow SECONDS TEXT (SECONDS: a number, 0 or more; not 'inf')",
        "usage: gw slow SECONDS TEXT (SECONDS: a number, 0 or more; not '-1')",
    ]
    assert said[-2:] == ["usage: gw call [SHAPE] NAME {JSON}"] * 2
    for delay in (math.nan, math.inf, -0.5):
        with pytest.raises(ValueError, match="chunk_delay"):
            Step(chunk_delay=delay)
    await console.run("gw", "slow 0.25 one two")
    assert gateway.steps_left == 1
