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
``markdown`` or ``json``: how results read in the tool output), ``toolsTtl``
(seconds its tool list is kept before it is listed again, default 300), ``health``
(``{"window", "degradedRate", "errorRate", "minFailures"}``: how its recent failures
set its status, ``edge.mcp.metrics.HealthRule``) and, for HTTP servers,
``idleTimeout`` (seconds without a call before the session is closed; the next call
reconnects). A stdio server gets a scrubbed environment: PATH,
HOME, USER, LOGNAME, SHELL and TERM, what ``env`` sets and the variables named
in ``envPassthrough``, nothing else of edge's own. A stdio entry may also say
``cwd``, and ``"type": "stdio"`` as other clients write it; for a url entry,
``type`` is another name for ``transport`` (``streamable-http`` meaning http).

The file is strict, as edge's config is: a field not listed here (at the top
level only ``mcpServers``), a field of the other kind of entry (``headers`` on
a command) or a value of the wrong type is a ``ConfigError`` naming the file,
the server and the field, with the closest valid field for a typo
(``"comand"``: did you mean ``"command"``?). ``edge mcp add`` refuses to add to
a file that does not load; ``edge mcp remove`` can still take a broken entry out.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

from ..errors import ConfigError
from ..fs import write_private
from .metrics import HealthRule

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
#: The fields of a stdio (``command``) entry.
STDIO_FIELDS: Final = frozenset({"command", "args", "env", "envPassthrough", "cwd"})
#: The fields of an HTTP or SSE (``url``) entry.
HTTP_FIELDS: Final = frozenset({"url", "transport", "headers", "idleTimeout"})
#: The fields any entry may have (``type``: other clients' name for ``transport``).
COMMON_FIELDS: Final = frozenset(
    {"timeout", "disabled", "resultFormat", "type", "health", "toolsTtl"}
)
#: What an entry's ``health`` may set (``edge.mcp.metrics.HealthRule``).
HEALTH_FIELDS: Final = {
    "window": "window", "degradedRate": "degraded_rate", "errorRate": "error_rate",
    "minFailures": "min_failures",
}  # fmt: skip
#: What the file may hold at the top level.
TOP_FIELDS: Final = frozenset({"mcpServers"})


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
    #: How its recent failures set its status (``None``: config.toml's ``[mcp]`` rule).
    health: HealthRule | None = None
    #: Seconds its tool list is kept before it is fetched again (``None``: 300).
    tools_ttl: float | None = None

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
        if self.health is not None:
            out["health"] = {key: getattr(self.health, name) for key, name in HEALTH_FIELDS.items()}
        if self.tools_ttl is not None:
            out["toolsTtl"] = self.tools_ttl
        return out


