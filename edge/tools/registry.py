"""One registry for every kind of tool.

Built-in tools register at start-up; MCP sessions, plugin runners and runtimes
add and remove their tools the same way while the daemon runs, and whoever
subscribed (the daemon, which re-announces capabilities) hears of each change.
The registry is state of its owner (the daemon), never a module global.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .quickcheck import Check, compile_quick

if TYPE_CHECKING:
    from .contain import Containment
    from .policy import Policy

ToolResult = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a running tool may know about its call."""

    call_id: str | int | None
    policy: Policy
    #: Environment for child processes (the daemon's, with secrets removed).
    env: Mapping[str, str]
    #: Report progress (done, total or None, message or None) to whoever called.
    progress: Callable[[float, float | None, str | None], None] | None = None
    #: What holds the processes a call starts (``None``: their process group only).
    processes: Containment | None = None


ToolFn = Callable[[dict[str, Any], CallContext], Awaitable[ToolResult]]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool: its name, what it does, the JSON Schema of its args and the coroutine.

    ``source`` says where it comes from (``builtin``, ``mcp:<server>``, ...).
    ``timeout`` (seconds), when set, is the tool's own limit; otherwise a call
    may pass ``timeout`` in its args, else the executor's default applies.
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    run: ToolFn = field(repr=False)
    source: str = "builtin"
    timeout: float | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "source": self.source,
        }


class ToolRegistry:
    """Tools by name, with their compiled schema validators."""

    def __init__(self) -> None:
        self._tools: dict[str, ToolSpec] = {}
        self._validators: dict[str, Any] = {}
        self._quick: dict[str, Check | None] = {}
        self._listeners: list[Callable[[], None]] = []
        self._batches = 0
        self._unannounced = False

    def add(self, spec: ToolSpec) -> None:
        """Register ``spec``; a tool of the same name is replaced."""
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(spec.input_schema)
        self._tools[spec.name] = spec
        self._validators[spec.name] = Draft202012Validator(spec.input_schema)
        self._quick[spec.name] = compile_quick(spec.input_schema)
        self._changed()

    def remove(self, name: str) -> None:
        if self._tools.pop(name, None) is not None:
            del self._validators[name]
            del self._quick[name]
            self._changed()

    def get(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> frozenset[str]:
        return frozenset(self._tools)

    def validate(self, name: str, args: dict[str, Any]) -> str | None:
        """Return a message naming what is wrong with ``args``, or ``None`` if they fit.

        The message names the offending key in double quotes: ``invalid args for
        file_read: "path": 5 is not of type 'string'``, ``... "path" is required``,
        ``... "colour" is not an argument of file_read (it takes "path", ...)``;
        a nested one as ``"options.depth"`` or ``"files[2]"``.
        """
        quick = self._quick.get(name)
        if quick is not None and quick(args):
            return None  # surely fits (``edge.tools.quickcheck``)
        from jsonschema.exceptions import best_match

        error = best_match(self._validators[name].iter_errors(args))
        if error is None:
            return None
        return f"invalid args for {name}: {_describe(name, error)}"

    def unknown(self, name: str) -> str:
        """The error for a tool ``name`` that is not registered, with the closest
        registered name when one is close: ``unknown tool 'termnal'; did you mean
        'terminal'?``."""
        import difflib

        close = difflib.get_close_matches(name, sorted(self._tools), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown tool {name!r}{hint}"

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after every change; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many changes, one notice: listeners hear once, when the outermost batch ends."""
        self._batches += 1
        try:
            yield
        finally:
            self._batches -= 1
            if not self._batches and self._unannounced:
                self._unannounced = False
                self._changed()

    def _changed(self) -> None:
        if self._batches:
            self._unannounced = True
            return
        for listener in list(self._listeners):
            listener()


def _where(path: Iterable[Any]) -> str:
    """A location in the args (``options.depth``, ``files[2]``), unquoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(tool: str, error: Any) -> str:
    """One jsonschema ``ValidationError`` in words that name the key it is about."""
    where = _where(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = next((k for k in error.validator_value if k not in error.instance), None)
        if missing is not None:
            return f'"{_where([*error.absolute_path, missing])}" is required'
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        known = schema.get("properties") or {}
        extra = next((k for k in error.instance if k not in known), None)
        if extra is not None and not schema.get("patternProperties"):
            takes = ", ".join(f'"{k}"' for k in known) or "nothing"
            if not where:
                return f'"{extra}" is not an argument of {tool} (it takes {takes})'
            return f'"{_where([*error.absolute_path, extra])}" is not allowed (allowed: {takes})'
    return f'"{where}": {error.message}' if where else error.message
