"""Every key ``config.toml`` may hold: its section, type, range and meaning, and the check.

``SETTINGS`` is the one description of the file: ``check_settings`` holds a
parsed file to it (an unknown section or key, a wrong type or a value out of
range is a ``ConfigError`` naming the file, the key, what was expected and,
for a typo, the closest valid name; ``settings_problems`` lists every such
problem, for ``edge config check``), ``check_flag`` holds a flag to the key it
overrides, and ``describe_settings`` prints it. A key without a default has an
``example``, which ``edge config init``'s starter file shows commented out.
``edge.config`` merges what passes with the flags and the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, NamedTuple, cast

from .errors import ConfigError

#: Most tool calls running at once (``workers.max_calls``, ``--max-calls``).
MAX_CALLS: Final = 4096
#: Most calls waiting for a slot (``workers.queue``).
MAX_QUEUE: Final = 65536
#: Longest default call timeout, seconds: what a call may ask for (``shell.MAX_TIMEOUT``).
MAX_CALL_TIMEOUT: Final = 3600

#: What a key holds: a TOML type, with "path" a non-empty string (``~`` expanded),
#: "address" a ``HOST:PORT`` string and "strings"/"paths" arrays of those.
Kind = Literal["string", "path", "address", "boolean", "integer", "number", "strings", "paths"]

#: How each ``Kind`` reads in an error message ("must be ...").
EXPECTED: Final[Mapping[str, str]] = {
    "string": "a string",
    "path": "a path (a non-empty string)",
    "address": 'a "HOST:PORT" string',
    "boolean": "a boolean (true or false)",
    "integer": "an integer",
    "number": "a number",
    "strings": "a list of strings",
    "paths": "a list of paths (non-empty strings)",
}


class Setting(NamedTuple):
    """One key of ``config.toml``: its type, its range (numbers), what it sets.

    A named tuple, not a dataclass: ``edge status --control`` reads addresses with this
    module's ``parse_hostport`` and would otherwise import ``dataclasses`` (and
    ``inspect`` under it) for nothing else.
    """

    kind: Kind
    help: str
    #: The least value allowed (numbers); excluded when ``above`` is true.
    low: float | None = None
    #: The greatest value allowed (numbers), included.
    high: float | None = None
    above: bool = False
    #: A value to show for a key that has no default (the starter ``edge config init``
    #: writes, commented out); ``None`` for a key whose default is shown instead.
    example: Any = None
    #: The values a string key may take (``None``: any string).
    choices: tuple[str, ...] | None = None

    def range_text(self) -> str:
        """The allowed range in words ("from 1 to 4096"), or "" when there is none."""
        if self.low is None or self.high is None:
            return ""
        if self.above:
            return f"more than {self.low:g} and at most {self.high:g}"
        return f"from {self.low:g} to {self.high:g}"

    def in_range(self, value: float) -> bool:
        """Whether ``value`` is in range (NaN never is, nor an infinity past a bound)."""
        low_ok = self.low is None or (value > self.low if self.above else value >= self.low)
        return low_ok and (self.high is None or value <= self.high)

    def check(self, value: object, where: str) -> Any:
        """``value`` if it has this key's type and range, else a ``ConfigError`` at ``where``."""
        if self.kind in ("strings", "paths"):
            if not isinstance(value, list):
                raise ConfigError(f"{where} must be {EXPECTED[self.kind]}, not {_a(value)}")
            item = Setting("path" if self.kind == "paths" else "string", self.help)
            for i, element in enumerate(value):
                item.check(element, f"{where.removesuffix('`')}[{i}]`")
            return value
        if not _has_kind(value, self.kind):
            raise ConfigError(f"{where} must be {EXPECTED[self.kind]}, not {_a(value)}")
        if self.choices is not None and value not in self.choices:
            allowed = " or ".join(f'"{c}"' for c in self.choices)
            raise ConfigError(f"{where} must be {allowed}, not {value!r}")
        if self.kind == "address":
            try:
                parse_hostport(str(value))
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        # _has_kind made sure an integer or a number is an int or a float.
        if self.kind in ("integer", "number") and not self.in_range(cast(float, value)):
            raise ConfigError(f"{where} must be {self.range_text()}, not {value!r}")
        return value


