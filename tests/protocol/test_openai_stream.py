"""Streamed chat turns: chunks of every imperfect shape local servers send become the calls the
model meant (or calls with a problem), never an exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from edge.protocol.openai import (
    GatewayStreamError,
    RequestedCall,
    Turn,
    TurnAccumulator,
    error_message,
    parse_data,
)


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any
) -> dict[str, Any]:
    """A chat.completion.chunk with one choice."""
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {"object": "chat.completion.chunk", "choices": [choice], **top}


def calls(*entries: dict[str, Any]) -> dict[str, Any]:
    """A chunk carrying these tool_calls deltas."""
    return chunk({"tool_calls": list(entries)})


def tc(index: int | None = None, id: str | None = None, name: str | None = None,
       args: Any = "<missing>") -> dict[str, Any]:  # fmt: skip
    """One tool_calls delta entry; only the given fields are present."""
    entry: dict[str, Any] = {}
    if index is not None:
        entry["index"] = index
    if id is not None:
        entry["id"] = id
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if args != "<missing>":
        function["arguments"] = args
    if function:
        entry["function"] = function
    return entry


def turn(*chunks: object) -> Turn:
    acc = TurnAccumulator()
    for c in chunks:
        acc.feed(c)
    return acc.finish()


def summary(t: Turn) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [(c.id, c.name, c.arguments) for c in t.calls]


def test_standard_stream() -> None:
    t = turn(
        chunk({"role": "assistant", "content": ""}, model="m1"),
        chunk({"content": "Hel"}),
        chunk({"content": "lo", "reasoning_content": "thinking"}),
        calls(tc(0, "a", "grep", "")),
        calls(tc(0, args='{"pat')), calls(tc(0, args='tern": "x"}')),
        calls(tc(1, "b", "time__now", '{}')),
        chunk(finish="tool_calls", model="m2"),
        {"choices": [], "usage": {"total_tokens": 5}},
    )  # fmt: skip
    assert t.content == "Hello"
    assert summary(t) == [("a", "grep", {"pattern": "x"}), ("b", "time__now", {})]
    assert t.finish_reason == "tool_calls"
    assert t.model == "m1"
    assert t.usage == {"total_tokens": 5}
    assert t.calls[0].raw_arguments == '{"pattern": "x"}'
    assert all(c.problem is None for c in t.calls)


def test_no_index() -> None:
    t = turn(
        calls(tc(None, "a", "one", '{"x"')), calls(tc(None, None, None, ": 1}")),
        calls(tc(None, "b", "two", "{")),  # a new id: a new call
        calls(tc(None, None, None, "}")),  # neither: continues the last one (b)
        calls(tc(None, "a", None, "")),  # a seen id: continues a (adds nothing)
        calls(tc(None, None, None, "  ")),  # neither: continues a again
    )  # fmt: skip
    assert summary(t) == [("a", "one", {"x": 1}), ("b", "two", {})]
    assert t.calls[0].raw_arguments == '{"x": 1}  '


def test_no_index_first_delta_starts_the_first_call() -> None:
    t = turn(calls(tc(name="f")), calls(tc(args='{"a": 2}')))
    assert summary(t) == [("call_0", "f", {"a": 2})]


def test_repeated_index_with_new_ids() -> None:
    t = turn(
        calls(tc(0, "a", "one", '{"n": 1}')),
        calls(tc(0, "b", "two", '{"n":')), calls(tc(0, None, None, " 2}")),
        calls(tc(0, "c", "three")),
    )  # fmt: skip
    assert summary(t) == [("a", "one", {"n": 1}), ("b", "two", {"n": 2}), ("c", "three", {})]


def test_id_sent_in_every_delta_is_one_call() -> None:
    t = turn(calls(tc(0, "a", "f", '{"k"')), calls(tc(0, "a", "f", ': "v"}')))
    assert summary(t) == [("a", "f", {"k": "v"})]


def test_no_id_is_made_up_stably() -> None:
    t = turn(calls(tc(0, None, "one", "{}")), calls(tc(1, None, "two", "{}")))
    assert [c.id for c in t.calls] == ["call_0", "call_1"]
    assert [
        c.id for c in turn(calls(tc(0, None, "one", "{}")), calls(tc(1, None, "two", "{}"))).calls
    ] == [
        "call_0",
        "call_1",
    ]


def test_made_up_id_does_not_collide_with_a_given_one() -> None:
    t = turn(calls(tc(0, None, "one")), calls(tc(1, "call_0", "two")))
    assert len({c.id for c in t.calls}) == 2


def test_id_arriving_after_the_first_delta_is_kept() -> None:
    t = turn(calls(tc(0, None, "f")), calls(tc(0, "late", None, "{}")))
    assert summary(t) == [("late", "f", {})]


def test_null_and_missing_arguments_add_nothing() -> None:
    t = turn(calls(tc(0, "a", "f", None)), calls(tc(0)), calls(tc(0, args='{"x": [1]}')))
    assert summary(t) == [("a", "f", {"x": [1]})]


def test_odd_pieces_and_name_in_its_own_delta() -> None:
    raw = '{"path": "a b", "n": 3}'
    t = turn(calls(tc(0, "a")), calls(tc(0, name="read")), *(calls(tc(0, args=ch)) for ch in raw))
    assert summary(t) == [("a", "read", {"path": "a b", "n": 3})]
    assert t.calls[0].raw_arguments == raw


def test_arguments_as_an_object() -> None:
    t = turn(calls(tc(0, "a", "f", {"q": "ü"})))
    assert summary(t) == [("a", "f", {"q": "ü"})]
    assert json.loads(t.calls[0].raw_arguments) == {"q": "ü"}
    # An object sent again in a later delta is the same object, not two.
    assert summary(turn(calls(tc(0, "a", "f", {"q": 1})), calls(tc(0, args={"q": 1})))) == [
        ("a", "f", {"q": 1})
    ]


def test_whole_arguments_sent_again_are_kept_once() -> None:
    t = turn(
        calls(tc(0, "a", "f", '{"x": ')), calls(tc(0, args="1}")), calls(tc(0, args='{"x":1}')),
        calls(tc(1, "b", "g", "{}")), calls(tc(1, args="{}")),
    )  # fmt: skip
    assert summary(t) == [("a", "f", {"x": 1}), ("b", "g", {})]
    assert t.calls[0].raw_arguments == '{"x": 1}'
    # A different complete object after a complete one is garbage, and said so.
    bad = turn(calls(tc(0, "a", "f", '{"x": 1}')), calls(tc(0, args='{"x": 2}')))
    assert bad.calls[0].problem is not None
    assert bad.calls[0].problem.startswith("arguments of f are not valid JSON: Extra data")


def test_name_repeated_is_not_doubled_but_pieces_join() -> None:
    assert summary(turn(calls(tc(0, "a", "grep", "{}")), calls(tc(0, name="grep")))) == [
        ("a", "grep", {})
    ]
    assert summary(turn(calls(tc(0, "a", "time__")), calls(tc(0, name="now")))) == [
        ("a", "time__now", {})
    ]


def test_legacy_function_call() -> None:
    t = turn(
        chunk({"function_call": {"name": "f", "arguments": '{"a"'}}),
        chunk({"function_call": {"arguments": ": 1}"}}),
        chunk(finish="function_call"),
    )
    assert summary(t) == [("call_0", "f", {"a": 1})]
    assert t.finish_reason == "function_call"


def test_empty_calls_are_dropped() -> None:
    t = turn(calls({}), calls(tc(3, args=None)), calls(tc(4, "x", "f", "{}")))
    assert summary(t) == [("x", "f", {})]
    assert turn(calls({"index": 0, "type": "function"})).calls == ()


@pytest.mark.parametrize(
    ("name", "raw", "arguments", "problem"),
    [
        ("f", "", {}, None),
        ("f", "  \n", {}, None),
        ("f", "{nope", None, "arguments of f are not valid JSON: Expecting property name"),
        ("f", "[1, 2]", None, "arguments of f must be a JSON object"),
        ("f", '"text"', None, "arguments of f must be a JSON object"),
        ("", "{}", {}, "a tool call with no function name"),
        ("", "{bad", None, "a tool call with no function name"),
    ],
)
def test_finished_call_problems(name: str, raw: str, arguments: Any, problem: str | None) -> None:
    (call,) = turn(calls(tc(0, "id1", name or None, raw))).calls
    assert call.arguments == arguments
    assert (call.problem or "").startswith(problem or "")
    assert (call.problem is None) == (problem is None)


def test_no_name_and_bad_arguments_label() -> None:
    (call,) = turn(calls(tc(0, "a", None, "{x"))).calls
    assert call.problem == "a tool call with no function name"
    acc = TurnAccumulator()
    acc.feed(calls(tc(0, "a", "", "{x")))
    assert acc.finish().calls[0].name == ""


def test_content_null_and_non_strings_ignored_and_feed_returns_new_text() -> None:
    acc = TurnAccumulator()
    assert acc.feed(chunk({"content": None})) == ""
    assert acc.feed(chunk({"content": "a"})) == "a"
    assert acc.feed(chunk({"content": ["x"]})) == ""
    assert acc.feed(chunk({"reasoning_content": "hm"})) == ""
    assert acc.feed({"choices": []}) == ""
    assert acc.feed({"usage": {"n": 1}}) == ""
    assert acc.feed(chunk({"content": "b"})) == "b"
    assert acc.finish().content == "ab"


def test_finish_reason_model_usage_rules() -> None:
    t = turn(
        chunk(finish="length", model=None), chunk(finish=None, model="first", usage={"a": 1}),
        chunk(finish="stop", model="second", usage=None), {"choices": [], "usage": {"a": 2}},
        chunk(finish=None),
    )  # fmt: skip
    assert (t.finish_reason, t.model, t.usage) == ("stop", "first", {"a": 2})
    assert turn() == Turn(content="", calls=(), finish_reason=None)


def test_only_choice_zero_is_used() -> None:
    other = {"choices": [{"index": 1, "delta": {"content": "no"}, "finish_reason": "stop"}]}
    both = {
        "choices": [
            {"index": 1, "delta": {"content": "no"}},
            {"index": 0, "delta": {"content": "yes"}},
        ]
    }
    t = turn(other, both)
    assert (t.content, t.finish_reason) == ("yes", None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "rate limited", "type": "x"}}, "rate limited"),
        ({"error": "plain text"}, "plain text"),
        ({"error": {"code": 500}}, '{"code": 500}'),
    ],
)
def test_error_chunk_raises(body: dict[str, Any], message: str) -> None:
    acc = TurnAccumulator()
    acc.feed(chunk({"content": "partial"}))
    with pytest.raises(GatewayStreamError, match="^" + message + "$"):
        acc.feed(body)
    with pytest.raises(GatewayStreamError, match=message):
        TurnAccumulator().feed_completion(body)
    assert error_message(body) == message
    assert error_message({"error": None}) is None
    assert error_message(["error"]) is None


def test_feed_completion() -> None:
    body = {
        "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me look.",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
                {"type": "function", "function": {"name": "g", "arguments": "{}"}},
                {"type": "function", "function": {"name": "h", "arguments": {"y": 2}}},
            ]}}],
        "usage": {"total_tokens": 9},
    }  # fmt: skip
    acc = TurnAccumulator()
    assert acc.feed_completion(body) == "Let me look."
    t = acc.finish()
    assert summary(t) == [("a", "f", {"x": 1}), ("call_1", "g", {}), ("call_2", "h", {"y": 2})]
    assert (t.finish_reason, t.model, t.usage) == ("tool_calls", "m", {"total_tokens": 9})
    assert TurnAccumulator().feed_completion({"choices": [{"message": None}]}) == ""


def test_assistant_message_and_entry() -> None:
    call = RequestedCall(id="a", name="f", arguments={}, problem=None, raw_arguments="")
    assert call.entry() == {
        "id": "a",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }
    t = Turn(content="", calls=(call,), finish_reason="tool_calls")
    assert t.assistant_message() == {
        "role": "assistant",
        "content": None,
        "tool_calls": [call.entry()],
    }
    assert Turn("hi", (), "stop").assistant_message() == {"role": "assistant", "content": "hi"}


def test_parse_data() -> None:
    assert parse_data("[DONE]") is None
    assert parse_data(" [DONE] ") is None
    assert parse_data('{"a": 1}') == {"a": 1}
    with pytest.raises(GatewayStreamError, match="not JSON") as info:
        parse_data("<html>" + "x" * 1000)
    assert len(str(info.value)) < 300
    with pytest.raises(GatewayStreamError):
        parse_data("[" * 100_000)


# -- properties ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)
arguments_texts = objects.map(json.dumps) | objects.map(lambda o: json.dumps(o)[:-1]) | st.just("")


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@settings(max_examples=150)
@given(st.text(max_size=30), st.lists(arguments_texts, min_size=0, max_size=3), st.data())
def test_any_split_of_arguments_and_content_gives_the_same_turn(
    content: str, args: list[str], data: st.DataObject
) -> None:
    def stream(pieces_of: Any) -> Turn:
        chunks: list[object] = [chunk({"content": p}) for p in pieces_of(content)]
        for n, raw in enumerate(args):
            chunks.append(calls(tc(n, f"id{n}", f"tool{n}", "")))
            chunks.extend(calls(tc(n, args=p)) for p in pieces_of(raw))
        return turn(*chunks)

    cuts = data.draw(st.lists(st.integers(0, 40), max_size=6))
    whole = stream(lambda text: [text])
    assert stream(lambda text: split(text, cuts)) == whole
    assert stream(lambda text: list(text)) == whole
    assert [c.raw_arguments for c in whole.calls] == args
    assert whole.content == content


def maybe(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Dicts with any of these fields, or any JSON value instead."""
    return st.fixed_dictionaries({}, optional=fields) | json_values


