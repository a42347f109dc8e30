"""OpenAI function calling: edge tools as ``tools`` entries, calls and results both ways.

Plain functions over JSON-shaped dicts, used by the control API's batch route
and by every caller that speaks to an OpenAI-compatible model; and the chat
``chat/completions`` answer read back: ``parse_data`` for each server-sent
event's payload, ``TurnAccumulator`` to turn the streamed chunks (or a whole
completion) into one ``Turn``: its content and its ``RequestedCall`` list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final


def to_openai_tool(name: str, description: str, input_schema: Mapping[str, Any]) -> dict[str, Any]:
    """An edge tool as an OpenAI ``tools`` entry."""
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": dict(input_schema)},
    }


def from_openai_call(call: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """An OpenAI ``tool_calls`` entry → (tool name, arguments).

    Raises:
        ValueError: the entry is not a function call, or its arguments are not
            a JSON object.
    """
    function = call.get("function") if call.get("type", "function") == "function" else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise ValueError("not an OpenAI function call: expected {type: function, function: {name}}")
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments of {function['name']} are not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise ValueError(f"arguments of {function['name']} must be a JSON object")
    return function["name"], arguments


def to_openai_message(call_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """An edge result as the ``tool`` message answering OpenAI call ``call_id``."""
    content = result.get("output") if "error" not in result else f"Error: {result['error']}"
    return {"role": "tool", "tool_call_id": call_id, "content": str(content or "")}


# -- streamed chat turns ------------------------------------------------------------------------
#
# A streamed chat completion is a series of "chat.completion.chunk" objects; choice 0's
# ``delta`` carries pieces of the content and of each tool call. OpenAI gives every tool-call
# delta an ``index`` (and the ``id`` and ``name`` in the first delta of each call), but local
# servers (llama.cpp, Ollama, vLLM and their versions) send every imperfect variant: no index,
# index 0 for every call, no id, the name in every delta, arguments as an object, null
# arguments, or the whole arguments string once more at the end. ``TurnAccumulator`` follows
# the rules below so that each variant gives the calls the model meant, and anything it cannot
# make sense of becomes a call with a ``problem`` (an error result the model reads), never an
# exception:
#
# - a delta with an ``id`` seen before continues that call;
# - else with an ``index`` seen before: continues that index's call, unless it brings a new
#   ``id`` while that call has one already (then it starts a new call at that index);
# - else with a new ``index`` or a new ``id``: starts a new call;
# - else (neither): continues the call the delta before it added to, or starts the first.


@dataclass(frozen=True, slots=True)
class RequestedCall:
    """One tool call the model asked for, as accumulated from the stream."""

    id: str
    """The model's id; ``call_<n>`` (n = position in the turn) when it gave none."""
    name: str
    """The function name; ``""`` when the model gave none."""
    arguments: dict[str, Any] | None
    """The parsed arguments; None when they do not parse to a JSON object."""
    problem: str | None
    """Why the call cannot run (no name, arguments not JSON or not an object), else None."""
    raw_arguments: str
    """The arguments text as streamed (``""`` gives ``{}`` in ``arguments``)."""

    def entry(self) -> dict[str, Any]:
        """The call as an OpenAI ``tool_calls`` entry (for the assistant message)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.raw_arguments or "{}"},
        }


@dataclass(frozen=True, slots=True)
class Turn:
    """One assistant turn: its text, its tool calls, why it ended."""

    content: str
    calls: tuple[RequestedCall, ...]
    finish_reason: str | None
    model: str | None = None
    usage: dict[str, Any] | None = None

    def assistant_message(self) -> dict[str, Any]:
        """The turn as the ``assistant`` message to send back in the next request."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.calls:
            message["tool_calls"] = [call.entry() for call in self.calls]
        return message


class GatewayStreamError(ValueError):
    """The stream carried an error object ({"error": {...}}) or was not chat-completion chunks."""


#: The most characters of a bad payload quoted in a GatewayStreamError.
_QUOTE_CHARS: Final = 200


def error_message(body: object) -> str | None:
    """The message of an OpenAI-shaped error body (``{"error": {"message": ...}}``), else None.

    Also for the body of a failed HTTP response: ``error.message``, or the ``error`` value as
    text when it is not an object with a message.
    """
    if not isinstance(body, Mapping) or body.get("error") is None:
        return None
    error = body["error"]
    if isinstance(error, Mapping) and isinstance(error.get("message"), str) and error["message"]:
        return str(error["message"])
    return error if isinstance(error, str) else _json_text(error)


