"""``tool.toml``: what a declared tool is, read and checked before anything runs.

A declared tool is a directory holding a ``tool.toml``::

    name = "greet"                      # the tool's name: a letter, then letters, digits, _ or -
    description = "Greet someone by name."
    runtime = "node"                    # node | native | wasm
    entry = "index.js"                  # inside the directory
    timeout = 10                        # seconds (optional; more than 0, at most 3600)
    env = ["GREETING"]                  # environment variables passed through (optional)
    argv = ["--name", "{name}"]         # native only: arguments, {key} from the call's args
    memory_mb = 64                      # wasm only: memory cap (1 to 4096, default 64)
    schema = "args.schema.json"         # the args' JSON Schema in a file, or else:

    [args]                              # the args' JSON Schema inline (default: any object)
    type = "object"
    properties.name = { type = "string" }
    required = ["name"]

    [[grants.dirs]]                     # wasm only: directories the module may open
    path = "~/notes"
    mode = "ro"                         # ro | rw

``load_manifest`` returns a ``ToolManifest`` or raises a ``ConfigError`` that
names the file and the key, with the closest valid key for a typo. Whether the
entry exists, whether the runtime is installed and whether the grants lie
inside the policy's roots is the runtime's ``validate`` (``edge.tools.runtimes.base``).
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args

from ...config import TOKEN_ENV, open_regular, read_toml
from ...errors import ConfigError

#: The file that makes a directory a declared tool.
TOOL_FILE: Final = "tool.toml"
#: What a tool's name looks like (it is what the cloud calls).
NAME_PATTERN: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9_-]{0,63}")
#: What an environment variable's name looks like.
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: What a placeholder of an ``argv`` template names: an arg.
FIELD_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
#: Longest ``timeout`` a tool may declare (seconds).
MAX_TIMEOUT: Final = 3600
#: Default and bounds of ``memory_mb`` (wasm), in MiB.
DEFAULT_MEMORY_MB: Final = 64
MAX_MEMORY_MB: Final = 4096
#: Largest schema file read (bytes).
MAX_SCHEMA_BYTES: Final = 1024 * 1024

RuntimeKind = Literal["node", "native", "wasm"]
RUNTIMES: Final[tuple[str, ...]] = get_args(RuntimeKind)

#: Every top-level key, and the runtimes it applies to (``None``: every runtime).
KEYS: Final[Mapping[str, tuple[str, ...] | None]] = {
    "name": None, "description": None, "runtime": None, "entry": None, "schema": None,
    "args": None, "timeout": None, "env": None, "argv": ("native",), "memory_mb": ("wasm",),
    "grants": ("wasm",),
}  # fmt: skip
GRANT_KEYS: Final = ("path", "mode")


@dataclass(frozen=True, slots=True)
class Grant:
    """A directory a tool may open: ``path`` as written (``~`` expanded), read-only unless
    ``writable``. Relative paths are relative to the policy's workspace."""

    path: Path
    writable: bool = False


@dataclass(frozen=True, slots=True)
class ToolManifest:
    """A checked ``tool.toml``; ``directory`` and ``entry`` are resolved (symlinks followed)."""

    name: str
    description: str
    runtime: RuntimeKind
    entry: Path
    directory: Path
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    timeout: float | None = None
    argv: tuple[str, ...] = ()
    grants: tuple[Grant, ...] = ()
    memory_mb: int = DEFAULT_MEMORY_MB
    env: tuple[str, ...] = ()


def load_manifest(directory: Path) -> ToolManifest:
    """Read and check ``directory/tool.toml``.

    Raises:
        ConfigError: the file is missing or not UTF-8 TOML, a key is unknown,
            misspelt, of the wrong type or out of range, a path leaves the
            directory or names an unknown ``~user``, or the schema is not a JSON
            Schema; the message names the file and key.
    """
    try:
        root = Path(os.path.realpath(directory.expanduser()))
    except RuntimeError:
        raise ConfigError(f"{directory}: cannot expand its `~`: no such user") from None
    origin = root / TOOL_FILE
    try:
        data = read_toml(origin, regular=True)
    except FileNotFoundError:
        raise ConfigError(f"{directory}: no {TOOL_FILE} in this directory") from None
    return _Reader(origin, root, data).manifest()


