"""``edge mcp``: add, list, test, remove, as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Final

from .conftest import STARTUP

EDGE = [sys.executable, "-m", "edge"]
#: Seconds one ``edge mcp`` command may take on a busy machine (a bound on failure).
WITHIN: Final = 150.0


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGE, *args], capture_output=True, text=True, timeout=WITHIN)


def test_add_list_test_remove(tmp_path: Path) -> None:
    servers = str(tmp_path / "mcp.json")
    added = edge("mcp", "add", "time", "--file", servers, "--pass-env", "TZ", "--", sys.executable, "-m", "mcp_server_time")
    assert added.returncode == 0, added.stderr
    assert "time: mcp-time" in added.stdout and "get_current_time, convert_time" in added.stdout
    entry = json.loads(Path(servers).read_text())["mcpServers"]["time"]
    assert entry == {"command": sys.executable, "args": ["-m", "mcp_server_time"], "envPassthrough": ["TZ"]}

    ghost = edge("mcp", "add", "ghost", "--file", servers, "--", "/no/such/server", "--its-own-flag")
    assert ghost.returncode == 1 and "cannot connect: command not found: /no/such/server" in ghost.stdout
    web = edge("mcp", "add", "web", "--file", servers, "--url", "http://127.0.0.1:9/mcp", "--header", "Authorization=Bearer abc", "--no-test")
    assert web.returncode == 0

    listed = edge("mcp", "list", "--file", servers, "--control", "127.0.0.1:9")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:2] == ["time", "stdio"] and lines[1].split()[-1] == "--its-own-flag"
    assert "Bearer" not in listed.stdout

    tested = edge("mcp", "test", "time", "--file", servers, "--timeout", str(STARTUP))
    assert tested.returncode == 0 and "2 tools" in tested.stdout
    assert edge("mcp", "test", "ghost", "--file", servers).returncode == 1
    unknown = edge("mcp", "test", "nobody", "--file", servers)
    assert unknown.returncode == 2 and "no MCP server named 'nobody'" in unknown.stderr

    assert edge("mcp", "remove", "ghost", "--file", servers).returncode == 0
    assert "ghost" not in json.loads(Path(servers).read_text())["mcpServers"]
    again = edge("mcp", "add", "time", "--file", servers, "--no-test", "--", "x")
    assert again.returncode == 2 and "already exists" in again.stderr
    neither = edge("mcp", "add", "x", "--file", servers)
    assert neither.returncode == 2 and "give the server's command after --" in neither.stderr
    bad = edge("mcp", "add", "x", "--file", servers, "--env", "NOEQUALS", "--", "y")
    assert bad.returncode == 2 and "--env 'NOEQUALS' is not KEY=VALUE" in bad.stderr
