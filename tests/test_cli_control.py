"""``edge record``, ``edge tunnel``, ``edge stop`` and ``edge status``: real ``edge`` commands
against a real ``edge run``, over its control API on loopback."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from edge.control.key import KEY_REFUSED
from edge.dev.cloud import FakeCloud

from .conftest import TOKEN, EdgeProcess, edge_cmd, start_edge
from .test_cli import free_port

pytestmark = pytest.mark.usefixtures("no_child_left")

#: Seconds for anything here to happen on a loaded machine (a bound on failure only).
SOON = 30.0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env.pop("EDGE_TOKEN", None)
    env.pop("NO_COLOR", None)
    return env


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@asynccontextmanager
async def running_edge(
    nursery: trio.Nursery, *args: str, env: dict[str, str]
) -> AsyncIterator[tuple[EdgeProcess, str]]:
    """``edge run ARGS`` on a free control port: (the process, ``HOST:PORT``); stopped
    (SIGTERM, else killed) on the way out, whatever happened."""
    control = f"127.0.0.1:{free_port()}"
    edge = await start_edge(nursery, "--control", control, *args, env=env)
    try:
        with trio.fail_after(SOON):
            await edge.wait_for_log("control API on")
        yield edge, control
    finally:
        with trio.CancelScope(shield=True):
            if edge.proc.returncode is None:
                edge.proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(SOON):
                    await edge.proc.wait()
                if edge.proc.returncode is None:
                    edge.proc.kill()
                    await edge.proc.wait()


class Result:
    def __init__(self, done: subprocess.CompletedProcess[bytes]) -> None:
        self.code = done.returncode
        self.out = done.stdout.decode()
        self.err = done.stderr.decode()


async def cli(*args: str, env: dict[str, str]) -> Result:
    """``edge ARGS`` to the end, stdin not a terminal: exit code, stdout, stderr."""
    with trio.fail_after(SOON):
        done = await trio.run_process(
            edge_cmd(*args), env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    return Result(done)


async def lines_of(proc: trio.Process, want: int, into: list[str]) -> None:
    """Read ``proc``'s stdout until it has given ``want`` lines (appended to ``into``)."""
    assert proc.stdout is not None
    text = ""
    while text.count("\n") < want:
        chunk = await proc.stdout.receive_some()
        assert chunk, f"stdout ended: {text!r}"
        text += chunk.decode()
    into.extend(text.splitlines())


async def read_pty(master: int, until_text: str, seen: list[str]) -> None:
    """Read the pty's master side until ``until_text`` shows (what came is in ``seen``)."""
    while until_text not in "".join(seen):
        await trio.lowlevel.wait_readable(master)
        seen.append(os.read(master, 65536).decode(errors="replace"))


def _sigint_as_on_a_terminal() -> None:
    """In the child, before exec: SIGINT's default action, as a foreground job has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def _drain_stream(proc: trio.Process) -> None:
    """Read ``proc``'s stdout to its end, dropping it."""
    assert proc.stdout is not None
    while await proc.stdout.receive_some():
        pass


async def _drain_pty(master: int) -> None:
    """Read the pty's master side until its slave side is closed, dropping it."""
    while True:
        await trio.lowlevel.wait_readable(master)
        try:
            if not os.read(master, 65536):
                return
        except OSError:  # EIO: every slave descriptor is closed
            return


async def test_record_start_status_stop(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, env: dict[str, str], token_file: Path
) -> None:
    async with running_edge(
        nursery, "--cloud", cloud.url, "--token-file", str(token_file),
        "--workspace", str(workspace), env=env,
    ) as (edge, control):  # fmt: skip
        c = ("--control", control)
        with trio.fail_after(SOON):
            await cloud.wait_connected()
        start = await cli("record", "start", "--source", "tone:440", "--chat", "call-1", *c, env=env)
        assert start.code == 0, start.err
        assert start.out.startswith("recording chat call-1: tone:440 into ")
        assert ".partial.wav (FLAC once stopped); transcribed by ws://" in start.out

        again, bad, local = await _together(
            ("record", "start", "--source", "tone:440", "--chat", "call-1", *c),
            ("record", "start", "--source", "nosuch:thing", "--chat", "x", *c),
            ("record", "start", "--source", "tone:660", "--no-asr", "--format", "wav", *c),
            env=env,
        )
        assert (again.code, again.out) == (1, "")
        assert again.err.startswith("edge: error: chat 'call-1' is already recording")
        assert bad.code == 1 and bad.err.startswith("edge: error: ") and "nosuch" in bad.err
        assert local.code == 0, local.err
        made_up = re.fullmatch(
            r"recording chat (cli-\d{8}-\d{6}): tone:660 into (\S+\.wav); local only, no ASR\n",
            local.out,
        )
        assert made_up is not None, local.out

        status, as_json, unknown = await _together(
            ("record", "status", *c),
            ("record", "status", "--json", *c),
            ("record", "stop", "--chat", "nosuch", *c),
            env=env,
        )
        assert status.code == 0
        assert sorted(line.split()[0] for line in status.out.splitlines()) == sorted(["call-1", made_up[1]])
        assert " dB " in status.out
        captures = json.loads(as_json.out)["captures"]
        assert {c["chatId"] for c in captures} == {"call-1", made_up[1]}
        assert all(set(c["level"]) == {"peakDb", "rmsDb"} for c in captures)
        assert unknown.code == 1 and "no capture is recording chat 'nosuch'" in unknown.err

        await _watch_piped_and_on_a_terminal(control, env)

        with trio.fail_after(SOON):
            await cloud.wait_transcribed("call-1", 1)
        one = await cli("record", "stop", "--chat", "call-1", *c, env=env)
        assert one.code == 0, one.err
        stopped = re.fullmatch(
            r"stopped chat call-1 \(tone:440\): \d+\.\d s into (\S+\.flac), (\d+) transcript segments?\n",
            one.out,
        )
        assert stopped is not None, one.out
        assert Path(stopped[1]).is_file() and int(stopped[2]) >= 1
        rest = await cli("record", "stop", *c, env=env)
        assert rest.code == 0
        assert rest.out.startswith(f"stopped chat {made_up[1]} (tone:660): ")
        assert f"into {made_up[2]}, 0 transcript segments\n" in rest.out
    assert "Traceback" not in edge.log