class _Reader:
    """One ``tool.toml`` being checked; every error names ``origin`` and the key."""

    def __init__(self, origin: Path, root: Path, data: dict[str, Any]) -> None:
        self.origin = origin
        self.root = root
        self.data = data

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.origin}: `{key}` {problem}")

    def manifest(self) -> ToolManifest:
        data = self.data
        for key in data:
            if key not in KEYS:
                raise ConfigError(
                    f"{self.origin}: unknown key `{key}`{_did_you_mean(key, list(KEYS))}"
                )
        name = self.string("name")
        if not NAME_PATTERN.fullmatch(name):
            raise self.fail(
                "name", f"must be a letter, then up to 63 letters, digits, _ or -, not {name!r}"
            )
        description = self.string("description")
        runtime = self.string("runtime")
        if runtime not in RUNTIMES:
            close = difflib.get_close_matches(runtime, RUNTIMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.fail(
                "runtime", f"must be one of {', '.join(RUNTIMES)}, not {runtime!r}{hint}"
            )
        for key, only in KEYS.items():
            if key in data and only is not None and runtime not in only:
                raise self.fail(key, f"applies only to {' and '.join(only)} tools, not {runtime}")
        return ToolManifest(
            name=name,
            description=description,
            runtime=cast(RuntimeKind, runtime),
            entry=self.inside("entry", self.string("entry")),
            directory=self.root,
            input_schema=self.schema(),
            timeout=self.timeout(),
            argv=self.argv(),
            grants=self.grants(),
            memory_mb=self.memory(),
            env=self.env(),
        )

    def string(self, key: str) -> str:
        if key not in self.data:
            raise ConfigError(f"{self.origin}: `{key}` is missing")
        value = self.data[key]
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {_a(value)}")
        if not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def inside(self, key: str, relative: str) -> Path:
        """``relative`` resolved against the tool's directory; it must stay inside."""
        if "\x00" in relative:
            raise self.fail(key, "contains a NUL character")
        path = Path(os.path.realpath(self.root / relative))
        if path == self.root or not path.is_relative_to(self.root):
            raise self.fail(key, f"must name a file inside {self.root}, not {relative!r}")
        return path

    def schema(self) -> dict[str, Any]:
        data = self.data
        if "args" in data and "schema" in data:
            raise self.fail("schema", "and `[args]` both give the schema: keep one")
        if "args" in data:
            schema = data["args"]
            if not isinstance(schema, dict):
                raise self.fail("args", f"must be a table (a JSON Schema), not {_a(schema)}")
            where = "[args]"
            problem = _not_json(schema)
            if problem is not None:
                raise self.fail(where, problem)
        elif "schema" in data:
            schema = self.schema_file(self.inside("schema", self.string("schema")))
            where = "schema"
        else:
            return {"type": "object"}
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            at = "/".join(str(p) for p in exc.absolute_path)
            raise self.fail(
                where, f"is not a valid JSON Schema{' at ' + at if at else ''}: {exc.message}"
            ) from None
        except RecursionError:
            raise self.fail(where, "nests too deep to be checked as a JSON Schema") from None
        if schema.get("type", "object") != "object":
            kind = schema["type"]
            raise self.fail(where, f'must describe an object ("type": "object"), not {kind!r}')
        return cast(dict[str, Any], schema)

    def schema_file(self, path: Path) -> dict[str, Any]:
        try:
            with open_regular(path) as f:
                raw = f.read(MAX_SCHEMA_BYTES + 1)
        except OSError as exc:
            problem = f"names {path}, which cannot be read: {exc.strerror}"
            raise self.fail("schema", problem) from None
        if len(raw) > MAX_SCHEMA_BYTES:
            problem = f"names {path}, which is larger than {MAX_SCHEMA_BYTES} bytes"
            raise self.fail("schema", problem)
        try:
            schema = json.loads(raw)
        except ValueError as exc:
            raise self.fail("schema", f"names {path}, which is not valid JSON: {exc}") from None
        except RecursionError:
            problem = f"names {path}, whose JSON nests deeper than edge reads"
            raise self.fail("schema", problem) from None
        if not isinstance(schema, dict):
            raise self.fail("schema", f"names {path}, which holds no JSON object")
        return schema

    def timeout(self) -> float | None:
        if "timeout" not in self.data:
            return None
        value = self.data["timeout"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail("timeout", f"must be a number of seconds, not {_a(value)}")
        if not (0 < value <= MAX_TIMEOUT) or math.isnan(value):
            problem = f"must be more than 0 and at most {MAX_TIMEOUT}, not {value!r}"
            raise self.fail("timeout", problem)
        return float(value)

    def strings(self, key: str) -> list[str]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list of strings, not {_a(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(f"{key}[{i}]", f"must be a string, not {_a(item)}")
        return cast(list[str], value)

    def argv(self) -> tuple[str, ...]:
        items = self.strings("argv")
        for i, item in enumerate(items):
            try:
                parse_template(item)
            except ValueError as exc:
                problem = f"is not a valid template ({item!r}): {exc}"
                raise self.fail(f"argv[{i}]", problem) from None
        return tuple(items)

    def env(self) -> tuple[str, ...]:
        names = self.strings("env")
        for i, name in enumerate(names):
            if not ENV_NAME.fullmatch(name):
                raise self.fail(f"env[{i}]", f"is not an environment variable name: {name!r}")
            if name == TOKEN_ENV:
                raise self.fail(f"env[{i}]", f"names {TOKEN_ENV}: edge never passes its token on")
        return tuple(dict.fromkeys(names))

    def memory(self) -> int:
        value = self.data.get("memory_mb", DEFAULT_MEMORY_MB)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail("memory_mb", f"must be a whole number of MiB, not {_a(value)}")
        if not 1 <= value <= MAX_MEMORY_MB:
            raise self.fail("memory_mb", f"must be from 1 to {MAX_MEMORY_MB}, not {value}")
        return value

    def grants(self) -> tuple[Grant, ...]:
        if "grants" not in self.data:
            return ()
        table = self.data["grants"]
        if not isinstance(table, dict):
            raise self.fail("grants", f"must be a table (`[[grants.dirs]]`), not {_a(table)}")
        for key in table:
            if key != "dirs":
                raise self.fail(f"grants.{key}", "is unknown; the key is `grants.dirs`")
        dirs = table.get("dirs", [])
        if not isinstance(dirs, list):
            raise self.fail("grants.dirs", f"must be an array of tables, not {_a(dirs)}")
        grants = []
        for i, entry in enumerate(dirs):
            where = f"grants.dirs[{i}]"
            if not isinstance(entry, dict):
                raise self.fail(where, f"must be a table (path, mode), not {_a(entry)}")
            for key in entry:
                if key not in GRANT_KEYS:
                    hint = _did_you_mean(key, list(GRANT_KEYS))
                    raise ConfigError(f"{self.origin}: unknown key `{where}.{key}`{hint}")
            path = entry.get("path")
            if not isinstance(path, str) or not path or "\x00" in path:
                problem = f"must be a path (a non-empty string), not {_a(path)}"
                raise self.fail(f"{where}.path", problem)
            mode = entry.get("mode", "ro")
            if mode not in ("ro", "rw"):
                raise self.fail(f"{where}.mode", f'must be "ro" or "rw", not {mode!r}')
            try:
                expanded = Path(path).expanduser()
            except RuntimeError:
                home = path.split("/", 1)[0]
                problem = f"is {path!r}: cannot expand {home!r}: no such user, or no home directory"
                raise self.fail(f"{where}.path", problem) from None
            grants.append(Grant(expanded, writable=mode == "rw"))
        return tuple(grants)


def parse_template(text: str) -> list[tuple[str, str | None]]:
    """An ``argv`` item as (literal text, arg name or ``None``) pieces.

    ``{name}`` is replaced by the arg ``name``; ``{{`` and ``}}`` are literal braces.

    Raises:
        ValueError: an unbalanced brace, or a placeholder that is not a plain arg name.
    """
    pieces: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in string.Formatter().parse(text):
        if name is not None and (spec or conversion or not FIELD_NAME.fullmatch(name)):
            shown = "{" + name + ("!" + conversion if conversion else "") + (
                ":" + spec if spec else ""
            ) + "}"
            raise ValueError(f"{shown} is not a plain {{arg}} placeholder")
        pieces.append((literal, name))
    return pieces


def _not_json(value: object) -> str | None:
    """What in ``value`` (TOML, parsed) JSON cannot hold, and where; ``None`` if nothing."""
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        at, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((f"{at}/{k}" if at else str(k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{at}/{i}" if at else str(i), v) for i, v in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            return f"holds {item!r} at {at}, which JSON cannot: a JSON Schema holds JSON values"
        elif not isinstance(item, str | int | float):
            kind = _a(item)
            return f"holds {kind} at {at}, which JSON cannot: a JSON Schema holds JSON values"
    return None


def _did_you_mean(word: str, choices: list[str], quote: str = "`{}`") -> str:
    """``; did you mean `X`?`` for the closest of ``choices``, else the valid names."""
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f"; did you mean {quote.format(close[0])}?"
    return "; valid: " + ", ".join(quote.format(c) for c in choices)


def _a(value: object) -> str:
    """``value``'s TOML type with its article, for error messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    names: list[tuple[type | tuple[type, ...], str]] = [
        (int, "an integer"), (float, "a float"), (list, "an array"), (dict, "a table"),
        ((datetime.datetime, datetime.date, datetime.time), "a date or time"),
    ]  # fmt: skip
    if value is None:
        return "nothing"
    return next((n for kind, n in names if isinstance(value, kind)), type(value).__name__)
