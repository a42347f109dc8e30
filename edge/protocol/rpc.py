"""The plugin-runner RPC: length-prefixed msgpack envelopes, both ways, as plain code.

A frame is a 4-byte big-endian length, then that many bytes of one msgpack map,
the *envelope*::

    {"v": 1,                      protocol version (PROTOCOL)
     "id": 7,                     request id; a response carries its request's id
     "kind": "request",           "request" | "response" | "event"
     "method": "call",            what a request or event is about
     "plugin": "weather",         which plugin it concerns (None: the runner)
     "deadline": 12345.6,         a request's deadline on CLOCK_MONOTONIC (None: none)
     "payload": {...},            the arguments, the result or the event's data
     "error": None}               a failed response: {"code": "...", "message": "..."}

``FrameDecoder`` checks the length from the prefix before it buffers the body
(``max_size``), limits nesting (``max_depth``) and the number of values
(``MAX_VALUES``), and raises ``RpcProtocolError``
for anything it cannot turn into an ``Envelope``: whoever reads the stream closes
that connection with the reason and nothing else.

The conversation (H: host, the daemon; R: runner; → request, ⇢ event)::

    R → H  hello      {token, sdk, pid}        within HELLO_TIMEOUT; token compared in
                                               constant time, sdk inside the host's range
    H → R  (response) {protocol, host, plugins: {id: {config, capabilities}}}
    R → H  register   {tools: [{name, description, input_schema, timeout}], hooks: [...]}
                      (one per plugin, ``plugin`` set), or
    R ⇢ H  failed     {message}: this plugin did not load (the runner serves the others)
    R → H  ready      {}
    H → R  call       {tool, args, call_id}     → the tool's result (an edge result dict)
    H ⇢ R  cancel     {id}                      cancel the request ``id`` (a call)
    R ⇢ H  progress   {id, done, total, message}
    H → R  ping       {}                        → {} (health)
    H → R  config     {config}                  the plugin's new config → {}
    H ⇢ R  hook       {event}                   an event the plugin registered a hook for
    H → R  prepare    {}                        take no new calls → {}
    H → R  shutdown   {}                        → {}, then the runner exits
    R ⇢ H  log        {level, message}          capability "log"
    R → H  config.get {}                        capability "config" → the plugin's config
    R → H  tools.call {tool, args}              capability "tools.call" → an edge result
    R → H  publish    {type, data}              capability "events" → {}

A refused or failed request is answered with ``error`` set; its ``code`` is one
of ``ERROR_CODES``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NoReturn

import msgpack

__all__ = [
    "ERROR_CODES",
    "MAX_DEPTH",
    "MAX_FRAME",
    "MAX_VALUES",
    "PROTOCOL",
    "Envelope",
    "FrameDecoder",
    "RpcError",
    "RpcProtocolError",
    "encode_frame",
    "event",
    "request",
    "response",
]

#: The envelope version this edge speaks.
PROTOCOL: Final = 1
#: Largest envelope body (bytes): a tool result is at most 50,000 characters.
MAX_FRAME: Final = 4 * 1024 * 1024
#: Deepest nesting of maps and arrays inside an envelope.
MAX_DEPTH: Final = 64
#: Most values one envelope may hold (checked while decoding, so a frame of a
#: million empty maps costs no more than one of this many).
MAX_VALUES: Final = 100_000
#: How long the prefix is (bytes).
PREFIX: Final = struct.Struct(">I")

Kind = Literal["request", "response", "event"]
KINDS: Final = frozenset({"request", "response", "event"})

#: The ``code`` of an error response, and what it means.
ERROR_CODES: Final[Mapping[str, str]] = {
    "bad_request": "the request is malformed (missing or wrong fields)",
    "unknown_method": "no such method",
    "unknown_tool": "the plugin has no such tool",
    "not_declared": "the plugin's manifest does not declare that capability",
    "tool_error": "the tool raised: the message is what the caller reads",
    "cancelled": "the request was cancelled",
    "timeout": "the request's deadline passed",
    "busy": "the runner is preparing to stop and takes no new calls",
    "internal": "an unexpected error (a bug)",
}


class RpcProtocolError(ValueError):
    """A frame that breaks the protocol: the connection it came on is closed."""


@dataclass(frozen=True, slots=True)
class RpcError:
    """A failed response's error: one of ``ERROR_CODES`` and a message for people."""

    code: str
    message: str

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Envelope:
    """One frame's content (see the module docstring)."""

    kind: Kind
    id: int
    method: str = ""
    plugin: str | None = None
    deadline: float | None = None
    payload: Any = None
    error: RpcError | None = None
    v: int = field(default=PROTOCOL)

    def to_wire(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "id": self.id,
            "kind": self.kind,
            "method": self.method,
            "plugin": self.plugin,
            "deadline": self.deadline,
            "payload": self.payload,
            "error": None if self.error is None else self.error.to_wire(),
        }


