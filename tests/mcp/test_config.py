"""mcp.json: parsing, clear errors, saving without losing other entries, no secrets shown."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.mcp.config import load_servers, parse_server, remove_server, save_server


def test_stdio_and_http_entries() -> None:
    s = parse_server("time", {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}, "envPassthrough": ["LANG"]})
    assert (s.transport, s.command, s.args) == ("stdio", "uvx", ("mcp-server-time",))
    h = parse_server("notes", {"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer s3cret"}})
    assert h.transport == "http" and h.idle_timeout == 300
    assert parse_server("old", {"url": "http://x/sse", "type": "sse"}).transport == "sse"
    assert "s3cret" not in json.dumps(h.describe())


def test_the_environment_is_scrubbed_to_what_the_entry_names() -> None:
    s = parse_server("t", {"command": "x", "env": {"A": "1"}, "envPassthrough": ["KEEP", "ABSENT"]})
    assert s.child_env({"KEEP": "k", "EDGE_TOKEN": "secret", "OTHER": "o"}) == {"KEEP": "k", "A": "1"}


@pytest.mark.parametrize(
    ("name", "entry", "message"),
    [
        ("bad name!", {"command": "x"}, "MCP server name"),
        ("s", {}, 'needs a "command", or a "url"'),
        ("s", {"command": "x", "url": "http://y"}, 'either "command" or "url"'),
        ("s", {"command": ""}, '"command" must be a non-empty string, not an empty string'),
        ("s", {"command": "x", "args": "a b"}, '"args" must be an array of strings, not a string'),
        ("s", {"url": "ftp://x"}, 'needs a "command", or a "url"'),
        ("s", {"url": "http://x", "transport": "carrier-pigeon"}, "\"transport\" must be http or sse"),
        ("s", {"command": "x", "timeout": -1}, '"timeout" must be a positive number'),
        ("s", {"command": "x", "colour": "red"}, 'unknown field "colour"'),
        ("s", {"command": "x", "resultFormat": "xml"}, '"resultFormat" must be one of'),
    ],
)
def test_bad_entries_say_what_is_wrong(name: str, entry: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_server(name, entry)


def test_save_keeps_other_entries_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "mcp.json"
    path.parent.mkdir()
    other = {"command": "y", "args": ["--flag"], "type": "stdio", "resultFormat": "json"}
    path.write_text(json.dumps({"mcpServers": {"other": other}}))
    save_server(path, parse_server("time", {"command": "uvx", "args": ["mcp-server-time"]}))
    data = json.loads(path.read_text())
    assert data["mcpServers"]["other"] == other
    assert data["mcpServers"]["time"] == {"command": "uvx", "args": ["mcp-server-time"]}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(ConfigError, match="already exists"):
        save_server(path, parse_server("time", {"command": "z"}))
    save_server(path, parse_server("time", {"command": "z"}), replace=True)
    assert json.loads(path.read_text())["mcpServers"]["time"] == {"command": "z"}


def test_load(tmp_path: Path) -> None:
    assert load_servers(tmp_path / "missing.json") == []
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_servers(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"comand": "uvx"}, 'unknown field "comand"; did you mean "command"?'),
        ({"command": "uvx", "arg": ["x"]}, 'unknown field "arg"; did you mean "args"?'),
        ({"command": "uvx", "envPassThrough": ["TZ"]}, 'did you mean "envPassthrough"?'),
        ({"url": "http://h/mcp", "header": {}}, 'unknown field "header"; did you mean "headers"?'),
        ({"url": "http://h/mcp", "idle_timeout": 5}, 'did you mean "idleTimeout"?'),
        ({"command": "uvx", "colour": "red"}, 'unknown field "colour"'),
    ],
)
def test_unknown_fields_name_the_file_the_server_and_the_closest_field(
    tmp_path: Path, entry: dict, message: str
) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"time": entry}}))
    with pytest.raises(ConfigError) as info:
        load_servers(path)
    assert str(info.value).startswith(f"{path}: MCP server 'time': "), info.value
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mcpServer": {}}, 'unknown field "mcpServer"; did you mean "mcpServers"?'),
        ({"servers": {}}, 'unknown field "servers"; did you mean "mcpServers"?'),
        ({"mcpServers": {}, "globalShortcut": "x"}, 'unknown field "globalShortcut"'),
        ({"mcpServers": []}, '"mcpServers" must be an object, not an array'),
        ([], "must hold a JSON object, not an array"),
    ],
)
def test_the_top_level_is_strict_too(tmp_path: Path, data: object, message: str) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_servers(path)
    assert str(info.value).startswith(str(path)), info.value
    assert message in str(info.value)


#: How a bad timeout reads.
SECONDS = '"timeout" must be a positive number of seconds'


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"command": "x", "args": ["a", 3]}, '"args[1]" must be a string, not a number'),
        ({"command": "x", "env": {"A": 1}}, '"env.A" must be a string, not a number'),
        ({"command": "x", "env": ["A=1"]}, '"env" must be an object of strings, not an array'),
        ({"command": "x", "envPassthrough": "TZ"}, '"envPassthrough" must be an array of strings'),
        ({"command": "x", "cwd": 1}, '"cwd" must be a string, not a number'),
        ({"command": ["uvx", "x"]}, '"command" must be a non-empty string, not an array'),
        ({"command": "x", "disabled": "no"}, '"disabled" must be true or false, not a string'),
        ({"command": "x", "timeout": "60"}, f"{SECONDS}, not a string"),
        ({"command": "x", "timeout": True}, f"{SECONDS}, not a boolean"),
        ({"command": "x", "timeout": 0}, f"{SECONDS}, not 0"),
        ({"url": "http://h", "headers": {"A": None}}, '"headers.A" must be a string, not null'),
        ({"url": "http://h", "idleTimeout": -1}, '"idleTimeout" must be a positive number'),
        ({"command": "x", "headers": {}}, '"headers" is only for a url (http or sse) server'),
        ({"command": "x", "transport": "sse"}, '"transport" is only for a url (http or sse)'),
        ({"url": "http://h", "args": []}, '"args" is only for a command (stdio) server'),
        ({"command": "x", "type": "sse"}, '"type" must be "stdio" for a command'),
    ],
)
def test_wrong_types_name_the_field_and_both_types(
    tmp_path: Path, entry: dict, message: str
) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"s": entry}}))
    with pytest.raises(ConfigError) as info:
        load_servers(path)
    assert str(info.value).startswith(f"{path}: MCP server 's': "), info.value
    assert message in str(info.value)


def test_pasted_entries_load_and_a_typo_in_one_names_it(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    pasted = {
        "desktop": {"command": "npx", "args": ["-y", "server"], "env": {"K": "v"}},
        "code": {"type": "stdio", "command": "uvx", "args": ["mcp-server-time"]},
        "remote": {"type": "streamable-http", "url": "https://h/mcp", "headers": {"A": "b"}},
        "events": {"type": "sse", "url": "http://h/sse", "idleTimeout": None},
    }
    path.write_text(json.dumps({"mcpServers": pasted}))
    servers = {s.name: s for s in load_servers(path)}
    assert [servers[n].transport for n in ("desktop", "code", "remote", "events")] == [
        "stdio", "stdio", "http", "sse"
    ]  # fmt: skip
    assert servers["events"].idle_timeout is None
    pasted["remote"]["headrs"] = pasted["remote"].pop("headers")
    path.write_text(json.dumps({"mcpServers": pasted}))
    with pytest.raises(ConfigError, match="MCP server 'remote': unknown field \"headrs\""):
        load_servers(path)


def test_adding_to_a_file_that_does_not_load_is_refused_a_bad_entry_can_go(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mcp.json"
    original = json.dumps({"mcpServers": {"typo": {"comand": "uvx"}, "ok": {"command": "y"}}})
    path.write_text(original)
    with pytest.raises(ConfigError, match='MCP server \'typo\': unknown field "comand"'):
        save_server(path, parse_server("time", {"command": "uvx"}))
    assert path.read_text() == original
    save_server(path, parse_server("typo", {"command": "uvx"}), replace=True)
    assert json.loads(path.read_text())["mcpServers"]["typo"] == {"command": "uvx"}
    path.write_text(original)
    remove_server(path, "typo")
    assert [s.name for s in load_servers(path)] == ["ok"]


def test_the_config_directory_edge_creates_is_private_and_others_are_left(
    tmp_path: Path,
) -> None:
    config_home = tmp_path / "home" / ".config"
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    added = subprocess.run(
        [sys.executable, "-m", "edge", "mcp", "add", "time", "--no-test", "--", "uvx", "x"],
        capture_output=True, text=True, env=env, timeout=30, umask=0,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    path = config_home / "edge" / "mcp.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for directory in (config_home / "edge", config_home):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
    assert stat.S_IMODE(os.stat(tmp_path / "home").st_mode) == 0o700  # made by edge too
    # A directory edge did not make keeps the mode its owner gave it; the file is private.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    save_server(shared / "mcp.json", parse_server("time", {"command": "uvx"}))
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(shared / "mcp.json").st_mode) == 0o600

