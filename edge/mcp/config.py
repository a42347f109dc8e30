"""Which MCP servers to run: ``mcp.json`` in edge's config directory.

The file uses the ``mcpServers`` layout other MCP clients use, so an existing
entry can be pasted in as is::

    {"mcpServers": {
        "time":  {"command": "uvx", "args": ["mcp-server-time"],
                  "env": {"TZ": "Europe/Paris"}, "envPassthrough": ["LANG"]},
        "notes": {"url": "http://127.0.0.1:3001/mcp", "transport": "http",
                  "headers": {"Authorization": "Bearer ..."}, "idleTimeout": 300}
    }}

Per server, besides how to reach it: ``timeout`` (seconds per call, default
60), ``disabled`` (keep the entry, run nothing), ``resultFormat`` (``plain``,
``markdown`` or ``json``: how results read in the tool output) and, for HTTP
servers, ``idleTimeout`` (seconds without a call before the session is closed;
the next call reconnects). A stdio server gets a scrubbed environment: PATH,
HOME, USER, LOGNAME, SHELL and TERM, what ``env`` sets and the variables named
in ``envPassthrough``, nothing else of edge's own.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from ..errors import ConfigError
from ..fs import write_private

Transport = Literal["stdio", "http", "sse"]
#: The transports an entry may name.
TRANSPORTS: Final = ("stdio", "http", "sse")
#: How a server's text results may be rendered (``resultFormat``).
RESULT_FORMATS: Final = ("plain", "markdown", "json")
#: Server names: what the tool names are built from and what the CLI takes.
SERVER_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Seconds a call to a server may take unless its entry says ``timeout``.
DEFAULT_CALL_TIMEOUT: Final = 60.0
#: Seconds an HTTP session may go without calls unless its entry says ``idleTimeout``.
DEFAULT_IDLE_TIMEOUT: Final = 300.0


@dataclass(frozen=True, slots=True)
class McpServerConfig:
    name: str
    transport: Transport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    env_passthrough: tuple[str, ...] = ()
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_CALL_TIMEOUT
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    disabled: bool = False
    result_format: str = "plain"

    def child_env(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """What the stdio server gets on top of the SDK's minimal set (PATH, HOME, ...)."""
        source = os.environ if environ is None else environ
        env = {k: source[k] for k in self.env_passthrough if k in source}
        env.update(self.env)
        return env

    def describe(self) -> dict[str, Any]:
        """For the API and the CLI: header and env values are never shown."""
        out: dict[str, Any] = {"name": self.name, "transport": self.transport}
        if self.transport == "stdio":
            out["command"] = [self.command, *self.args]
            out["env"] = sorted(self.env)
            out["envPassthrough"] = list(self.env_passthrough)
        else:
            out["url"] = self.url
            out["headers"] = sorted(self.headers)
            out["idleTimeout"] = self.idle_timeout
        out["timeout"] = self.timeout
        out["disabled"] = self.disabled
        return out

    def to_json(self) -> dict[str, Any]:
        """The entry as it is written to ``mcp.json``."""
        out: dict[str, Any] = {}
        if self.transport == "stdio":
            out["command"] = self.command
            if self.args:
                out["args"] = list(self.args)
            if self.env:
                out["env"] = dict(self.env)
            if self.env_passthrough:
                out["envPassthrough"] = list(self.env_passthrough)
            if self.cwd:
                out["cwd"] = self.cwd
        else:
            out["url"] = self.url
            out["transport"] = self.transport
            if self.headers:
                out["headers"] = dict(self.headers)
            if self.idle_timeout != DEFAULT_IDLE_TIMEOUT:
                out["idleTimeout"] = self.idle_timeout
        if self.timeout != DEFAULT_CALL_TIMEOUT:
            out["timeout"] = self.timeout
        if self.disabled:
            out["disabled"] = True
        if self.result_format != "plain":
            out["resultFormat"] = self.result_format
        return out


def check_server_name(name: object) -> str:
    if not isinstance(name, str) or not SERVER_NAME.match(name):
        raise ConfigError(
            f"MCP server name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _strings(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what} must be a list of strings")
    return tuple(value)


