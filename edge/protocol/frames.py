"""Parse cloud → edge frames into typed events.

``parse_frame`` never raises: anything that is not a frame edge understands
comes back as a ``ProtocolError`` value carrying a message for the log and, when
the frame was a JSON-RPC request with a usable id, that id, so the caller can
answer the request with an error result instead of leaving the cloud waiting.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Final

from .strict import loads

#: Frames larger than this are refused before JSON parsing (characters or bytes).
MAX_FRAME_CHARS: Final = 8 * 1024 * 1024

RequestId = str | int


@dataclass(frozen=True, slots=True)
class Connected:
    """The cloud accepted the connection: ``{"type":"connected","userId":...}``.

    ``asr_url`` is the speech-recognition endpoint the cloud names for captures
    (optional ``"asrUrl"``, a ws:// or wss:// URL); ``gateway_url`` its model
    gateway for ``edge ask``/``chat`` (optional ``"gatewayUrl"``, an http(s)://
    base URL of an OpenAI-compatible API: ``chat/completions`` is below it);
    ``versions_url`` the versions manifest ``edge update`` reads (optional
    ``"versionsUrl"``, https://).
    """

    user_id: str
    asr_url: str | None = None
    gateway_url: str | None = None
    versions_url: str | None = None


@dataclass(frozen=True, slots=True)
class ApprovedTools:
    """The cloud's whitelist: ``{"type":"approved_tools","tools":[...]}``."""

    tools: frozenset[str]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A JSON-RPC ``tool_call`` request."""

    id: RequestId
    tool: str
    args: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class Cancel:
    """A JSON-RPC ``cancel`` notification for an in-flight call."""

    id: RequestId


@dataclass(frozen=True, slots=True)
class Request:
    """A JSON-RPC request (``id`` set) or notification (``id`` ``None``) of one of the
    extensions' methods (``EXTENSION_METHODS``); the daemon routes it by ``method``."""

    method: str
    params: dict[str, Any] = field(hash=False)
    id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """The cloud's JSON-RPC response to a request edge sent: ``result`` or ``error``."""

    id: RequestId
    result: Any = field(default=None, hash=False)
    error: Any = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class Ping:
    """``{"type":"ping"}``: answered with a pong."""


@dataclass(frozen=True, slots=True)
class Unknown:
    """A well-formed frame of a type edge does not know; logged and ignored."""

    kind: str


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A frame that could not be understood.

    ``id`` is set when the frame was a request with a usable id: the caller
    answers that request with an error result naming ``message``.
    """

    message: str
    id: RequestId | None = None


Frame = (
    Connected
    | ApprovedTools
    | ToolCall
    | Cancel
    | Request
    | Response
    | Ping
    | Unknown
    | ProtocolError
)

#: JSON-RPC methods of the extensions, besides ``tool_call`` and ``cancel``: parsed into
#: ``Request`` frames (their params an object) and routed by the daemon.
EXTENSION_METHODS: Final = frozenset(
    {
        # scheduler: tasks the cloud creates
        "schedule_add",
        "schedule_remove",
        "schedule_list",
        # agents: work handed between agents through the cloud
        "agent_request",
        "agent_cancel",
        "agent_event",
        "agent_resume",
        "agent_peers",
    }
)


def _valid_id(value: object) -> bool:
    # JSON-RPC ids are strings or numbers; edge accepts strings and integers
    # (a float id cannot be matched reliably, a bool is not a number).
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return len(value) <= 256
    return isinstance(value, int)


def parse_frame(data: str | bytes) -> Frame:
    """Turn one WebSocket message into a frame event.

    Args:
        data: the message as received (text or binary).

    Returns:
        One of the frame dataclasses; a ``ProtocolError`` for anything malformed.
    """
    if len(data) > MAX_FRAME_CHARS:
        return ProtocolError(f"frame of {len(data)} characters is over the {MAX_FRAME_CHARS} limit")
    try:
        obj = loads(data)
    except (ValueError, RecursionError) as exc:
        return ProtocolError(f"frame is not valid JSON: {_short(exc)}")
    if not isinstance(obj, dict):
        return ProtocolError(f"frame is a JSON {type(obj).__name__}, not an object")
    if "jsonrpc" in obj or "method" in obj:
        return _parse_rpc(obj)
    kind = obj.get("type")
    if not isinstance(kind, str):
        return ProtocolError('frame has no string "type" and is not JSON-RPC')
    if kind == "ping":
        return Ping()
    if kind == "connected":
        user = obj.get("userId", "")
        if not isinstance(user, str):
            return ProtocolError('"connected" frame has a non-string "userId"')
        asr = obj.get("asrUrl")
        if asr is not None and (
            not isinstance(asr, str) or not asr.startswith(("ws://", "wss://")) or len(asr) > 2048
        ):
            return ProtocolError('"connected" frame has an "asrUrl" that is not a ws:// URL')
        gateway = obj.get("gatewayUrl")
        if gateway is not None and not _is_url(gateway, ("http://", "https://")):
            return ProtocolError('"connected" frame has a "gatewayUrl" that is not an http(s) URL')
        versions = obj.get("versionsUrl")
        if versions is not None and not _is_url(versions, ("https://",)):
            return ProtocolError('"connected" frame has a "versionsUrl" that is not an https URL')
        return Connected(user, asr, gateway, versions)
    if kind == "approved_tools":
        tools = obj.get("tools")
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            return ProtocolError('"approved_tools" frame needs "tools": a list of strings')
        return ApprovedTools(frozenset(tools))
    return Unknown(kind[:64])


def _parse_rpc(obj: dict[str, Any]) -> Frame:
    raw_id = obj.get("id")
    rid: RequestId | None = raw_id if _valid_id(raw_id) else None
    if obj.get("jsonrpc") != "2.0":
        return ProtocolError('JSON-RPC frame needs "jsonrpc": "2.0"', rid)
    method = obj.get("method")
    params = obj.get("params")
    if method == "cancel":
        target = params.get("id") if isinstance(params, dict) else None
        if not _valid_id(target):
            return ProtocolError('"cancel" needs "params": {"id": <string or integer>}')
        assert isinstance(target, str | int)
        return Cancel(target)
    if isinstance(method, str) and method in EXTENSION_METHODS:
        if "id" in obj and rid is None:
            return ProtocolError(f'"{method}" "id" must be a string (≤256 chars) or an integer')
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return ProtocolError(f'"{method}" needs "params" to be an object', rid)
        return Request(method, params, rid)
    if method != "tool_call":
        if "method" not in obj and ("result" in obj or "error" in obj):
            if rid is None:
                return Unknown("jsonrpc-response")
            return Response(rid, obj.get("result"), obj.get("error"))
        return ProtocolError(f"unknown method {_show(method)}", rid)
    if rid is None:
        if "id" not in obj:
            return ProtocolError('"tool_call" without an "id"')
        return ProtocolError('"tool_call" "id" must be a string (≤256 chars) or an integer')
    if not isinstance(params, dict):
        return ProtocolError('"tool_call" needs "params": {"tool": ..., "args": {...}}', rid)
    tool = params.get("tool")
    if not isinstance(tool, str) or not tool:
        return ProtocolError('"tool_call" params need a non-empty string "tool"', rid)
    args = params.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return ProtocolError(f'"args" must be an object, not a JSON {_json_type(args)}', rid)
    return ToolCall(rid, tool, args)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _show(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else "?"
    return text if len(text) <= 64 else text[:61] + "..."


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _is_url(value: object, schemes: tuple[str, ...]) -> bool:
    """Whether ``value`` is a string URL of one of ``schemes``, at most 2,048 characters,
    without white space or control characters (a trailing newline included)."""
    return (
        isinstance(value, str)
        and value.startswith(schemes)
        and len(value) <= 2048
        and not any(c.isspace() or c < " " or c == "\x7f" for c in value)
    )
