"""The agents' protocol core: task states, events, frames; plain code, synchronous + hypothesis."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from edge.protocol import Request, parse_frame
from edge.protocol.a2a import (
    TERMINAL,
    AgentRequest,
    EventOrder,
    Order,
    TaskEvent,
    TaskState,
    can_move,
    cancel_frame,
    event_frame,
    next_event,
    parse_cancel,
    parse_peers,
    parse_request,
    parse_resume,
    request_frame,
    resume_frame,
)

states = st.sampled_from(list(TaskState))
numbers = st.none() | st.floats(allow_nan=False, allow_infinity=False, width=32)


def test_the_state_machine() -> None:
    s = TaskState
    assert can_move(s.SUBMITTED, s.WORKING)
    assert all(can_move(s.SUBMITTED, end) for end in TERMINAL)
    assert all(can_move(s.WORKING, end) for end in TERMINAL)
    assert not can_move(s.WORKING, s.SUBMITTED)
    assert not can_move(s.SUBMITTED, s.SUBMITTED)
    assert not can_move(s.WORKING, s.WORKING)  # progress is an event, not a move
    assert {s.COMPLETED, s.FAILED, s.CANCELED, s.REJECTED} == TERMINAL


@given(old=states, new=states)
def test_terminal_states_are_final(old: TaskState, new: TaskState) -> None:
    if old in TERMINAL:
        assert not can_move(old, new)
    if new is TaskState.SUBMITTED:
        assert not can_move(old, new)


@given(st.lists(states, max_size=12))
def test_next_event_numbers_from_one_and_refuses_bad_moves(path: list[TaskState]) -> None:
    last: TaskEvent | None = None
    for state in path:
        try:
            event = next_event(last, "t", state, 1.0)
        except ValueError:
            if last is None:
                assert state is TaskState.WORKING
            else:
                assert last.final or state is TaskState.SUBMITTED
            continue
        assert event.seq == (1 if last is None else last.seq + 1)
        last = event


def test_a_result_comes_with_the_final_event_only() -> None:
    first = next_event(None, "t", TaskState.SUBMITTED, 1.0)
    with pytest.raises(ValueError, match="final event only"):
        next_event(first, "t", TaskState.WORKING, 2.0, result={"output": "x"})
    working = next_event(first, "t", TaskState.WORKING, 2.0)
    progress = next_event(working, "t", TaskState.WORKING, 2.5, progress=1, total=3)
    assert progress.seq == 3
    done = next_event(progress, "t", TaskState.COMPLETED, 3.0, result={"output": "x"})
    assert done.final
    assert done.seq == 4
    with pytest.raises(ValueError, match="cannot move"):
        next_event(done, "t", TaskState.FAILED, 4.0)


@given(
    seq=st.integers(min_value=1, max_value=2**40),
    state=states,
    at=st.floats(min_value=0, max_value=4e9),
    message=st.none() | st.text(max_size=50),
    progress=numbers,
    total=numbers,
    output=st.none() | st.text(max_size=20),
)
def test_events_round_trip_through_json(
    seq: int,
    state: TaskState,
    at: float,
    message: str | None,
    progress: float | None,
    total: float | None,
    output: str | None,
) -> None:
    result = {"output": output} if output is not None and state in TERMINAL else None
    event = TaskEvent("task-1", seq, state, at, message, progress, total, result)
    wire = json.loads(json.dumps(event_frame(event)))
    assert wire["method"] == "agent_event"
    assert TaskEvent.from_json(wire["params"]) == event


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ("nope", "object"),
        ({"seq": 1, "state": "working", "at": 1}, "taskId"),
        ({"taskId": "t", "seq": 0, "state": "working", "at": 1}, "seq"),
        ({"taskId": "t", "seq": True, "state": "working", "at": 1}, "seq"),
        ({"taskId": "t", "seq": 1, "state": "sleeping", "at": 1}, "state"),
        ({"taskId": "t", "seq": 1, "state": "working"}, "at"),
        ({"taskId": "t", "seq": 1, "state": "working", "at": 1, "message": 5}, "message"),
        ({"taskId": "t", "seq": 1, "state": "working", "at": 1, "progress": "x"}, "progress"),
        ({"taskId": "t", "seq": 1, "state": "working", "at": 1, "result": {}}, "result"),
        ({"taskId": "t" * 300, "seq": 1, "state": "working", "at": 1}, "taskId"),
    ],
)
def test_bad_events_say_which_field(params: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TaskEvent.from_json(params)


@given(st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=8)))
def test_parsers_raise_value_error_or_succeed(params: dict[str, object]) -> None:
    for parse in (parse_request, parse_cancel, parse_resume, parse_peers, TaskEvent.from_json):
        try:
            parse(params)
        except ValueError:
            pass


def test_requests_round_trip_and_parse_as_tunnel_frames() -> None:
    request = AgentRequest("t-1", "terminal", {"command": "ls"}, sender="edge-a", to="edge-b",
                           deadline=123.5, context_id="c")  # fmt: skip
    frame = request_frame(request, "agent-request:t-1")
    parsed = parse_frame(json.dumps(frame))
    assert isinstance(parsed, Request)
    assert parsed.method == "agent_request"
    assert parsed.id == "agent-request:t-1"
    assert parse_request(parsed.params) == request
    bare = parse_request({"taskId": "t", "skill": "grep"})
    assert bare == AgentRequest("t", "grep", {})
    with pytest.raises(ValueError, match="args"):
        parse_request({"taskId": "t", "skill": "grep", "args": [1]})
    with pytest.raises(ValueError, match="deadline"):
        parse_request({"taskId": "t", "skill": "grep", "deadline": "soon"})


def test_cancel_resume_and_peers() -> None:
    assert parse_cancel(cancel_frame("t", "why")["params"]) == ("t", "why")
    assert parse_cancel({"taskId": "t"}) == ("t", None)
    assert parse_resume(resume_frame("t", 4)["params"]) == ("t", 4)
    with pytest.raises(ValueError, match="after"):
        parse_resume({"taskId": "t", "after": -1})
    peers = parse_peers(
        {"peers": [{"id": "a", "name": "box", "hostname": "h", "skills": ["x", 3]}, {"id": 5}, 7,
                   {"id": "b"}]}
    )  # fmt: skip
    assert peers == [
        {"id": "a", "name": "box", "hostname": "h", "skills": ["x"]},
        {"id": "b", "name": "b", "hostname": None, "skills": []},
    ]
    with pytest.raises(ValueError, match="peers"):
        parse_peers({})


@given(st.lists(st.integers(min_value=1, max_value=8), max_size=40))
def test_event_order_takes_each_seq_once_in_order(arrivals: list[int]) -> None:
    order = EventOrder()
    taken: list[int] = []
    for seq in arrivals:
        verdict = order.accept(seq)
        if verdict is Order.NEW:
            taken.append(seq)
        elif verdict is Order.DUPLICATE:
            assert seq <= order.last
        else:
            assert seq > order.last + 1
    assert taken == list(range(1, len(taken) + 1))
    assert order.last == len(taken)


def test_a_request_carries_its_hops() -> None:
    from edge.protocol.a2a import AgentRequest, parse_request

    request = AgentRequest("t", "grep", {}, to="edge-b", hops=2)
    assert request.params()["hops"] == 2
    assert parse_request(request.params()).hops == 2
    assert "hops" not in AgentRequest("t", "grep", {}).params()
    assert parse_request({"taskId": "t", "skill": "grep"}).hops == 0
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match='"hops" must be an integer'):
            parse_request({"taskId": "t", "skill": "grep", "hops": bad})
