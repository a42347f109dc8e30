"""Build edge → cloud frames (plain dicts, encoded once by ``encode``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .frames import RequestId

#: Bumped when a frame changes shape; the cloud reads it from the capability report.
PROTOCOL_VERSION: Final = 1

#: Extensions a cloud may use; a cloud that ignores them loses nothing.
EXTENSIONS: Final = ("agents", "cancel", "outbox", "progress", "schedule")


#: A UTF-16 surrogate code point: Python strings may hold one alone (a file name
#: decoded with ``surrogateescape``, a call id from ``"\\udc80"`` in JSON), UTF-8 cannot.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match[0]):04x}"


def encode(frame: Mapping[str, Any]) -> str:
    """Encode a frame as compact JSON text that always encodes as UTF-8.

    Text stays as it is (no ``\\u`` escapes for ordinary characters), except a
    lone surrogate, which becomes its JSON escape: the frame is valid UTF-8, and
    a JSON decoder on the other side gets the very same string back (so a file
    name shown escaped still works when the cloud passes it back).

    Raises:
        TypeError, ValueError: ``frame`` holds something JSON cannot carry.
    """
    text = json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    # Surrogates can only appear inside JSON strings, where the escape is valid.
    return _SURROGATE.sub(_escape, text)


def pong() -> dict[str, Any]:
    return {"type": "pong"}


def capability_report(
    *,
    platform: str,
    edge_version: str,
    hostname: str,
    audio_sources: Iterable[Mapping[str, Any]],
    tools: Iterable[Mapping[str, Any]],
    limits: Mapping[str, Any],
    mcp_servers: Iterable[Mapping[str, Any]] = (),
    declared_tools: Iterable[Mapping[str, Any]] = (),
    plugins: Iterable[Mapping[str, Any]] = (),
    edge_commit: str | None = None,
    agent: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report edge sends right after ``connected``.

    Args:
        platform: e.g. ``linux-x86_64``.
        edge_version: the package version.
        hostname: this machine's name, so the user can tell their machines apart.
        audio_sources: capture sources available here.
        tools: one ``{"name", "description", "input_schema"}`` per tool the local
            policy offers.
        limits: numbers the cloud may want to respect (max concurrent calls, ...).
        mcp_servers: one ``{"name", "status", "tools", "lastError"}`` per MCP server.
        declared_tools: one ``{"name", "runtime", "directory", "status", "problem"}``
            per declared tool (``tool.toml``), valid (``"ok"``, offered in ``tools``
            if the policy allows it) or not (``"invalid"``, with the problem).
        plugins: one ``{"name", "status", "tools", "lastError"}`` per Python plugin
            (its tools, ``PLUGIN__TOOL``, are in ``tools`` while it runs).
        edge_commit: the git commit edge runs from (a checkout), else ``None``.
        agent: this edge among agents, ``{"id", "name"}`` (the ``agents`` extension).
    """
    return {
        "type": "capability_report",
        "protocolVersion": PROTOCOL_VERSION,
        "edgeVersion": edge_version,
        "edgeCommit": edge_commit,
        "platform": platform,
        "hostname": hostname,
        "audioSources": list(audio_sources),
        "tools": [dict(t) for t in tools],
        "mcpServers": [dict(m) for m in mcp_servers],
        "declaredTools": [dict(d) for d in declared_tools],
        "plugins": [dict(p) for p in plugins],
        "extensions": list(EXTENSIONS),
        "limits": dict(limits),
        **({} if agent is None else {"agent": dict(agent)}),
    }


def tool_response(request_id: RequestId, result: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-RPC response carrying a tool result (success or error alike)."""
    return {"jsonrpc": "2.0", "id": request_id, "result": dict(result)}


def progress_notification(
    request_id: RequestId, done: float, total: float | None, message: str | None
) -> dict[str, Any]:
    """A call's progress, as its tool reports it (best effort: never queued for later)."""
    params: dict[str, Any] = {"id": request_id, "progress": done}
    if total is not None:
        params["total"] = total
    if message:
        params["message"] = message
    return {"jsonrpc": "2.0", "method": "progress", "params": params}


def invalid_request(message: str) -> dict[str, Any]:
    """JSON-RPC error for a frame edge could not tie to a request id."""
    return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
