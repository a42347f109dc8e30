"""Edge tool names for MCP tools: unique, valid OpenAI function names, mapped back by lookup.

A server's tool ``get_time`` on server ``clock`` is offered as ``clock__get_time``.
Where that is not a valid name (characters outside ``[a-zA-Z0-9_-]``, more than
64 characters) or is already taken, the name is cut and ends in ``_`` and a hash
of the exact (server, tool) pair. Going back from a name to its server and tool
is always a dictionary lookup, never a split on the separator, so a server or
tool whose own name holds ``__`` maps back correctly.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Final

#: A valid OpenAI function name.
VALID: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
#: Between the server's and the tool's part of an edge tool name.
SEPARATOR: Final = "__"
#: The longest valid name.
MAX_LENGTH: Final = 64
#: Characters a valid name may not have.
_INVALID: Final = re.compile(r"[^a-zA-Z0-9_-]")


def _clean(text: str) -> str:
    return _INVALID.sub("_", text)


def _digest(server: str, tool: str) -> str:
    return hashlib.sha256(f"{server}\0{tool}".encode("utf-8", "surrogatepass")).hexdigest()


def may_belong_to(server: str, name: str) -> bool:
    """Whether ``name`` may be the edge name of a tool of ``server``: it starts with the
    server's part (``clock__``), as every name ``ToolNames`` hands out does unless the
    server's own name takes most of the 64 characters. For starting just the server a
    name needs (``edge tools call``); the exact mapping is ``ToolNames.lookup``."""
    prefix = f"{_clean(server)}{SEPARATOR}"
    if len(prefix) < MAX_LENGTH // 2:
        return name.startswith(prefix)
    return name[: MAX_LENGTH // 2] == prefix[: MAX_LENGTH // 2]


class ToolNames:
    """The (server, tool) ↔ name table, owned by the MCP nursery.

    ``reserved`` says whether a name is used by a tool outside MCP (a built-in);
    such names are never handed out.
    """

    def __init__(self, reserved: Callable[[str], bool] = lambda name: False) -> None:
        self._reserved = reserved
        self._by_name: dict[str, tuple[str, str]] = {}
        self._by_pair: dict[tuple[str, str], str] = {}

    def name_for(self, server: str, tool: str) -> str:
        """The name of (server, tool), assigned on first use and stable after that."""
        pair = (server, tool)
        name = self._by_pair.get(pair)
        if name is None:
            name = self._assign(server, tool)
            self._by_pair[pair] = name
            self._by_name[name] = pair
        return name

    def lookup(self, name: str) -> tuple[str, str] | None:
        return self._by_name.get(name)

    def release_server(self, server: str) -> None:
        """Forget every name of ``server`` (its entry was removed)."""
        for pair in [p for p in self._by_pair if p[0] == server]:
            del self._by_name[self._by_pair.pop(pair)]

    def _free(self, name: str) -> bool:
        return name not in self._by_name and not self._reserved(name)

    def _assign(self, server: str, tool: str) -> str:
        plain = f"{_clean(server)}{SEPARATOR}{_clean(tool)}"
        exact = plain == f"{server}{SEPARATOR}{tool}"
        if exact and VALID.match(plain) and self._free(plain):
            return plain
        digest = _digest(server, tool)
        for size in (8, 12, 16, 24, 32, 64):
            tail = "_" + digest[:size]
            name = plain[: MAX_LENGTH - len(tail)] + tail
            if self._free(name):
                return name
        n = 2  # a full sha256 collision, or every variant reserved: count up
        while True:
            tail = f"_{digest[:16]}_{n}"
            name = plain[: MAX_LENGTH - len(tail)] + tail
            if self._free(name):
                return name
            n += 1
