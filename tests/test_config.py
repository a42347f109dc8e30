"""config.toml is strict: typos, wrong types and values out of range are errors that say
where and what, and a file that does not load never runs."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import textwrap
import tomllib
from pathlib import Path

import pytest
import trio

import edge.config
from edge.config import load_config
from edge.errors import ConfigError
from edge.settings import MAX_CALL_TIMEOUT, SETTINGS, check_settings, describe_settings
from edge.tools.builtin.shell import MAX_TIMEOUT

from .conftest import edge_cmd
from .test_cli import free_port, run_cli


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with no config of their own: the XDG directories under ``tmp_path``."""
    for name in ("CONFIG", "DATA", "STATE"):
        monkeypatch.setenv(f"XDG_{name}_HOME", str(tmp_path / name.lower()))
    return tmp_path


def load_text(home: Path, text: str) -> edge.config.Config:
    path = home / "edge.toml"
    path.write_text(text)
    return load_config(config_file=path, environ={})


def error_for(home: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(home, text)
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[policy]\nallow_tool = ["grep"]\n',
            "unknown key `policy.allow_tool`; did you mean `allow_tools`?",
        ),
        ('[polcy]\nworkspace = "/w"\n', "unknown section `[polcy]`; did you mean `[policy]`?"),
        ("[worker]\nmax_calls = 3\n", "unknown section `[worker]`; did you mean `[workers]`?"),
        (
            '[workers]\nworkspace = "/w"\n',
            "unknown key `workers.workspace`; did you mean `policy.workspace`?",
        ),
        (
            'workspace = "/w"\n',
            "unknown key `workspace` outside any section; it belongs in `[policy]`",
        ),
        (
            "[policy]\nzzz = 1\n",
            "unknown key `policy.zzz`; valid: `workspace`, `roots`, `allow_tools`",
        ),
        ("[policy.extra]\nx = 1\n", "unknown key `policy.extra`"),
    ],
)
def test_unknown_names_say_the_closest_valid_one(home: Path, text: str, message: str) -> None:
    error = error_for(home, text)
    assert error.startswith(f"{home / 'edge.toml'}: "), error
    assert message in error


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[policy]\nallow_tools = "grep"\n',
            "`policy.allow_tools` must be a list of strings, not a string",
        ),
        (
            '[policy]\nallow_tools = ["grep", 3]\n',
            "`policy.allow_tools[1]` must be a string, not an integer",
        ),
        (
            '[policy]\nroots = ["/a", ""]\n',
            "`policy.roots[1]` must be a path (a non-empty string), not an empty string",
        ),
        (
            "[policy]\nworkspace = 7\n",
            "`policy.workspace` must be a path (a non-empty string), not an integer",
        ),
        (
            '[control]\nforce_bind = "yes"\n',
            "`control.force_bind` must be a boolean (true or false), not a string",
        ),
        ("[workers]\nmax_calls = true\n", "`workers.max_calls` must be an integer, not a boolean"),
        ("[workers]\nmax_calls = 8.5\n", "`workers.max_calls` must be an integer, not a float"),
        ('[workers]\ntimeout = "60"\n', "`workers.timeout` must be a number, not a string"),
        (
            "[workers]\ntimeout = 1979-05-27\n",
            "`workers.timeout` must be a number, not a date or time",
        ),
        ('policy = "strict"\n', "`[policy]` must be a table, not a string"),
        ('[tunnel]\nurl = ["wss://a"]\n', "`tunnel.url` must be a string, not an array"),
    ],
)
def test_wrong_types_name_the_key_and_both_types(home: Path, text: str, message: str) -> None:
    error = error_for(home, text)
    assert error.startswith(f"{home / 'edge.toml'}: "), error
    assert message in error


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[workers]\nmax_calls = 0\n", "`workers.max_calls` must be from 1 to 4096, not 0"),
        ("[workers]\nmax_calls = 5000\n", "`workers.max_calls` must be from 1 to 4096, not 5000"),
        ("[workers]\nqueue = -1\n", "`workers.queue` must be from 0 to 65536, not -1"),
        (
            "[workers]\ntimeout = 0\n",
            "`workers.timeout` must be more than 0 and at most 3600, not 0",
        ),
        ("[workers]\ntimeout = 3600.5\n", "must be more than 0 and at most 3600, not 3600.5"),
        ("[workers]\ntimeout = nan\n", "must be more than 0 and at most 3600, not nan"),
        ("[workers]\ntimeout = inf\n", "must be more than 0 and at most 3600, not inf"),
        (
            '[control]\nlisten = "127.0.0.1:70000"\n',
            "`control.listen`: port 70000 is out of range (0 to 65535)",
        ),
        ('[control]\nlisten = "localhost"\n', "`control.listen`: 'localhost' is not HOST:PORT"),
    ],
)
def test_values_out_of_range_are_refused(home: Path, text: str, message: str) -> None:
    error = error_for(home, text)
    assert error.startswith(f"{home / 'edge.toml'}: "), error
    assert message in error