def parse_data(data: str) -> object | None:
    """One SSE ``data`` payload → the decoded JSON chunk, or None for ``[DONE]``.

    Raises:
        GatewayStreamError: the payload is not JSON.
    """
    if data.strip() == "[DONE]":
        return None
    try:
        chunk: object = json.loads(data)
    except (ValueError, RecursionError):
        quoted = data[:_QUOTE_CHARS] + ("…" if len(data) > _QUOTE_CHARS else "")
        raise GatewayStreamError(f"the gateway sent a chunk that is not JSON: {quoted!r}") from None
    return chunk


@dataclass(slots=True)
class _Call:
    """A tool call being accumulated."""

    id: str | None = None
    index: int | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


#: Most characters of text (and of one call's arguments) a turn may hold: a model that
#: loops forever ends the turn with an error instead of filling the memory.
MAX_TURN_CHARS: Final = 4 * 1024 * 1024


class TurnAccumulator:
    """Chat-completion chunks (streamed, "chat.completion.chunk") → one Turn.

    Never raises on odd shapes of tool calls (see the rules above); raises
    GatewayStreamError for a turn past ``MAX_TURN_CHARS`` and for an ``{"error": ...}``
    chunk (message from ``error.message``, or the error as text). Chunks that are not JSON
    objects, choices other than index 0 and fields of the wrong type are ignored.
    """

    def __init__(self) -> None:
        self._content: list[str] = []
        self._size = 0
        self._calls: list[_Call] = []
        self._by_id: dict[str, _Call] = {}
        self._by_index: dict[int, _Call] = {}
        self._last: _Call | None = None  # the call the last tool-call delta went to
        self._finish_reason: str | None = None
        self._model: str | None = None
        self._usage: dict[str, Any] | None = None

    def feed(self, chunk: object) -> str:
        """Take one streamed chunk; its new content text (``""`` if none).

        Raises:
            GatewayStreamError: the chunk is an error object.
        """
        choice = self._top(chunk)
        if choice is None:
            return ""
        delta = choice.get("delta")
        return self._message(delta) if isinstance(delta, Mapping) else ""

    def feed_completion(self, body: object) -> str:
        """Take a whole non-streamed ``chat.completion`` response; its content text.

        Raises:
            GatewayStreamError: the body is an error object.
        """
        choice = self._top(body)
        if choice is None:
            return ""
        message = choice.get("message")
        if not isinstance(message, Mapping):
            return ""
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            # Whole calls: each entry is one call, whatever its index and id say.
            calls = [
                {**entry, "index": len(self._calls) + position}
                if isinstance(entry, Mapping) else entry
                for position, entry in enumerate(calls)
            ]  # fmt: skip
            message = {**message, "tool_calls": calls}
        return self._message(message)

    def finish(self) -> Turn:
        """The turn so far, as one Turn (calls with nothing in them are left out)."""
        calls: list[RequestedCall] = []
        given = {call.id for call in self._calls if call.id is not None}
        kept = [call for call in self._calls if call.id or call.name or any(call.arguments)]
        for position, call in enumerate(kept):
            call_id = call.id
            if call_id is None:
                call_id = f"call_{position}"
                while call_id in given:
                    call_id += "_"
                given.add(call_id)
            calls.append(_requested(call_id, call.name, "".join(call.arguments)))
        return Turn(
            content="".join(self._content),
            calls=tuple(calls),
            finish_reason=self._finish_reason,
            model=self._model,
            usage=self._usage,
        )

    def _top(self, chunk: object) -> Mapping[str, Any] | None:
        """Record a chunk's model, usage and finish reason; its choice 0, if any."""
        if not isinstance(chunk, Mapping):
            return None
        message = error_message(chunk)
        if message is not None:
            raise GatewayStreamError(message)
        model = chunk.get("model")
        if self._model is None and isinstance(model, str) and model:
            self._model = model
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage = dict(usage)
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return None
        for choice in choices:
            if isinstance(choice, Mapping) and choice.get("index", 0) == 0:
                reason = choice.get("finish_reason")
                if isinstance(reason, str) and reason:
                    self._finish_reason = reason
                return choice
        return None

    def _message(self, delta: Mapping[str, Any]) -> str:
        """Take a delta (or a whole message): content and tool calls."""
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, entry in enumerate(calls):
                if isinstance(entry, Mapping):
                    # A second entry of one list with neither index nor id is another call.
                    self._tool_delta(entry, fresh=position > 0)
        legacy = delta.get("function_call")
        if isinstance(legacy, Mapping):
            self._tool_delta({"function": legacy})
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._grow(len(content))
            self._content.append(content)
            return content
        return ""

    def _grow(self, size: int) -> None:
        self._size += size
        if self._size > MAX_TURN_CHARS:
            raise GatewayStreamError(
                f"the answer is longer than {MAX_TURN_CHARS} characters: stopped there"
            )

    def _tool_delta(self, entry: Mapping[str, Any], *, fresh: bool = False) -> None:
        """Add one ``tool_calls`` delta to the call it belongs to (``fresh``: a later entry
        of the same list, which continues no earlier call unless its index or id says so)."""
        call_id = entry.get("id") if isinstance(entry.get("id"), str) and entry["id"] else None
        index = entry.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            index = None
        function = entry.get("function")
        function = function if isinstance(function, Mapping) else {}
        name = function.get("name")
        name = name if isinstance(name, str) and name else None
        arguments = function.get("arguments")
        piece = None
        if arguments is not None:
            piece = arguments if isinstance(arguments, str) else _json_text(arguments)
        if fresh and call_id is None and index is None:
            call = self._new(None, None)
        else:
            call = self._find(call_id, index)
        if (
            call_id is None
            and name is not None
            and call.name
            and any(a.strip() for a in call.arguments)
            and _object("".join(call.arguments)) is not None
            and (name != call.name or (piece and not _same_object_again(call.arguments, piece)))
        ):
            # A name for a call that is already whole (name and arguments): the next call,
            # from a server that numbers none of them, or numbers each 0.
            call = self._new(None, index)
        self._last = call
        if name is not None and name != call.name:
            call.name += name
        if piece and not _same_object_again(call.arguments, piece):
            self._grow(len(piece))
            call.arguments.append(piece)

    def _find(self, call_id: str | None, index: int | None) -> _Call:
        """The call a delta with this id and index continues, or a new one (see the rules)."""
        if call_id is not None and call_id in self._by_id:
            call = self._by_id[call_id]
            if index is not None and call.index is None:
                call.index = index
                self._by_index.setdefault(index, call)
            elif index is not None and call.index != index:
                # One id for every call, told apart by their indexes: another call (the
                # repeated id is dropped; the call gets one of its own).
                return self._new(None, index)
            return call
        if index is not None and index in self._by_index:
            call = self._by_index[index]
            if call_id is None:
                return call
            if call.id is None:
                call.id = call_id
                self._by_id[call_id] = call
                return call
        elif index is None and call_id is None and self._last is not None:
            return self._last
        return self._new(call_id, index)

    def _new(self, call_id: str | None, index: int | None) -> _Call:
        """A new call; later deltas with ``index`` continue it, not an earlier one."""
        call = _Call(id=call_id, index=index)
        self._calls.append(call)
        if call_id is not None:
            self._by_id[call_id] = call
        if index is not None:
            self._by_index[index] = call
        return call