def request(
    id: int,
    method: str,
    payload: Any = None,
    *,
    plugin: str | None = None,
    deadline: float | None = None,
) -> Envelope:
    return Envelope("request", id, method, plugin, deadline, payload)


def response(to: Envelope, payload: Any = None, *, error: RpcError | None = None) -> Envelope:
    """The response to the request ``to``: ``payload``, or ``error`` when it failed."""
    return Envelope("response", to.id, to.method, to.plugin, None, payload, error)


def event(method: str, payload: Any = None, *, plugin: str | None = None) -> Envelope:
    return Envelope("event", 0, method, plugin, None, payload)


def encode_frame(envelope: Envelope, max_size: int = MAX_FRAME) -> bytes:
    """The prefix and the msgpack body of ``envelope``.

    Raises:
        RpcProtocolError: the body is larger than ``max_size``, or holds a value
            msgpack cannot encode.
    """
    try:
        body: bytes = msgpack.packb(envelope.to_wire(), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RpcProtocolError(f"cannot encode the {envelope.method!r} envelope: {exc}") from None
    if len(body) > max_size:
        raise RpcProtocolError(
            f"the {envelope.method!r} envelope is {len(body)} bytes, more than {max_size}"
        )
    return PREFIX.pack(len(body)) + body


class FrameDecoder:
    """Bytes in, envelopes out: ``feed`` then ``envelopes``; no I/O.

    Raises ``RpcProtocolError`` (from either method) for a frame announced larger
    than ``max_size``, a body that is not msgpack, nested deeper than
    ``max_depth``, or not an envelope. After an error the decoder is unusable.
    """

    def __init__(self, max_size: int = MAX_FRAME, max_depth: int = MAX_DEPTH) -> None:
        self.max_size = max_size
        self.max_depth = max_depth
        self._buffer = bytearray()
        self._broken: str | None = None

    def wanted(self) -> int:
        """Bytes still missing for the next frame (at least 1)."""
        if len(self._buffer) < PREFIX.size:
            return PREFIX.size - len(self._buffer)
        size: int = PREFIX.unpack_from(self._buffer)[0]
        return max(1, PREFIX.size + size - len(self._buffer))

    def feed(self, data: bytes | bytearray) -> None:
        if self._broken is not None:
            raise RpcProtocolError(self._broken)
        self._buffer += data
        self._check_prefix()

    def _check_prefix(self) -> None:
        if len(self._buffer) >= PREFIX.size:
            (size,) = PREFIX.unpack_from(self._buffer)
            if size > self.max_size:
                self._fail(
                    f"a frame announces {size} bytes, more than the limit of {self.max_size}"
                )

    def _fail(self, message: str) -> NoReturn:
        self._broken = message
        self._buffer.clear()
        raise RpcProtocolError(message)

    def next_body(self) -> bytes | None:
        """The next whole frame's body, undecoded (``decode_body`` it, or ``fail``), or
        ``None`` until more bytes come."""
        if self._broken is not None:
            raise RpcProtocolError(self._broken)
        if len(self._buffer) < PREFIX.size:
            return None
        (size,) = PREFIX.unpack_from(self._buffer)
        end = PREFIX.size + size
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[PREFIX.size : end])
        del self._buffer[:end]
        self._check_prefix()
        return body

    def fail(self, message: str) -> NoReturn:
        """Mark the stream broken (a body did not decode): every later call raises."""
        self._fail(message)

    def next(self) -> Envelope | None:
        """The next whole envelope, or ``None`` until more bytes come."""
        body = self.next_body()
        if body is None:
            return None
        try:
            return decode_body(body, self.max_depth)
        except RpcProtocolError as exc:
            self._fail(str(exc))

    def envelopes(self) -> list[Envelope]:
        """Every whole envelope buffered so far."""
        out = []
        while (envelope := self.next()) is not None:
            out.append(envelope)
        return out


