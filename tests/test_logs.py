"""edge's log: text and JSON lines, local time with its offset, the 0600 file reopened after a
rotation, the scrubber on every handler, [log] in the config, -q/-v on the commands, and
GET /calls with the call_started/call_finished events of a real daemon."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio

from edge.cli import _parser
from edge.cli.common import call_handler, progress, setup_logging, verbosity
from edge.cli.run import EPILOG as RUN_EPILOG
from edge.config import load_config
from edge.daemon import Daemon, build_executor
from edge.dev.cloud import FakeCloud
from edge.errors import ConfigError
from edge.logs import (
    KEEP,
    MAX_BYTES,
    NOISY,
    LogOptions,
    configure,
    default_log_file,
    remove_handlers,
)
from edge.service.systemd import log_file as service_log_file

from .conftest import (
    CONNECT_WITHIN,
    TOKEN,
    edge_cmd,
    fast_tunnel,
    make_config,
    start_edge,
    until,
)

#: A text line's start: date, time to the millisecond, UTC offset, level.
TEXT_LINE: Final = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (\w+) +")
#: Seconds for what a test waits on, on a busy machine (a bound on failure only).
SOON: Final = 30.0
#: An arg and an output that must never reach GET /calls.
SECRET: Final = "sk-live-secret-arg-4242"
#: A JWT-shaped token: the scrubber's to remove.
JWT: Final = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJlZGdlIn0.c2lnbmF0dXJl"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A subprocess's environment: config, data and state under ``tmp_path``, no token."""
    env = dict(os.environ)
    for name in ("CONFIG", "DATA", "STATE"):
        env[f"XDG_{name}_HOME"] = str(tmp_path / name.lower())
    env.pop("EDGE_TOKEN", None)
    return env


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was after a test that configures it."""
    root = logging.getLogger()
    level = root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY}
    yield
    remove_handlers()
    root.setLevel(level)
    for name, old in noisy.items():
        logging.getLogger(name).setLevel(old)


async def test_json_lines_parse_and_carry_a_calls_fields(
    workspace: Path, restore_logging: None
) -> None:
    stream = io.StringIO()
    configure(LogOptions(level="info", format="json"), stream=stream)
    executor = build_executor(make_config(workspace))
    await executor.call("terminal", {"command": "echo hi"}, approved=None, call_id=7)
    logging.getLogger("edge.test").warning("with %s", f"Bearer {JWT}")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("edge.test").exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    call = next(line for line in lines if line["logger"] == "edge.tools.execute")
    assert call["level"] == "INFO"
    assert call["msg"].startswith("call 7 terminal ok in ")
    assert (call["id"], call["tool"], call["outcome"], call["chars"]) == ("7", "terminal", "ok", 3)
    assert isinstance(call["seconds"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", call["ts"])
    assert lines[-2]["msg"] == "with Bearer ***"
    assert "ValueError: boom" in lines[-1]["exc"]
    assert JWT not in stream.getvalue()


def test_text_lines_carry_the_date_and_offset_and_every_handler_scrubs(
    tmp_path: Path, restore_logging: None
) -> None:
    stream = io.StringIO()
    path = tmp_path / "logs" / "deep" / "edge.log"
    configure(LogOptions(level="DEBUG", file=path), stream=stream)
    log = logging.getLogger("edge.test")
    log.info("token %s", JWT)
    log.warning("Authorization: Bearer %s", JWT)
    # stderr gets warnings and errors only when there is a file; the file gets everything.
    assert [TEXT_LINE.match(line)[1] for line in stream.getvalue().splitlines()] == ["WARNING"]  # type: ignore[index]
    written = path.read_text(encoding="utf-8").splitlines()
    assert [TEXT_LINE.match(line)[1] for line in written] == ["INFO", "WARNING"]  # type: ignore[index]
    assert written[0].endswith("token ***")
    assert JWT not in stream.getvalue() + path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


def test_the_file_is_opened_again_after_a_rotation(tmp_path: Path, restore_logging: None) -> None:
    path = tmp_path / "edge.log"
    configure(LogOptions(file=path), stream=io.StringIO())
    log = logging.getLogger("edge.test")
    log.info("before")
    path.rename(tmp_path / "edge.log.1")  # what logrotate does, then it signals nobody
    log.info("after")
    assert "before" in (tmp_path / "edge.log.1").read_text(encoding="utf-8")
    assert "after" not in (tmp_path / "edge.log.1").read_text(encoding="utf-8")
    assert "after" in path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()  # removed outright: made again
    log.info("again")
    assert "again" in path.read_text(encoding="utf-8")


def test_a_removed_log_directory_is_made_again_and_a_failed_line_never_raises(
    tmp_path: Path, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "log"
    path = folder / "edge.log"
    configure(LogOptions(file=path), stream=io.StringIO())
    log = logging.getLogger("edge.test")
    log.info("first")
    shutil.rmtree(folder)  # rm -rf while edge runs
    log.info("second")
    assert "second" in path.read_text(encoding="utf-8")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shutil.rmtree(folder)
    folder.write_text("")  # in the way: the directory cannot be made again
    log.info("lost 1")
    log.warning("lost 2")  # no exception reaches the caller, for any line
    noted = capsys.readouterr().err
    assert noted.count("cannot write the log file") == 1, noted  # one note, not one a line
    assert f"{folder} is not a directory" in noted
    assert "Traceback" not in noted
    assert "Logging error" not in noted
    folder.unlink()
    log.info("third")  # tried again: it gets through, after a line that counts the gap
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith(f"WARNING 2 log lines could not be written to this file: {folder} "
                             "is not a directory")
    assert lines[1].endswith("INFO    third")
    assert "writing the log file" in capsys.readouterr().err


def test_the_file_is_rotated_at_its_cap_and_keeps_its_mode(
    tmp_path: Path, restore_logging: None
) -> None:
    path = tmp_path / "edge.log"
    configure(LogOptions(file=path, max_bytes=300, keep=2), stream=io.StringIO())
    log = logging.getLogger("edge.test")
    for n in range(20):
        log.info("line %02d %s", n, "x" * 40)  # about 90 bytes a line: 3 a file
    kept = [path.with_name(name) for name in ("edge.log.2", "edge.log.1", "edge.log")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
    numbers = [int(line.split()[3]) for p in kept for line in p.read_text().splitlines()]
    assert numbers == list(range(20 - len(numbers), 20))  # the newest lines, none lost between
    assert len(numbers) > 6
    for p in kept:
        assert 0 < p.stat().st_size <= 300
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    path.rename(tmp_path / "moved")  # an outside rotation still works alongside
    log.info("after")
    assert path.read_text().endswith("after\n")
    assert (MAX_BYTES, KEEP) == (10 * 1024 * 1024, 3)  # what the docs and --help say
    assert "rotates the file at 10 MiB (FILE.1 to FILE.3 kept)" in " ".join(RUN_EPILOG.split())


def test_an_old_file_is_made_private_and_an_unencodable_line_is_written(
    tmp_path: Path, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "edge.log"
    path.write_text("old line\n")
    path.chmod(0o644)  # as launchd made it when it was the agent's stdout
    configure(LogOptions(file=path, format="json"), stream=io.StringIO())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    logging.getLogger("edge.test").warning("name %s", "a\udcffb")  # a lone surrogate
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "old line"
    assert "name a\\udcffb" in lines[1]  # escaped as it is written, not dropped
    assert json.loads(lines[1])["msg"] == "name a\udcffb"
    assert "Logging error" not in capsys.readouterr().err


def test_edge_run_names_a_log_file_it_cannot_use_in_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    cases = {
        "~nosuchuser/x.log": "--log-file '~nosuchuser/x.log': cannot expand '~nosuchuser'",
        str(blocker / "x.log"): f"cannot open the log file {blocker}/x.log: {blocker} is not a dir",
    }
    # Both at once: each is an interpreter's start-up.
    procs = [
        subprocess.Popen(
            edge_cmd("run", "--no-control", "--workspace", str(tmp_path), "--log-file", log_file),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for log_file in cases
    ]  # fmt: skip
    try:
        for proc, said in zip(procs, cases.values(), strict=True):
            _, err = proc.communicate(timeout=SOON)
            assert proc.returncode == 2, err
            assert err.startswith("edge: error: "), err
            assert said in err, err
            assert err.count("\n") == 1, err  # one line, no traceback
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_the_service_log_is_where_edge_logs_find_it() -> None:
    assert service_log_file(Path.home(), os.environ) == default_log_file()


def test_log_settings_come_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[log]\nlevel = "debug"\nformat = "json"\nfile = "~/x/edge.log"\n')
    cfg = load_config(config_file=config, environ={})
    assert (cfg.log_level, cfg.log_format) == ("DEBUG", "json")
    assert cfg.log_file == Path("~/x/edge.log").expanduser()
    assert load_config(config_file=config, log_level="error", environ={}).log_level == "ERROR"
    config.write_text('[log]\nlevel = "loud"\n')
    with pytest.raises(ConfigError, match=r"`log.level` must be one of DEBUG, INFO"):
        load_config(config_file=config, environ={})
    config.write_text('[log]\nformat = "xml"\n')
    with pytest.raises(ConfigError, match=r"`log.format` must be text or json"):
        load_config(config_file=config, environ={})


@pytest.mark.parametrize(
    "argv",
    [
        ["run"], ["status"], ["ask", "hi"], ["chat"], ["tools", "list"],
        ["tools", "call", "grep"], ["capture"], ["mcp", "list"], ["update"],
        ["service", "status"], ["plugins", "list"],
    ],
    ids=lambda argv: " ".join(argv),
)  # fmt: skip
def test_quiet_and_verbose_are_accepted_by_the_commands(argv: list[str]) -> None:
    parser = _parser()
    assert parser.parse_args([*argv, "-q"]).quiet is True
    assert parser.parse_args([*argv, "--verbose"]).verbose is True
    with pytest.raises(SystemExit):
        parser.parse_args([*argv, "-q", "-v"])


@pytest.mark.parametrize(
    ("flag", "level", "printed"),
    [("", "INFO", True), ("-q", "WARNING", False), ("-v", "DEBUG", True)],
)
def test_quiet_and_verbose_hold_while_the_command_runs(
    flag: str, level: str, printed: bool, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    seen: list[str] = []

    def handler(args: argparse.Namespace) -> int:
        setup_logging("INFO")  # what a command asks for; -q and -v have the last word
        seen.append(logging.getLevelName(logging.getLogger().level))
        progress("starting 1 plugin(s)...")
        return 0

    args = _parser().parse_args(["tools", "list", *([flag] if flag else [])])
    args.handler = handler
    assert call_handler(args) == 0
    assert seen == [level]
    assert ("starting 1 plugin(s)..." in capsys.readouterr().err) is printed
    assert verbosity() == 0  # only while the command runs


def test_log_level_is_any_case_and_its_help_lists_the_levels_once() -> None:
    parser = _parser()
    assert parser.parse_args(["run", "--log-level", "warning"]).log_level == "WARNING"
    run = next(a for a in parser._subparsers._actions if a.dest == "command").choices["run"]  # type: ignore[union-attr]
    text = run.format_help()
    assert "--log-level LEVEL" in text
    assert text.count("WARNING") == 1 + text.count("-q (WARNING)")


async def test_edge_run_logs_to_its_file_in_local_time_and_outlives_its_log_directory(
    nursery: trio.Nursery, tmp_path: Path, env: dict[str, str]
) -> None:
    """A real ``edge run``: its lines carry this machine's offset (+05:30 here), the file is
    0600, stderr gets warnings only, and with its log directory removed (``rm -rf``) it
    keeps running and logging: the directory and the file are made again."""
    env["TZ"] = "Asia/Kolkata"
    path = tmp_path / "state" / "log" / "edge.log"
    edge = await start_edge(
        nursery, "--no-control", "--workspace", str(tmp_path / "ws"), "--log-file", str(path),
        env=env,
    )  # fmt: skip
    try:
        with trio.fail_after(SOON):
            await until(lambda: path.exists() and " tools offered" in path.read_text(), 0.02)
        first = path.read_text(encoding="utf-8").splitlines()
        assert all(TEXT_LINE.match(line) for line in first), first
        assert any("+05:30 INFO    edge " in line for line in first), first
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        shutil.rmtree(path.parent)
        edge.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(SOON):
            assert await edge.proc.wait() == 0
    finally:
        if edge.proc.returncode is None:
            edge.proc.kill()
            with trio.CancelScope(shield=True):
                await edge.proc.wait()
    assert "SIGTERM: stopping" in path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert f"logging to {path}" in edge.log
    assert "cannot write the log file" not in edge.log
    assert " INFO " not in edge.log  # stderr: warnings and errors only


async def test_calls_shows_a_finished_call_and_one_in_flight(
    nursery: trio.Nursery, workspace: Path
) -> None:
    cloud = await nursery.start(FakeCloud([TOKEN]).serve)
    config = make_config(workspace, cloud, control=("127.0.0.1", 0))
    daemon: Daemon = await nursery.start(Daemon(config, tunnel_options=fast_tunnel()).run)
    events: list[dict[str, Any]] = []

    async def listen() -> None:
        with daemon.events.subscribe() as sub:
            async for event in sub.receive:
                if event["type"].startswith("call_"):
                    events.append(event)

    nursery.start_soon(listen)
    assert daemon.control_url is not None
    async with httpx.AsyncClient(base_url=daemon.control_url, timeout=SOON) as client:
        with trio.fail_after(CONNECT_WITHIN):
            await cloud.wait_connected()
            await until(lambda: len(daemon.events) > 0)
            done = await cloud.call("terminal", {"command": f"echo {SECRET}"})
            assert done["output"] == f"{SECRET}\n"
            slow = await cloud.start_call("terminal", {"command": "sleep 60"})
            await until(lambda: len(daemon.calls) == 1)
        answer = (await client.get("/calls")).json()
        assert [(c["id"], c["tool"]) for c in answer["inFlight"]] == [(str(slow), "terminal")]
        assert "outcome" not in answer["inFlight"][0]
        finished = answer["recent"][0]
        assert (finished["tool"], finished["outcome"], finished["chars"]) == (
            "terminal", "ok", len(done["output"]),
        )  # fmt: skip
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+[+-]\d\d:\d\d", finished["started"])
        assert SECRET not in json.dumps(answer)
        assert (await client.get("/calls", params={"limit": 0})).status_code == 400
        await cloud.cancel(slow)
        with trio.fail_after(SOON):
            await cloud.result(slow)
            await until(lambda: len(events) == 4)
        answer = (await client.get("/calls", params={"limit": 1})).json()
        assert answer["inFlight"] == []
        assert [(c["id"], c["outcome"]) for c in answer["recent"]] == [(str(slow), "cancelled")]
    assert [(e["type"], e.get("outcome")) for e in events] == [
        ("call_started", None), ("call_finished", "ok"),
        ("call_started", None), ("call_finished", "cancelled"),
    ]  # fmt: skip
    await daemon.stop()
