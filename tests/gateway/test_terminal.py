"""``edge ask``/``chat`` on a real terminal (a pty that is the process's controlling terminal,
as a user's is): the y/N confirmation, Ctrl-C at it and at the prompt, terminal modes kept."""

from __future__ import annotations

import fcntl
import os
import pty
import termios
from pathlib import Path

import pytest
import trio

from edge.dev.gateway import FakeGateway, Step
from tests.conftest import edge_cmd
from tests.gateway.test_ask import env, offline_config

pytestmark = pytest.mark.slow

HANG = 60.0


def _controlling_tty() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A pty whose far side is a child's stdin, stdout, stderr and controlling terminal."""

    def __init__(self) -> None:
        self.main, self.sub = pty.openpty()
        self.seen = b""
        self.proc: trio.Process | None = None

    async def spawn(self, *args: str) -> trio.Process:
        self.proc = await trio.lowlevel.open_process(
            edge_cmd(*args), stdin=self.sub, stdout=self.sub, stderr=self.sub, env=env(),
            preexec_fn=_controlling_tty,
        )  # fmt: skip
        return self.proc

    async def expect(self, text: bytes) -> None:
        with trio.fail_after(HANG):
            while text not in self.seen:
                try:
                    data = await trio.to_thread.run_sync(
                        os.read, self.main, 4096, abandon_on_cancel=True
                    )
                except OSError:
                    break
                self.seen += data
        assert text in self.seen, self.seen.decode(errors="replace")

    def write(self, data: bytes) -> None:
        os.write(self.main, data)

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
        if self.proc is not None:
            with trio.CancelScope(shield=True):
                await self.proc.wait()
        for fd in (self.main, self.sub):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
async def terminal() -> object:
    term = Terminal()
    try:
        yield term
    finally:
        await term.close()


@pytest.fixture
async def local_server(nursery: trio.Nursery) -> FakeGateway:
    gw = FakeGateway(tokens=None)
    await nursery.start(gw.serve)
    return gw


async def test_y_runs_a_changing_tool_and_n_declines_it(
    terminal: Terminal, tmp_path: Path, workspace: Path, local_server: FakeGateway
) -> None:
    config = offline_config(tmp_path, workspace, local_server)
    local_server.script(
        Step(calls=(("terminal", {"command": "echo ran-it"}),)), Step(text="yes done"),
    )  # fmt: skip
    proc = await terminal.spawn("ask", "--offline", "--config", str(config), "go")
    await terminal.expect(b'run terminal command="echo ran-it"? [y/N] ')
    terminal.write(b"y\n")
    await terminal.expect(b"yes done")
    with trio.fail_after(HANG):
        assert await proc.wait() == 0
    [result] = [m for m in local_server.requests[1]["messages"] if m["role"] == "tool"]
    assert result["content"].strip() == "ran-it"

    local_server.script(Step(calls=(("terminal", {"command": "echo no"}),)), Step(text="ok"))
    second = Terminal()
    try:
        proc = await second.spawn("ask", "--offline", "--config", str(config), "go")
        await second.expect(b"[y/N] ")
        second.write(b"\n")  # the default: no
        with trio.fail_after(HANG):
            assert await proc.wait() == 0
    finally:
        await second.close()
    [result] = [m for m in local_server.requests[3]["messages"] if m["role"] == "tool"]
    assert "declined" in result["content"]


async def test_ctrl_c_at_a_confirmation_gives_the_prompt_back_whole(
    terminal: Terminal, tmp_path: Path, workspace: Path, local_server: FakeGateway
) -> None:
    config = offline_config(tmp_path, workspace, local_server)
    local_server.script(Step(calls=(("terminal", {"command": "echo hi"}),)))
    await terminal.spawn("chat", "--offline", "--config", str(config))
    await terminal.expect(b"you> ")
    terminal.write(b"run it\n")
    await terminal.expect(b"[y/N] ")
    terminal.write(b"\x03")  # Ctrl-C, as the terminal sends it
    await terminal.expect(b"(stopped)")
    await terminal.expect(b"you> ")
    terminal.write(b"hello there\n")  # reaches the chat, not a reader left behind
    await terminal.expect(b"echo: hello there")
    terminal.write(b"/exit\n")
    assert terminal.proc is not None
    with trio.fail_after(HANG):
        assert await terminal.proc.wait() == 0


async def test_ctrl_c_at_the_prompt_leaves_the_terminal_as_it_was(
    terminal: Terminal, tmp_path: Path, workspace: Path, local_server: FakeGateway
) -> None:
    config = offline_config(tmp_path, workspace, local_server)
    before = termios.tcgetattr(terminal.sub)[3]
    assert before & termios.ECHO
    await terminal.spawn("chat", "--offline", "--config", str(config))
    await terminal.expect(b"you> ")
    terminal.write(b"\x03")
    assert terminal.proc is not None
    with trio.fail_after(HANG):
        await terminal.proc.wait()
    after = termios.tcgetattr(terminal.sub)[3]
    assert after & (termios.ECHO | termios.ICANON) == before & (termios.ECHO | termios.ICANON)