async def _together(*commands: tuple[str, ...], env: dict[str, str]) -> list[Result]:
    """Several ``edge`` commands at once, their results in order."""
    results: list[Any] = [None] * len(commands)

    async def one(i: int, args: tuple[str, ...]) -> None:
        results[i] = await cli(*args, env=env)

    async with trio.open_nursery() as nursery:
        for i, args in enumerate(commands):
            nursery.start_soon(one, i, args)
    return results


async def _watch_piped_and_on_a_terminal(control: str, env: dict[str, str]) -> None:
    """``edge record status --watch``: a line per refresh when piped, redrawn in place on a
    terminal; Ctrl-C ends it, exit 0, nothing on stderr."""
    watch = edge_cmd("record", "status", "--watch", "--control", control)
    # As from a terminal: Ctrl-C's SIGINT is not ignored (it is when the suite runs in the
    # background of a script, and an ignored SIGINT is inherited, so Python would not
    # raise KeyboardInterrupt at all).
    sigint = {"preexec_fn": _sigint_as_on_a_terminal}
    piped = await trio.lowlevel.open_process(
        watch, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **sigint
    )
    master, slave = pty.openpty()
    try:
        tty = await trio.lowlevel.open_process(
            watch, env=env, stdout=slave, stderr=subprocess.PIPE, **sigint
        )
    except BaseException:
        piped.kill()
        raise
    os.close(slave)
    lines: list[str] = []
    seen: list[str] = []
    try:
        with trio.fail_after(SOON):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lines_of, piped, 3, lines)
                nursery.start_soon(read_pty, master, "\x1b[2F\x1b[J", seen)
            async with trio.open_nursery() as draining:
                # Keep reading what they write until they exit: a full pipe or pty would
                # block the view's last write after Ctrl-C (a terminal is always read).
                draining.start_soon(_drain_stream, piped)
                draining.start_soon(_drain_pty, master)
                for proc in (piped, tty):
                    proc.send_signal(signal.SIGINT)
                    assert await proc.wait() == 0
                    assert proc.stderr is not None
                    assert await proc.stderr.receive_some() == b""
                draining.cancel_scope.cancel()
    finally:
        for proc in (piped, tty):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        os.close(master)
    for line in lines[:3]:
        assert re.fullmatch(r"\d\d:\d\d:\d\d call-1 peak \S+ dB rms \S+ dB \d+\.\d s \| cli-.*", line), line
    screen = "".join(seen)
    assert "call-1" in screen and "█" in screen  # the level meter of `edge capture`