def _string_map(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{what} must be an object of strings")
    return dict(value)


def _seconds(value: object, what: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{what} must be a positive number of seconds")
    return float(value)


def parse_server(name: str, entry: object) -> McpServerConfig:
    """One ``mcpServers`` entry; ``ConfigError`` says what is wrong, naming the server."""
    check_server_name(name)
    where = f"MCP server {name!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be an object")
    known = {
        "command", "args", "env", "envPassthrough", "cwd", "url", "transport", "type",
        "headers", "timeout", "idleTimeout", "disabled", "resultFormat",
    }  # fmt: skip
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    common: dict[str, Any] = {
        "timeout": _seconds(entry.get("timeout", DEFAULT_CALL_TIMEOUT), f"{where}: timeout"),
        "disabled": bool(entry.get("disabled", False)),
    }
    fmt = entry.get("resultFormat", "plain")
    if fmt not in RESULT_FORMATS:
        raise ConfigError(f"{where}: resultFormat must be one of {', '.join(RESULT_FORMATS)}")
    common["result_format"] = fmt
    if "command" in entry:
        if "url" in entry:
            raise ConfigError(f"{where}: give either command or url, not both")
        command = entry["command"]
        if not isinstance(command, str) or not command:
            raise ConfigError(f"{where}: command must be a non-empty string")
        cwd = entry.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise ConfigError(f"{where}: cwd must be a string")
        return McpServerConfig(
            name,
            "stdio",
            command=command,
            args=_strings(entry.get("args", []), f"{where}: args"),
            env=_string_map(entry.get("env", {}), f"{where}: env"),
            env_passthrough=_strings(entry.get("envPassthrough", []), f"{where}: envPassthrough"),
            cwd=cwd,
            **common,
        )
    url = entry.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://", url):
        raise ConfigError(f"{where}: needs a command, or a url starting with http:// or https://")
    transport = entry.get("transport", entry.get("type", "http"))
    if transport == "streamable-http":
        transport = "http"
    if transport not in ("http", "sse"):
        raise ConfigError(f"{where}: transport must be http or sse for a url")
    return McpServerConfig(
        name,
        transport,
        url=url,
        headers=_string_map(entry.get("headers", {}), f"{where}: headers"),
        idle_timeout=_seconds(
            entry.get("idleTimeout", DEFAULT_IDLE_TIMEOUT), f"{where}: idleTimeout", allow_none=True
        ),
        **common,
    )


def parse_servers(data: object, origin: str = "mcp.json") -> list[McpServerConfig]:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin} must hold a JSON object")
    servers = data.get("mcpServers", {})
    if not isinstance(servers, dict):
        raise ConfigError(f"{origin}: mcpServers must be an object")
    return [parse_server(name, entry) for name, entry in servers.items()]


def load_servers(path: Path) -> list[McpServerConfig]:
    """The servers in ``path``; none when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    return parse_servers(data, str(path))


def _read_for_update(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot update {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers", {}), dict):
        raise ConfigError(f"cannot update {path}: it does not hold an mcpServers object")
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    # The file may hold header tokens: readable by its owner only.
    write_private(path, json.dumps(data, indent=2) + "\n")


def save_server(path: Path, server: McpServerConfig, *, replace: bool = False) -> None:
    """Add ``server`` to ``path`` (created if missing), keeping every other entry as it was."""
    data = _read_for_update(path)
    servers = data.setdefault("mcpServers", {})
    if server.name in servers and not replace:
        raise ConfigError(f"MCP server {server.name!r} already exists in {path} (--replace)")
    servers[server.name] = server.to_json()
    _write(path, data)


def remove_server(path: Path, name: str) -> None:
    """Remove ``name`` from ``path``, keeping every other entry as it was."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    data = _read_for_update(path)
    if name not in data.get("mcpServers", {}):
        raise ConfigError(f"no MCP server named {name!r} in {path}")
    del data["mcpServers"][name]
    _write(path, data)