def check_server_name(name: object) -> str:
    if not isinstance(name, str) or not SERVER_NAME.match(name):
        raise ConfigError(
            f"MCP server name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _a(value: object) -> str:
    """``value``'s JSON type with its article ("a string"), for error messages."""
    if value is None:
        return "null"
    if value == "":
        return "an empty string"
    names: list[tuple[type, str]] = [
        (bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
        (list, "an array"), (dict, "an object"),
    ]  # fmt: skip
    return next((name for kind, name in names if isinstance(value, kind)), type(value).__name__)


def _wrong(where: str, field: str, expected: str, value: object) -> ConfigError:
    return ConfigError(f'{where}: "{field}" must be {expected}, not {_a(value)}')


def _unknown(where: str, field: str, choices: Iterable[str]) -> ConfigError:
    close = difflib.get_close_matches(field, sorted(choices), n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    return ConfigError(f'{where}: unknown field "{field}"{hint}')


def _strings(entry: dict[str, Any], field: str, where: str) -> tuple[str, ...]:
    value = entry.get(field, [])
    if not isinstance(value, list):
        raise _wrong(where, field, "an array of strings", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _wrong(where, f"{field}[{i}]", "a string", item)
    return tuple(value)


def _string_map(entry: dict[str, Any], field: str, where: str) -> dict[str, str]:
    value = entry.get(field, {})
    if not isinstance(value, dict):
        raise _wrong(where, field, "an object of strings", value)
    for key, item in value.items():
        if not isinstance(item, str):
            raise _wrong(where, f"{field}.{key}", "a string", item)
    return dict(value)


def _seconds(
    entry: dict[str, Any], field: str, where: str, default: float, *, allow_none: bool = False
) -> float | None:
    value = entry.get(field, default)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong(where, field, "a positive number of seconds", value)
    if not 0 < value < math.inf:
        raise ConfigError(f'{where}: "{field}" must be a positive number of seconds, not {value}')
    return float(value)


def _common(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """What every entry may set: ``timeout``, ``disabled``, ``resultFormat``."""
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        raise _wrong(where, "disabled", "true or false", disabled)
    fmt = entry.get("resultFormat", "plain")
    if fmt not in RESULT_FORMATS:
        raise ConfigError(f'{where}: "resultFormat" must be one of {", ".join(RESULT_FORMATS)}')
    return {
        "timeout": _seconds(entry, "timeout", where, DEFAULT_CALL_TIMEOUT),
        "disabled": disabled,
        "result_format": fmt,
        "health": _health(entry.get("health"), where),
        "tools_ttl": (
            None if "toolsTtl" not in entry else _seconds(entry, "toolsTtl", where, 300.0)
        ),
    }


def _health(value: object, where: str) -> HealthRule | None:
    """An entry's ``health``: ``{"window"?, "degradedRate"?, "errorRate"?, "minFailures"?}``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _wrong(where, "health", "an object", value)
    for key in value:
        if key not in HEALTH_FIELDS:
            raise _unknown(f"{where}: health", key, frozenset(HEALTH_FIELDS))
    try:
        return health_rule(**{HEALTH_FIELDS[k]: v for k, v in value.items()})
    except ValueError as exc:
        raise ConfigError(f"{where}: health: {exc}") from None


def health_rule(
    base: HealthRule | None = None, **values: object
) -> HealthRule:
    """``base`` (default: the defaults) with ``values`` (``window``, ``degraded_rate``,
    ``error_rate``, ``min_failures``), each checked; ``ValueError`` says which is wrong."""
    rule = base or HealthRule()
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name in ("window", "min_failures"):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
                raise ValueError(f"{name} must be a whole number from 1 to 10000, not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise ValueError(f"{name} must be a share above 0 and at most 1, not {value!r}")
        checked[name] = value
    rule = replace(rule, **checked)
    if rule.error_rate < rule.degraded_rate:
        raise ValueError(
            f"error_rate ({rule.error_rate:g}) must not be below degraded_rate "
            f"({rule.degraded_rate:g})"
        )
    return rule


def _check_fields(entry: dict[str, Any], where: str) -> None:
    """Every field is known and belongs to the entry's kind (command or url)."""
    known = STDIO_FIELDS | HTTP_FIELDS | COMMON_FIELDS
    for key in entry:
        if key not in known:
            raise _unknown(where, key, known)
    if "command" in entry and "url" in entry:
        raise ConfigError(f'{where}: give either "command" or "url", not both')
    if "command" in entry:
        misplaced, kind = HTTP_FIELDS, "a url (http or sse) server"
    elif "url" in entry:
        misplaced, kind = STDIO_FIELDS, "a command (stdio) server"
    else:
        return
    wrong = sorted(set(entry) & misplaced)
    if wrong:
        raise ConfigError(f'{where}: "{wrong[0]}" is only for {kind}')


def parse_server(name: str, entry: object, origin: str | None = None) -> McpServerConfig:
    """One ``mcpServers`` entry; ``ConfigError`` says what is wrong, naming ``origin`` (the
    file, when there is one), the server and the field, with the closest valid field for
    an unknown one."""
    check_server_name(name)
    where = f"{origin}: MCP server {name!r}" if origin else f"MCP server {name!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be an object, not {_a(entry)}")
    _check_fields(entry, where)
    common = _common(entry, where)
    if "command" in entry:
        return _parse_stdio(name, entry, where, common)
    url = entry.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://", url):
        raise ConfigError(
            f'{where}: needs a "command", or a "url" starting with http:// or https://'
        )
    transport = entry.get("transport", entry.get("type", "http"))
    if transport == "streamable-http":
        transport = "http"
    if transport not in ("http", "sse"):
        raise ConfigError(f'{where}: "transport" must be http or sse for a url')
    return McpServerConfig(
        name,
        transport,
        url=url,
        headers=_string_map(entry, "headers", where),
        idle_timeout=_seconds(entry, "idleTimeout", where, DEFAULT_IDLE_TIMEOUT, allow_none=True),
        **common,
    )


def _parse_stdio(
    name: str, entry: dict[str, Any], where: str, common: dict[str, Any]
) -> McpServerConfig:
    command = entry["command"]
    if not isinstance(command, str) or not command:
        raise _wrong(where, "command", "a non-empty string", command)
    if entry.get("type", "stdio") != "stdio":
        raise ConfigError(f'{where}: "type" must be "stdio" for a command')
    cwd = entry.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise _wrong(where, "cwd", "a string", cwd)
    return McpServerConfig(
        name,
        "stdio",
        command=command,
        args=_strings(entry, "args", where),
        env=_string_map(entry, "env", where),
        env_passthrough=_strings(entry, "envPassthrough", where),
        cwd=cwd,
        **common,
    )


def parse_servers(data: object, origin: str = "mcp.json") -> list[McpServerConfig]:
    """Every entry of a parsed ``mcp.json``; the file may hold nothing but ``mcpServers``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin} must hold a JSON object, not {_a(data)}")
    for key in data:
        if key not in TOP_FIELDS:
            raise _unknown(origin, key, TOP_FIELDS)
    servers = data.get("mcpServers", {})
    if not isinstance(servers, dict):
        raise ConfigError(f'{origin}: "mcpServers" must be an object, not {_a(servers)}')
    return [parse_server(name, entry, origin) for name, entry in servers.items()]


def load_servers(path: Path) -> list[McpServerConfig]:
    """The servers in ``path``; none when the file does not exist.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8 JSON, or does not hold
            valid entries (``parse_servers``); never anything else.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path} is not valid JSON: nested too deeply") from None
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
    """Add ``server`` to ``path`` (created if missing), keeping every other entry as it was.

    Raises:
        ConfigError: the file does not load (``parse_servers``), or already names
            the server and ``replace`` is false.
    """
    data = _read_for_update(path)
    servers = data.setdefault("mcpServers", {})
    # The rest of the file must load: adding to a file edge cannot read would only
    # hide the error until the next ``edge run``. (The entry replaced may be broken.)
    kept = {k: v for k, v in servers.items() if not (replace and k == server.name)}
    parse_servers({**data, "mcpServers": kept}, str(path))
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
