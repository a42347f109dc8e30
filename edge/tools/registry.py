"""One registry for every kind of tool.

Built-in tools register at start-up; MCP sessions, plugin runners and runtimes
add and remove their tools the same way while the daemon runs, and whoever
subscribed (the daemon, which re-announces capabilities) hears of each change.
The registry is state of its owner (the daemon), never a module global.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
        self._listeners: list[Callable[[], None]] = []
        self._batches = 0
        self._unannounced = False

    def add(self, spec: ToolSpec) -> None:
        """Register ``spec``; a tool of the same name is replaced."""
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(spec.input_schema)
        self._tools[spec.name] = spec
        self._validators[spec.name] = Draft202012Validator(spec.input_schema)
        self._changed()

    def remove(self, name: str) -> None:
        if self._tools.pop(name, None) is not None:
            del self._validators[name]
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
        """Return a message naming what is wrong with ``args``, or ``None`` if they fit."""
        from jsonschema.exceptions import best_match

        error = best_match(self._validators[name].iter_errors(args))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"invalid args for {name}: {where + ': ' if where else ''}{error.message}"

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
