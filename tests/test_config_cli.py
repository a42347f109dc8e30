"""``edge config show|check|init`` as a user runs them, and the provenance behind show.

Subprocess runs have HOME and the XDG directories in the test's own directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Final

import pytest

from edge.config import TOKEN_ROW, load_config, load_config_traced, starter_config
from edge.errors import ConfigError
from edge.settings import SETTINGS, check_settings

from .conftest import edge_cmd

TOKEN: Final = "config-show-token-77e1"
#: A commented-out key of the starter file: ``#key = value``.
COMMENTED_KEY: Final = re.compile(r"^#(?=[a-z_]+ = )", re.MULTILINE)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = str(tmp_path / "home")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env.pop("EDGE_TOKEN", None)
    return env


def edge(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(edge_cmd(*args), capture_output=True, text=True, env=env, timeout=30)


def every_key() -> set[str]:
    return {f"{section}.{key}" for section, keys in SETTINGS.items() for key in keys}


def test_init_writes_a_private_starter_that_checks_with_every_key_uncommented(
    tmp_path: Path, env: dict[str, str]
) -> None:
    done = edge("config", "init", env=env)
    path = tmp_path / "config" / "edge" / "config.toml"
    assert done.returncode == 0, done.stderr
    assert f"wrote {path}" in done.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    checked = edge("config", "check", env=env)
    assert (checked.returncode, checked.stdout) == (0, f"{path}: ok\n")

    text = path.read_text()
    assert tomllib.loads(text) == {section: {} for section in SETTINGS}  # every section, no key
    uncommented = tmp_path / "all.toml"
    uncommented.write_text(COMMENTED_KEY.sub("", text))
    data = tomllib.loads(uncommented.read_text())
    assert {f"{s}.{k}" for s, keys in data.items() for k in keys} == every_key()
    check_settings(data, str(uncommented))  # strict: every key valid as it stands
    checked = edge("config", "check", str(uncommented), env=env)
    assert (checked.returncode, checked.stdout) == (0, f"{uncommented}: ok\n"), checked.stderr

    again = edge("config", "init", env=env)
    assert again.returncode == 1
    assert f"{path} is there already" in again.stderr and "move it" in again.stderr
    assert path.read_text() == text


def test_the_starter_shows_defaults_under_a_line_saying_what_each_key_sets() -> None:
    text = starter_config()
    assert '# tool calls running at once (from 1 to 4096)\n#max_calls = 64\n' in text
    assert '#listen = "127.0.0.1:8660"\n' in text
    assert '#url = "wss://cloud.example/edge/tunnel"\n' in text  # an example: no default


def test_check_lists_every_problem_with_its_file(tmp_path: Path, env: dict[str, str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[policy]\nallow_tool = ["grep"]\n[workers]\nmax_calls = 0\n[workerz]\n')
    done = edge("config", "check", str(bad), env=env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"edge: error: {bad}: unknown key `policy.allow_tool`; did you mean `allow_tools`?",
        f"edge: error: {bad}: `workers.max_calls` must be from 1 to 4096, not 0",
        f"edge: error: {bad}: unknown section `[workerz]`; did you mean `[workers]`?",
    ]
    wide = tmp_path / "wide.toml"
    wide.write_text('[control]\nlisten = "0.0.0.0:8660"\n[tunnel]\nurl = "http://x"\n')
    done = edge("config", "check", str(wide), env=env)
    assert done.returncode == 2
    assert done.stderr.startswith(f"edge: error: {wide}: refusing to serve the control API on 0.0.0.0")
    missing = edge("config", "check", str(tmp_path / "nope.toml"), env=env)
    assert (missing.returncode, missing.stderr) == (2, f"edge: error: {tmp_path / 'nope.toml'}: no such file\n")
    nothing = edge("config", "check", env=env)  # no file in the user config dir: the defaults
    assert nothing.returncode == 0 and "edge runs on its defaults" in nothing.stdout


def test_show_says_where_each_value_came_from(tmp_path: Path, env: dict[str, str]) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[policy]\nworkspace = "{tmp_path / "ws"}"\nroots = ["{tmp_path}"]\n'
        '[workers]\nqueue = 9\n[mcp]\nservers = "/srv/mcp.json"\n'
    )
    env["EDGE_TOKEN"] = TOKEN
    flags = ["--config", str(config), "--root", "/opt", "--control", "127.0.0.1:9999", "--allow-tool", "grep"]
    done = edge("config", "show", "--json", *flags, env=env)
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout
    shown = json.loads(done.stdout)
    assert shown["file"] == str(config)
    settings = shown["settings"]
    assert set(settings) == every_key() | {TOKEN_ROW}
    in_file = {"source": "file", "path": str(config)}
    assert settings["policy.workspace"] == {"value": str(tmp_path / "ws"), "origin": in_file}
    assert settings["workers.queue"] == {"value": 9, "origin": in_file}
    assert settings["workers.max_calls"] == {"value": 64, "origin": {"source": "default"}}
    assert settings["control.listen"] == {
        "value": "127.0.0.1:9999", "origin": {"source": "flag", "flag": "--control"},
    }  # fmt: skip
    assert settings["policy.allow_tools"]["origin"] == {"source": "flag", "flag": "--allow-tool"}
    assert settings["policy.roots"] == {
        "value": [str(tmp_path), "/opt"],
        "origin": {"source": "flag", "flag": "--root", "extends": str(config)},
    }
    assert settings[TOKEN_ROW] == {
        "value": "(set)", "origin": {"source": "environment", "variable": "EDGE_TOKEN"},
    }  # fmt: skip

    text = edge("config", "show", *flags, env=env)
    assert text.returncode == 0 and TOKEN not in text.stdout
    rows = {line.split()[0]: line.split(None, 1)[1] for line in text.stdout.splitlines()[1:]}
    assert text.stdout.splitlines()[0] == f"config file: {config} (--config)"
    assert rows[TOKEN_ROW].split() == ["(set)", "environment", "EDGE_TOKEN"]
    assert rows["workers.queue"].split() == ["9", "file", str(config)]
    assert rows["gateway.url"].split() == ["(not", "set)", "default"]


def test_show_names_a_token_file_without_reading_it(tmp_path: Path, env: dict[str, str]) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    done = edge("config", "show", "--json", "--token-file", str(token), env=env)
    settings = json.loads(done.stdout)["settings"]
    assert TOKEN not in done.stdout
    assert settings[TOKEN_ROW] == {"value": f"(in {token})", "origin": {"source": "flag", "flag": "--token-file"}}
    assert settings["tunnel.token_file"]["value"] == str(token)
    broken = tmp_path / "broken.toml"
    broken.write_text("[workers]\nmax_calls = 'many'\n")
    failed = edge("config", "show", "--config", str(broken), env=env)
    assert failed.returncode == 2
    assert failed.stderr == f"edge: error: {broken}: `workers.max_calls` must be an integer, not a string\n"


def test_load_config_is_the_traced_config(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    token = tmp_path / "token"
    token.write_text(TOKEN)
    config.write_text(f'[tunnel]\ntoken_file = "{token}"\n[workers]\ntimeout = 5\n')
    kwargs = {"config_file": config, "workspace": tmp_path, "environ": {}, "max_calls": 3}
    traced = load_config_traced(**kwargs)  # type: ignore[arg-type]
    assert traced.config == load_config(**kwargs)  # type: ignore[arg-type]
    assert traced.config.token is not None and traced.config.token.reveal() == TOKEN
    assert traced.values()[TOKEN_ROW] == "(set)"
    assert traced.origins["workers.max_calls"].source == "flag"
    assert str(traced.origins["workers.timeout"]) == f"file {config}"


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings}


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise AssertionError(f"no subcommand {name}")


def test_show_takes_every_flag_edge_run_takes_and_names_them_as_origins(
    tmp_path: Path, env: dict[str, str]
) -> None:
    from edge.cli import _parser

    root = _parser()
    run = _subparser(root, "run")
    show = _subparser(_subparser(root, "config"), "show")
    assert _options(run) - _options(show) == set()

    config = tmp_path / "edge.toml"
    config.write_text('[log]\nfile = "/var/log/from-file.log"\nformat = "text"\n')
    flags = ["--config", str(config), "--control", "0.0.0.0:8660", "--force-bind"]
    flags += ["--max-calls", "7", "--log-file", str(tmp_path / "edge.log"), "--log-format", "json"]
    done = edge("config", "show", "--json", *flags, env=env)
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout)["settings"]

    def flag(name: str) -> dict[str, str]:
        return {"source": "flag", "flag": name}

    assert settings["control.force_bind"] == {"value": True, "origin": flag("--force-bind")}
    assert settings["workers.max_calls"] == {"value": 7, "origin": flag("--max-calls")}
    assert settings["log.file"] == {"value": str(tmp_path / "edge.log"), "origin": flag("--log-file")}
    assert settings["log.format"] == {"value": "json", "origin": flag("--log-format")}
    off = edge("config", "show", "--json", "--no-control", env=env)
    assert json.loads(off.stdout)["settings"]["control.listen"] == {
        "value": None, "origin": flag("--no-control"),
    }  # fmt: skip
    refused = edge("config", "show", "--control", "0.0.0.0:8660", env=env)
    assert refused.returncode == 2 and "--force-bind" in refused.stderr
    assert load_config_traced(environ={}, log_format="JSON").config.log_format == "json"
    with pytest.raises(ConfigError, match="--log-format"):
        load_config_traced(environ={}, log_format="xml")