def _has_kind(value: object, kind: Kind) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # TOML's true is no integer
    if kind == "integer":
        return isinstance(value, int)
    if kind == "number":
        return isinstance(value, int | float)
    return isinstance(value, str) and (kind == "string" or bool(value))


def _a(value: object) -> str:
    """``value``'s TOML type with its article ("an integer"), for error messages."""
    from datetime import date, datetime, time

    names: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "a boolean"), (int, "an integer"), (float, "a float"), (list, "an array"),
        (dict, "a table"), ((datetime, date, time), "a date or time"),
    ]  # fmt: skip
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    return next((name for kind, name in names if isinstance(value, kind)), type(value).__name__)


#: Every section and key ``config.toml`` may hold: what the checks, the error
#: messages and the docstring's example share.
SETTINGS: Final[Mapping[str, Mapping[str, Setting]]] = {
    "tunnel": {
        "url": Setting(
            "string", "the cloud's tunnel URL (ws:// or wss://)",
            example="wss://cloud.example/edge/tunnel",
        ),
        "token_file": Setting(
            "path", "file holding the cloud token (else $EDGE_TOKEN)",
            example="~/.config/edge/token",
        ),
    },
    "control": {
        "listen": Setting("address", "where the control API listens (port 0 to 65535)"),
        "allowed_origins": Setting("strings", "web pages allowed to call the control API"),
        "force_bind": Setting("boolean", "allow a non-loopback control address (unsafe)"),
    },
    "policy": {
        "workspace": Setting("path", "where tools work; relative paths start here"),
        "roots": Setting("paths", "more directories file tools may touch"),
        "allow_tools": Setting(
            "strings", "the tools offered (names or globs); default all",
            example=["file_read", "grep"],
        ),
    },
    "capture": {
        "recordings": Setting("path", "where recordings go (default: the workspace's recordings)"),
        "on_disconnect": Setting(
            "string",
            'when the tunnel drops: "keep" recording (uplinks retry, nothing is lost) or '
            '"stop" every capture',
            choices=("keep", "stop"),
        ),
    },
    "mcp": {
        "servers": Setting("path", "the MCP servers file (mcp.json)"),
        "health_window": Setting(
            "integer", "a server's last requests its status looks at (default 20)", 1, 10_000
        ),
        "degraded_rate": Setting(
            "number", "failed share of those for degraded (default 0.25)", 0, 1, above=True
        ),
        "error_rate": Setting(
            "number", "failed share of those for error (default 0.75)", 0, 1, above=True
        ),
        "min_failures": Setting(
            "integer", "failed requests at least, for either (default 4)", 1, 10_000
        ),
    },
    "plugins": {
        "dirs": Setting("paths", "directories of Python plugins (each a plugin.toml)"),
        "shared_runner": Setting("boolean", "run every plugin in one runner process"),
    },
    "tools": {
        "dirs": Setting("paths", "directories of declared tools (each a tool.toml)"),
    },
    "gateway": {
        "url": Setting(
            "string", "the cloud's model gateway (default: the one it names)",
            example="https://cloud.example/v1",
        ),
        "model": Setting(
            "string", "the model edge ask/chat use (default: the gateway's)", example="default"
        ),
    },
    "offline": {
        "url": Setting("string", "a local OpenAI-compatible server for --offline (a /v1 URL)"),
        "model": Setting(
            "string", "the model --offline asks for (default: the first it lists)",
            example="llama3.2",
        ),
        "api_key_env": Setting(
            "string", "environment variable holding its API key, if any",
            example="OFFLINE_API_KEY",
        ),
    },
    "update": {
        "manifest_url": Setting(
            "string", "the versions manifest (https://; default: the one the cloud names)",
            example="https://cloud.example/edge/versions.json",
        ),
        "public_key": Setting(
            "string", "the Ed25519 key that signs it (base64, 32 bytes)",
            example="BASE64-ED25519-KEY",
        ),
        "auto": Setting("boolean", "install updates by itself when run as a service"),
        "check": Setting("boolean", "check for an update once a day (default true)"),
    },
    "log": {
        "level": Setting("string", "DEBUG, INFO, WARNING or ERROR (default INFO)"),
        "file": Setting(
            "path", "edge run also logs here, appended (stderr: warnings only)",
            example="~/.local/state/edge/log/edge.log",
        ),
        "format": Setting("string", "text or json (one object a line)"),
    },
    "workers": {
        "max_calls": Setting("integer", "tool calls running at once", 1, MAX_CALLS),
        "queue": Setting("integer", "calls waiting beyond those", 0, MAX_QUEUE),
        "timeout": Setting(
            "number", "default per-call timeout, seconds", 0, MAX_CALL_TIMEOUT, above=True
        ),
    },
    "scheduler": {
        "cloud_tasks": Setting("boolean", "run scheduled tasks the cloud creates (default true)"),
    },
    "agents": {
        "name": Setting("string", "this edge's name among agents (default: the host name)"),
    },
}