functions = maybe(
    name=st.sampled_from(["f", "g"]) | json_values,
    arguments=st.sampled_from(["{", "}", '"x"', "{}"]) | json_values,
)
tool_deltas = maybe(
    index=st.integers(-1, 3) | json_values,
    id=st.sampled_from(["a", "b", ""]) | json_values,
    function=functions,
)
deltas = maybe(
    content=st.text(max_size=3) | json_values,
    tool_calls=st.lists(tool_deltas, max_size=3) | json_values,
    function_call=functions,
)
choices = maybe(
    index=st.sampled_from([0, 1]) | json_values,
    delta=deltas,
    message=deltas,
    finish_reason=json_values,
)
chunk_values = maybe(
    choices=st.lists(choices, max_size=2) | json_values, model=json_values, usage=json_values
)


@settings(max_examples=300)
@given(st.lists(chunk_values, max_size=8))
def test_feed_never_raises_on_odd_chunks(chunks: list[object]) -> None:
    acc = TurnAccumulator()
    for c in chunks:
        for feed in (acc.feed, acc.feed_completion):
            try:
                feed(c)
            except GatewayStreamError:
                assert error_message(c) is not None
    t = acc.finish()
    for call in t.calls:
        assert (call.arguments is None) <= (call.problem is not None)
        assert isinstance(call.entry()["function"]["arguments"], str)
    t.assistant_message()


def test_calls_numbered_by_nobody_stay_apart() -> None:
    two = [tc(None, None, "file_read", '{"path":"a"}'), tc(None, None, "grep", '{"pattern":"x"}')]
    expected = [("call_0", "file_read", {"path": "a"}), ("call_1", "grep", {"pattern": "x"})]
    assert summary(turn(calls(*two))) == expected  # one list
    assert summary(turn(calls(two[0]), calls(two[1]))) == expected  # one chunk each
    every_zero = turn(
        calls(tc(0, None, "file_read", "")), calls(tc(0, None, None, '{"path":"a"}')),
        calls(tc(0, None, "grep", "")), calls(tc(0, None, None, '{"pattern":"x"}')),
    )  # fmt: skip
    assert summary(every_zero) == expected


def test_one_id_for_every_call_is_told_apart_by_index() -> None:
    t = turn(
        calls(tc(0, "same", "file_read", '{"path":"a"}')),
        calls(tc(1, "same", "grep", '{"pattern":"x"}')),
    )
    assert summary(t) == [("same", "file_read", {"path": "a"}), ("call_1", "grep", {"pattern": "x"})]
    assert len({c.id for c in t.calls}) == 2