def decode_body(body: bytes, max_depth: int = MAX_DEPTH) -> Envelope:
    """One envelope from its msgpack body.

    Raises:
        RpcProtocolError: not msgpack, too deep, or not a well-formed envelope.
    """
    try:
        data = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_array_len=MAX_VALUES,
            max_map_len=MAX_VALUES,
        )
    except msgpack.ExtraData:
        raise RpcProtocolError("a frame holds more than one msgpack value") from None
    except ValueError as exc:
        if "exceeds max_" in str(exc):  # msgpack's own count, before building anything
            raise RpcProtocolError(f"a frame holds more than {MAX_VALUES} values") from None
        raise RpcProtocolError(f"a frame is not valid msgpack: {exc}") from None
    except (TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise RpcProtocolError(f"a frame is not valid msgpack: {exc}") from None
    _check_shape(data, max_depth)
    return _envelope(data)


def _check_shape(value: Any, max_depth: int) -> None:
    """Refuse ``value`` if it nests maps and arrays deeper than ``max_depth`` or holds
    more than ``MAX_VALUES`` values in all."""
    if not isinstance(value, dict | list):
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    count = 0
    while stack:
        item, level = stack.pop()
        if level > max_depth:
            raise RpcProtocolError(f"a frame nests deeper than {max_depth} levels")
        children = item.values() if isinstance(item, dict) else item
        count += len(children)
        if count > MAX_VALUES:
            raise RpcProtocolError(f"a frame holds more than {MAX_VALUES} values")
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))


def _envelope(data: Any) -> Envelope:
    if not isinstance(data, dict):
        raise RpcProtocolError(f"an envelope must be a map, not {type(data).__name__}")
    v = data.get("v")
    if v != PROTOCOL:
        raise RpcProtocolError(f"envelope version {v!r}; this edge speaks version {PROTOCOL}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise RpcProtocolError(f"envelope kind {kind!r} is none of request, response, event")
    id_ = data.get("id")
    if not isinstance(id_, int) or isinstance(id_, bool) or not 0 <= id_ < 2**63:
        raise RpcProtocolError(f"envelope id {id_!r} is not a non-negative integer")
    method = data.get("method", "")
    if not isinstance(method, str):
        raise RpcProtocolError("envelope method must be a string")
    if kind != "response" and not method:
        raise RpcProtocolError(f"a {kind} needs a method")
    plugin = data.get("plugin")
    if plugin is not None and not isinstance(plugin, str):
        raise RpcProtocolError("envelope plugin must be a string or nil")
    deadline = data.get("deadline")
    if deadline is not None and (
        isinstance(deadline, bool) or not isinstance(deadline, int | float)
    ):
        raise RpcProtocolError("envelope deadline must be a number or nil")
    error = data.get("error")
    rpc_error = None
    if error is not None:
        if (
            not isinstance(error, dict)
            or not isinstance(error.get("code"), str)
            or not isinstance(error.get("message"), str)
        ):
            raise RpcProtocolError("envelope error must be a map with string code and message")
        rpc_error = RpcError(error["code"], error["message"])
    return Envelope(
        kind, id_, method, plugin, None if deadline is None else float(deadline),
        data.get("payload"), rpc_error, v,
    )  # fmt: skip