def _json_text(value: object) -> str:
    """A JSON value as compact text (``str()`` for anything json cannot write)."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return str(value)


def _object(text: str) -> dict[str, Any] | None:
    """The JSON object ``text`` holds, or None."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _same_object_again(pieces: list[str], piece: str) -> bool:
    """Whether ``piece`` re-sends the whole arguments already accumulated in ``pieces``.

    Some servers end a call with its complete arguments string once more; it is
    recognised only when both the new piece and the text so far are complete JSON objects
    and equal (checked only when the piece looks like a whole object, to stay linear).
    """
    stripped = piece.strip()
    if not (pieces and stripped.startswith("{") and stripped.endswith("}")):
        return False
    again = _object(piece)
    return again is not None and again == _object("".join(pieces))


def _requested(call_id: str, name: str, raw: str) -> RequestedCall:
    """A finished call, its arguments parsed and its problem named."""
    label = name or "the call"
    arguments: dict[str, Any] | None = None
    problem: str | None = None
    if not raw.strip():
        arguments = {}
    else:
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            problem = f"arguments of {label} are not valid JSON: {exc}"
        else:
            if isinstance(value, dict):
                arguments = value
            else:
                problem = f"arguments of {label} must be a JSON object"
    if not name:
        problem = "a tool call with no function name"
    return RequestedCall(
        id=call_id, name=name, arguments=arguments, problem=problem, raw_arguments=raw
    )
