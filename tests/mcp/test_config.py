"""mcp.json: parsing, clear errors, saving without losing other entries, no secrets shown."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.mcp.config import load_servers, parse_server, save_server


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
        ("s", {}, "needs a command, or a url"),
        ("s", {"command": "x", "url": "http://y"}, "either command or url"),
        ("s", {"command": ""}, "command must be a non-empty string"),
        ("s", {"command": "x", "args": "a b"}, "args must be a list of strings"),
        ("s", {"url": "ftp://x"}, "needs a command, or a url"),
        ("s", {"url": "http://x", "transport": "carrier-pigeon"}, "transport must be http or sse"),
        ("s", {"command": "x", "timeout": -1}, "timeout must be a positive number"),
        ("s", {"command": "x", "colour": "red"}, "unknown field(s) colour"),
        ("s", {"command": "x", "resultFormat": "xml"}, "resultFormat must be one of"),
    ],
)
def test_bad_entries_say_what_is_wrong(name: str, entry: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_server(name, entry)


def test_save_keeps_other_entries_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "mcp.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"mcpServers": {"other": {"command": "y", "custom": 1}}, "extra": True}))
    save_server(path, parse_server("time", {"command": "uvx", "args": ["mcp-server-time"]}))
    data = json.loads(path.read_text())
    assert data["extra"] is True and data["mcpServers"]["other"] == {"command": "y", "custom": 1}
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