def test_the_bounds_themselves_load_and_zero_is_not_a_default(home: Path) -> None:
    low = load_text(home, "[workers]\nmax_calls = 1\nqueue = 0\ntimeout = 0.001\n")
    assert (low.max_calls, low.queue_size, low.call_timeout) == (1, 0, 0.001)
    high = load_text(home, "[workers]\nmax_calls = 4096\nqueue = 65536\ntimeout = 3600\n")
    assert (high.max_calls, high.queue_size, high.call_timeout) == (4096, 65536, 3600.0)
    assert load_text(home, "").max_calls == 64
    assert load_text(home, "[workers]\nmax_calls = 8\n").max_calls == 8


def test_a_flag_is_held_to_the_range_of_the_key_it_overrides(home: Path) -> None:
    with pytest.raises(ConfigError, match="--max-calls must be from 1 to 4096, not 0"):
        load_config(max_calls=0, environ={})
    assert load_config(max_calls=2, environ={}).max_calls == 2


def test_the_default_file_is_as_strict(home: Path) -> None:
    default = home / "config" / "edge" / "config.toml"
    default.parent.mkdir(parents=True)
    default.write_text('[policy]\nallow_tool = ["grep"]\n')
    with pytest.raises(ConfigError, match=re.escape(f"{default}: unknown key `policy.allow_tool`")):
        load_config(environ={})


def test_the_documented_example_is_every_key_and_loads() -> None:
    doc = edge.config.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\nThe file is strict", 1)[0]
    data = tomllib.loads(textwrap.dedent(block))
    assert {s: set(keys) for s, keys in data.items()} == {
        s: set(keys) for s, keys in SETTINGS.items()
    }
    check_settings(data, "example")
    described = describe_settings().splitlines()
    assert len(described) == sum(len(keys) for keys in SETTINGS.values())
    assert (
        "[workers] max_calls  an integer, from 1 to 4096: tool calls running at once" in described
    )


def test_the_readme_example_loads(home: Path) -> None:
    readme = (Path(edge.config.__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration\n", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    check_settings(tomllib.loads(block), "README.md")


def test_the_timeout_bound_is_what_a_call_may_ask_for() -> None:
    assert MAX_CALL_TIMEOUT == MAX_TIMEOUT


def user_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose XDG directories are under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if k != "EDGE_TOKEN"}
    for name in ("CONFIG", "DATA", "STATE"):
        env[f"XDG_{name}_HOME"] = str(tmp_path / name.lower())
    return env


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_edge_run_with_a_bad_config_exits_2_and_serves_nothing(
    tmp_path: Path, workspace: Path
) -> None:
    env = user_env(tmp_path)
    port = free_port()
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'[policy]\nworkspace = "{workspace}"\nallow_tool = ["file_read"]\n'
        f'[control]\nlisten = "127.0.0.1:{port}"\n'
    )
    proc = await trio.lowlevel.open_process(
        edge_cmd("run", "--config", str(bad)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        with trio.fail_after(30):
            assert proc.stderr is not None
            err = b""
            async for chunk in proc.stderr:
                err += chunk
                assert not listening(port), "the control API came up"
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = err.decode()
    assert code == 2, text
    assert (
        f"edge: error: {bad}: unknown key `policy.allow_tool`; did you mean `allow_tools`?" in text
    )
    assert "control API on" not in text
    assert "Traceback" not in text
    assert not listening(port)


def test_other_commands_refuse_a_bad_config_too(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[workers]\nqueue = -5\n")
    env = user_env(tmp_path)
    for command in (["tools", "list"], ["mcp", "list"]):
        result = run_cli(*command, "--config", str(bad), env=env)
        assert result.returncode == 2, (command, result.stderr)
        assert f"{bad}: `workers.queue` must be from 0 to 65536, not -5" in result.stderr


async def test_the_daemon_warns_about_allowed_names_that_match_no_tool(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edge.daemon import Daemon

    from .conftest import make_config

    ws = tmp_path / "ws"
    ws.mkdir()
    cfg = make_config(ws, allow_tools=frozenset({"grep", "file_*", "file_red"}), mcp_file=None)
    with caplog.at_level(logging.WARNING, logger="edge.daemon"):
        daemon = await nursery.start(Daemon(cfg).run)
        await daemon.stop()
    warned = [r.getMessage() for r in caplog.records if "allow_tools" in r.getMessage()]
    assert len(warned) == 1
    assert "'file_red'" in warned[0]