async def test_tunnel_status_connect_disconnect(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, env: dict[str, str], tmp_path: Path
) -> None:
    async with running_edge(nursery, "--workspace", str(workspace), env=env) as (edge, control):
        c = ("--control", control)
        idle, overall, no_tty, no_capture = await _together(
            ("tunnel", "status", *c),
            ("status", *c),
            ("tunnel", "connect", "--url", cloud.url, *c),
            ("record", "stop", *c),
            env=env,
        )
        assert (no_capture.code, no_capture.out) == (0, "nothing was recording\n")
        assert idle.code == 0
        assert re.match(r"tunnel: disconnected since \d\d:\d\d:\d\d \(for \d+ s\)\n", idle.out), idle.out
        assert "  connect it with: edge tunnel connect --url URL\n" in idle.out
        assert "outbox: 0 results waiting (kept on disk)" in idle.out
        assert "tunnel: disconnected since" in overall.out
        assert "connect it with: edge tunnel connect --url URL" in overall.out
        assert "; 0 calls in flight; 0 results waiting" in overall.out
        assert no_tty.code == 2
        assert no_tty.err == (
            "edge: error: no terminal to ask for the token on: give it with --token-file FILE "
            "(a token is never taken from the command line)\n"
        )

        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-token\n")
        wrong.chmod(0o600)
        refused = await cli("tunnel", "connect", "--url", cloud.url, "--token-file", str(wrong), *c, env=env)
        assert refused.code == 1
        assert refused.err.startswith("edge: error: the cloud refused the token: ")
        after = await cli("tunnel", "status", *c, env=env)
        assert after.out.startswith("tunnel: unauthorized since ")
        assert "the cloud refused the token; connect again with: edge tunnel connect --url URL" in after.out

        await _connect_on_a_terminal(cloud, control, env)
        status, shown = await _together(
            ("tunnel", "status", "--json", *c), ("tunnel", "status", *c), env=env
        )
        info = json.loads(status.out)
        assert info["status"] == "connected" and info["url"] == cloud.url
        assert [h["status"] for h in info["history"]][-2:] == ["connecting", "connected"]
        assert info["attempts"] == 0 and info["nextRetryAt"] is None
        assert shown.out.startswith("tunnel: connected since ")
        assert f"to {cloud.url} as user user-1" in shown.out

        off = await cli("tunnel", "disconnect", *c, env=env)
        assert off.code == 0 and off.out.startswith("tunnel: disconnected")
        with trio.fail_after(SOON):
            await cloud.wait_for(lambda: not cloud.connected)
        for text in (refused.out, refused.err, shown.out, status.out, edge.log):
            assert TOKEN not in text
    assert "Traceback" not in edge.log


async def _connect_on_a_terminal(cloud: FakeCloud, control: str, env: dict[str, str]) -> None:
    """``edge tunnel connect`` asks for the token on the terminal, without echoing it."""
    master, slave = pty.openpty()
    try:
        proc = await trio.lowlevel.open_process(
            edge_cmd("tunnel", "connect", "--url", cloud.url, "--control", control),
            env=env, stdin=slave, stdout=subprocess.PIPE, stderr=slave,
            start_new_session=True,  # no controlling terminal: getpass uses stdin, the pty
        )  # fmt: skip
    finally:
        os.close(slave)
    seen: list[str] = []
    try:
        with trio.fail_after(SOON):
            await read_pty(master, "(not shown): ", seen)
            os.write(master, TOKEN.encode() + b"\n")
            assert await proc.wait() == 0
            await cloud.wait_connected()
        assert proc.stdout is not None
        out = (await proc.stdout.receive_some()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        with trio.move_on_after(0.5):
            while True:  # what the terminal showed after the prompt
                await trio.lowlevel.wait_readable(master)
                try:
                    seen.append(os.read(master, 65536).decode(errors="replace"))
                except OSError:  # the other side is closed
                    break
        os.close(master)
    assert "".join(seen).startswith(f"token for {cloud.url} (not shown): ")
    assert TOKEN not in "".join(seen)
    assert out.startswith(f"tunnel: connecting to {cloud.url}\n")


async def test_edge_stop_stops_the_daemon_cleanly(
    nursery: trio.Nursery, workspace: Path, env: dict[str, str], tmp_path: Path
) -> None:
    async with running_edge(nursery, "--workspace", str(workspace), env=env) as (edge, control):
        async with httpx.AsyncClient(base_url=f"http://{control}", trust_env=False) as client:
            refused = await client.post("/stop")
            assert (refused.status_code, refused.json()) == (403, {"error": KEY_REFUSED})
            other_user = {**env, "XDG_STATE_HOME": str(tmp_path / "elsewhere")}
            no_key = await cli("stop", "--control", control, env=other_user)
            assert no_key.code == 1
            assert "refused to stop: the local key (" in no_key.err
            assert "could not be read; is it run by another user" in no_key.err
            assert (await client.get("/health")).json()["status"] == "ok"  # still running
        stop = await cli("stop", "--control", control, env=env)
        assert stop.code == 0, stop.err
        assert stop.out == "edge stopped\n"
        assert stop.err == f"stopping the edge daemon on {control}\n"
        with trio.fail_after(SOON):
            assert await edge.proc.wait() == 0
            await edge.wait_for_log("POST /stop (edge stop): stopping")
        assert "Traceback" not in edge.log
        assert not list((tmp_path / "state").rglob("control-*.key"))  # removed on the way out
    gone = await cli("stop", "--control", control, env=env)
    assert gone.code == 1
    assert gone.err.startswith(f"edge: error: no edge daemon answers on {control}")
    assert gone.err.endswith(": there is nothing to stop\n")