def describe_settings() -> str:
    """Every key as one line: ``[section] key  type, range: what it sets``."""
    lines = []
    for section, keys in SETTINGS.items():
        for key, s in keys.items():
            text = EXPECTED[s.kind] + (f", {s.range_text()}" if s.range_text() else "")
            lines.append(f"[{section}] {key}  {text}: {s.help}")
    return "\n".join(lines)


def _did_you_mean(word: str, choices: list[str], quote: str = "`{}`") -> str:
    """``; did you mean `X`?`` for the closest of ``choices``, else the valid names."""
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f"; did you mean {quote.format(close[0])}?"
    return "; valid: " + ", ".join(quote.format(c) for c in choices)


def _unknown_key(origin: str, section: str, key: str) -> ConfigError:
    import difflib

    keys = list(SETTINGS[section])
    if not difflib.get_close_matches(key, keys, n=1):
        # The right key in the wrong section, e.g. [workers] workspace.
        elsewhere = [f"{name}.{key}" for name, other in SETTINGS.items() if key in other]
        if elsewhere:
            return ConfigError(
                f"{origin}: unknown key `{section}.{key}`; did you mean `{elsewhere[0]}`?"
            )
    return ConfigError(f"{origin}: unknown key `{section}.{key}`{_did_you_mean(key, keys)}")


def _unknown_top(origin: str, name: str, value: object) -> ConfigError:
    if isinstance(value, dict):
        hint = _did_you_mean(name, list(SETTINGS), "`[{}]`")
        return ConfigError(f"{origin}: unknown section `[{name}]`{hint}")
    homes = [section for section, keys in SETTINGS.items() if name in keys]
    hint = (
        f"; it belongs in `[{homes[0]}]`"
        if homes
        else _did_you_mean(name, list(SETTINGS), "`[{}]`").replace("valid:", "valid sections:")
    )
    return ConfigError(f"{origin}: unknown key `{name}` outside any section{hint}")


def settings_problems(data: Mapping[str, Any], origin: str) -> list[str]:
    """Every way ``data`` (a parsed ``config.toml``) breaks ``SETTINGS``, in file order:
    an unknown section or key, a wrong type, a value out of range (one message each,
    naming ``origin``, the key and what was expected); ``[]`` when it holds to it."""
    problems: list[str] = []
    for name, value in data.items():
        if name not in SETTINGS:
            problems.append(str(_unknown_top(origin, name, value)))
            continue
        if not isinstance(value, dict):
            problems.append(f"{origin}: `[{name}]` must be a table, not {_a(value)}")
            continue
        for key, item in value.items():
            if key not in SETTINGS[name]:
                problems.append(str(_unknown_key(origin, name, key)))
                continue
            try:
                SETTINGS[name][key].check(item, f"{origin}: `{name}.{key}`")
            except ConfigError as exc:
                problems.append(str(exc))
    return problems


def check_settings(data: Mapping[str, Any], origin: str) -> dict[str, dict[str, Any]]:
    """``data`` (a parsed ``config.toml``) checked against ``SETTINGS``.

    Returns:
        section → key → value, for the keys the file sets.

    Raises:
        ConfigError: the first of ``settings_problems``: an unknown section or key,
            a wrong type or a value out of range; the message names ``origin``, the
            key and what was expected.
    """
    problems = settings_problems(data, origin)
    if problems:
        raise ConfigError(problems[0])
    return {name: dict(value) for name, value in data.items()}


def check_flag(flag: str, section: str, key: str, value: Any) -> Any:
    """A flag's value checked like the key it overrides (``None``: not given)."""
    return None if value is None else SETTINGS[section][key].check(value, flag)


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{text!r} is not HOST:PORT")
    host = host.removeprefix("[").removesuffix("]")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"port {port!r} in {text!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"port {number} is out of range (0 to 65535)")
    return host, number
