"""The local A2A endpoint's plain code (requests, tasks as A2A JSON, the card) and its token."""

from __future__ import annotations

import json
import math
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from edge.agents import a2a
from edge.agents.a2a import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PUSH_NOTIFICATION_NOT_SUPPORTED,
    VERSION_NOT_SUPPORTED,
    RpcCall,
    RpcError,
    RpcFailure,
    TaskQuery,
    Work,
    agent_card,
    method_problem,
    parse_call,
    parse_list,
    parse_send,
    resolve_agent,
    stream_updates,
    task_brief,
    task_json,
    version_problem,
)
from edge.agents.tasks import AgentTask
from edge.agents.token import bearer_matches, load_token, read_token, token_file
from edge.protocol import encode
from edge.protocol.a2a import TaskEvent, TaskState

T0 = 1_800_000_000.0


def make_task(state: TaskState = TaskState.WORKING, **fields: Any) -> AgentTask:
    events = fields.pop("events", None)
    task = AgentTask(
        id=fields.pop("id", "task-1"),
        context_id=fields.pop("context_id", "ctx-1"),
        skill=fields.pop("skill", "file_read"),
        args=fields.pop("args", {"path": "a.txt"}),
        origin="a2a",
        agent=fields.pop("agent", None),
        state=state,
        created_at=T0,
        updated_at=fields.pop("updated_at", T0 + 2),
        deadline=fields.pop("deadline", None),
        result=fields.pop("result", None),
        reason=fields.pop("reason", None),
    )
    assert not fields, fields
    task.events = events if events is not None else [TaskEvent(task.id, 1, TaskState.SUBMITTED, T0)]
    return task


def send_params(*parts: Any, **message: Any) -> dict[str, Any]:
    return {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": list(parts), **message}}


# --- JSON-RPC ------------------------------------------------------------------------


def call_of(body: Any) -> RpcCall | RpcFailure:
    return parse_call(json.dumps(body).encode())


def test_a_well_formed_call_parses() -> None:
    call = call_of({"jsonrpc": "2.0", "id": 7, "method": "GetTask", "params": {"id": "t"}})
    assert call == RpcCall(7, "GetTask", {"id": "t"})
    assert call_of({"jsonrpc": "2.0", "id": "x", "method": "ListTasks"}) == RpcCall(
        "x", "ListTasks", {}
    )


@pytest.mark.parametrize(
    ("body", "code", "request_id"),
    [
        (b"{not json", PARSE_ERROR, None),
        (b"[]", INVALID_REQUEST, None),
        (b'"text"', INVALID_REQUEST, None),
        (b'{"jsonrpc": "2.0", "id": true, "method": "GetTask"}', INVALID_REQUEST, None),
        (b'{"jsonrpc": "1.0", "id": 3, "method": "GetTask"}', INVALID_REQUEST, 3),
        (b'{"jsonrpc": "2.0", "id": 3}', INVALID_REQUEST, 3),
        (b'{"jsonrpc": "2.0", "id": 3, "method": "GetTask", "params": [1]}', INVALID_PARAMS, 3),
    ],
)
def test_a_bad_call_is_a_failure_with_its_code(body: bytes, code: int, request_id: Any) -> None:
    failure = parse_call(body)
    assert isinstance(failure, RpcFailure)
    assert (failure.error.code, failure.id) == (code, request_id)
    answer = failure.to_json()
    assert answer["jsonrpc"] == "2.0"
    assert answer["id"] == request_id
    assert answer["error"]["code"] == code
    assert answer["error"]["data"][0]["@type"] == a2a.ERROR_INFO_TYPE


@given(st.binary(max_size=200))
def test_parse_call_never_raises(body: bytes) -> None:
    assert isinstance(parse_call(body), RpcCall | RpcFailure)


def test_methods_edge_does_not_serve_say_why() -> None:
    assert method_problem("SendMessage") is None
    push = method_problem("CreateTaskPushNotificationConfig")
    assert push is not None
    assert push.code == PUSH_NOTIFICATION_NOT_SUPPORTED
    assert "push notifications are not supported" in push.message
    unknown = method_problem("message/send")
    assert unknown is not None
    assert unknown.code == METHOD_NOT_FOUND
    assert "SendMessage" in unknown.message
    card = method_problem("GetExtendedAgentCard")
    assert card is not None
    assert card.code == a2a.EXTENDED_CARD_NOT_CONFIGURED


@pytest.mark.parametrize("header", [None, "", "1.0", "1.0.2", " 1 "])
def test_version_1_0_or_none_is_served(header: str | None) -> None:
    assert version_problem(header) is None


@pytest.mark.parametrize("header", ["0.3", "2.0", "1.1", "latest"])
def test_other_versions_are_refused(header: str) -> None:
    problem = version_problem(header)
    assert problem is not None
    assert problem.code == VERSION_NOT_SUPPORTED
    assert "1.0" in problem.message


# --- what a message names ---------------------------------------------------------------


def test_a_data_part_names_the_tool() -> None:
    work = parse_send(send_params({"text": "please"}, {"data": {"tool": "grep", "args": {"q": 1}}}))
    assert work == Work("grep", {"q": 1})
    work = parse_send(
        {
            **send_params({"data": {"skill": "grep", "agent": "box", "timeout": 5}}, contextId="c"),
            "configuration": {"returnImmediately": True, "historyLength": 2},
        }
    )
    assert work == Work(
        "grep",
        {},
        agent="box",
        timeout=5.0,
        context_id="c",
        return_immediately=True,
        history_length=2,
    )


def test_message_metadata_names_the_tool_too() -> None:
    work = parse_send(send_params({"text": "x"}, metadata={"tool": "terminal", "agent": "local"}))
    assert work == Work("terminal", {})


def test_a_message_naming_no_tool_is_refused_saying_how() -> None:
    error = parse_send(send_params({"text": "read a.txt for me"}))
    assert isinstance(error, RpcError)
    assert error.code == INVALID_PARAMS
    assert '{"tool": NAME, "args": {...}}' in error.message


@pytest.mark.parametrize(
    ("named", "words"),
    [
        ({"tool": ""}, '"tool" must be'),
        ({"tool": "a", "skill": "b"}, "different tools"),
        ({"tool": "a", "args": [1]}, '"args" of a'),
        ({"tool": "a", "agent": 3}, '"agent"'),
        ({"tool": "a", "timeout": -1}, '"timeout"'),
        ({"tool": "a", "timeout": True}, '"timeout"'),
    ],
)
def test_badly_named_work_is_refused(named: dict[str, Any], words: str) -> None:
    error = parse_send(send_params({"data": named}))
    assert isinstance(error, RpcError)
    assert error.code == INVALID_PARAMS
    assert words in error.message


def test_two_tools_in_one_message_are_refused() -> None:
    error = parse_send(send_params({"data": {"tool": "a"}}, {"data": {"tool": "b"}}))
    assert isinstance(error, RpcError)
    assert "more than one tool" in error.message


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=10,
        ),
    )
)
def test_parse_send_never_raises(params: dict[str, Any]) -> None:
    assert isinstance(parse_send(params), Work | RpcError)


def test_an_agent_is_found_by_id_or_by_one_name() -> None:
    peers = [
        {"id": "a-1", "name": "build", "hostname": "box1"},
        {"id": "a-2", "name": "twin", "hostname": "box2"},
        {"id": "a-3", "name": "twin", "hostname": "box3"},
    ]
    assert resolve_agent("a-2", peers) == "a-2"
    assert resolve_agent("build", peers) == "a-1"
    assert resolve_agent("box3", peers) == "a-3"

    two = resolve_agent("twin", peers)
    assert isinstance(two, RpcError)
    assert two.code == INVALID_PARAMS
    assert "a-2, a-3" in two.message
    assert "give its id" in two.message


def test_an_agent_the_cloud_did_not_name_is_refused_at_once() -> None:
    peers = [{"id": "a-1", "name": "build", "hostname": "box1"}]
    unknown = resolve_agent("nobody", peers)
    assert isinstance(unknown, RpcError)
    assert unknown.code == INVALID_PARAMS
    assert unknown.message == "no agent 'nobody' is known: the cloud names these: build (a-1)"
    alone = resolve_agent("nobody", [])
    assert isinstance(alone, RpcError)
    assert alone.code == INVALID_PARAMS
    assert "no agent 'nobody' is known" in alone.message
    assert "the tunnel is not connected" in alone.message
    many = [{"id": f"a-{i}", "name": f"n{i}"} for i in range(15)]
    listed = resolve_agent("nobody", many)
    assert isinstance(listed, RpcError)
    assert "n9 (a-9), ..." in listed.message
    assert "a-10" not in listed.message


def test_a_task_for_a_remote_agent_always_has_a_deadline() -> None:
    from edge.agents import relay

    # The bounds of agent_ask, which the pure code keeps without importing trio.
    assert a2a.REMOTE_TIMEOUT == relay.ASK_TIMEOUT
    assert a2a.MAX_REMOTE_TIMEOUT == relay.MAX_ASK_TIMEOUT
    remote = parse_send(send_params({"data": {"tool": "file_read", "agent": "build"}}))
    assert isinstance(remote, Work)
    assert remote.timeout == a2a.REMOTE_TIMEOUT
    given = parse_send(send_params({"data": {"tool": "t", "agent": "build", "timeout": 5}}))
    assert isinstance(given, Work)
    assert given.timeout == 5.0
    local = parse_send(send_params({"data": {"tool": "file_read", "agent": "local"}}))
    assert isinstance(local, Work)
    assert local.timeout is None
    assert local.agent is None
    too_long = parse_send(send_params({"data": {"tool": "t", "agent": "build", "timeout": 3601}}))
    assert isinstance(too_long, RpcError)
    assert too_long.code == INVALID_PARAMS
    assert "at most 3600 for a remote agent" in too_long.message
    here = parse_send(send_params({"data": {"tool": "t", "timeout": 3601}}))
    assert isinstance(here, Work)
    assert here.timeout == 3601.0


# --- tasks as A2A JSON ------------------------------------------------------------------


def test_a_completed_task_has_its_output_as_an_artifact() -> None:
    result = {"output": "hello\n", "truncated": False}
    task = make_task(TaskState.COMPLETED, result=result)
    shown = task_json(task)
    assert shown["id"] == "task-1"
    assert shown["contextId"] == "ctx-1"
    assert shown["status"] == {
        "state": "TASK_STATE_COMPLETED",
        "timestamp": "2027-01-15T08:00:02.000Z",
    }
    assert shown["artifacts"] == [
        {
            "artifactId": "output",
            "name": "output",
            "parts": [{"text": "hello\n"}],
            "metadata": {"truncated": False},
        }
    ]
    assert shown["history"][0]["parts"] == [
        {"data": {"tool": "file_read", "args": {"path": "a.txt"}}}
    ]
    assert shown["history"][0]["role"] == "ROLE_USER"
    assert shown["metadata"]["tool"] == "file_read"
    assert shown["metadata"]["origin"] == "a2a"
    assert "artifacts" not in task_json(task, include_artifacts=False)


def test_a_failed_task_says_why_in_its_status() -> None:
    task = make_task(TaskState.FAILED, result={"error": "no such file: a.txt"})
    status = task_json(task)["status"]
    assert status["state"] == "TASK_STATE_FAILED"
    assert status["message"]["role"] == "ROLE_AGENT"
    assert status["message"]["parts"] == [{"text": "no such file: a.txt"}]
    rejected = make_task(TaskState.REJECTED, reason="unknown tool 'nope'", result={"error": "x"})
    assert task_json(rejected)["status"]["message"]["parts"] == [{"text": "unknown tool 'nope'"}]
    assert "artifacts" not in task_json(rejected)


def test_a_working_task_shows_its_latest_progress_and_history_trims() -> None:
    events = [
        TaskEvent("task-1", 1, TaskState.SUBMITTED, T0),
        TaskEvent("task-1", 2, TaskState.WORKING, T0 + 1),
        TaskEvent("task-1", 3, TaskState.WORKING, T0 + 1, message="reading", progress=3, total=10),
    ]
    task = make_task(TaskState.WORKING, events=events)
    shown = task_json(task)
    assert shown["status"]["message"]["parts"] == [{"text": "reading (3/10)"}]
    assert len(shown["history"]) == 2
    assert task_json(task, history_length=1)["history"] == shown["history"][-1:]
    assert "history" not in task_json(task, history_length=0)


def test_events_stream_as_status_and_artifact_updates() -> None:
    task = make_task(TaskState.WORKING)
    working = TaskEvent("task-1", 2, TaskState.WORKING, T0 + 1, message="step", progress=1, total=2)
    (update,) = stream_updates(task, working)
    assert update["statusUpdate"]["status"]["state"] == "TASK_STATE_WORKING"
    assert update["statusUpdate"]["metadata"] == {"seq": 2, "progress": 1, "total": 2}
    done = TaskEvent("task-1", 3, TaskState.COMPLETED, T0 + 2, result={"output": "ok"})
    artifact, status = stream_updates(task, done)
    assert artifact["artifactUpdate"]["artifact"]["parts"] == [{"text": "ok"}]
    assert artifact["artifactUpdate"]["lastChunk"] is True
    assert status["statusUpdate"]["status"] == {
        "state": "TASK_STATE_COMPLETED",
        "timestamp": a2a.timestamp(T0 + 2),
    }
    failed = TaskEvent("task-1", 3, TaskState.FAILED, T0 + 2, result={"error": "boom"})
    (status,) = stream_updates(task, failed)
    assert status["statusUpdate"]["status"]["message"]["parts"] == [{"text": "boom"}]


def test_the_brief_for_get_agents_has_no_arguments_or_output() -> None:
    brief = task_brief(make_task(TaskState.COMPLETED, args={"secret": 1}, result={"output": "x"}))
    assert "args" not in brief
    assert "result" not in brief
    assert brief["skill"] == "file_read"
    assert brief["state"] == "completed"


def test_list_pages_and_filters() -> None:
    tasks = [
        make_task(
            TaskState.COMPLETED if i % 2 else TaskState.WORKING,
            id=f"t{i}",
            context_id="a" if i < 3 else "b",
            updated_at=T0 + i,
        )
        for i in range(5)
    ]
    query = parse_list({"pageSize": 2})
    assert isinstance(query, TaskQuery)
    first = query.page(tasks)
    assert [t["id"] for t in first["tasks"]] == ["t0", "t1"]
    assert (first["nextPageToken"], first["pageSize"], first["totalSize"]) == ("2", 2, 5)
    assert "artifacts" not in first["tasks"][1]
    rest = parse_list({"pageSize": 2, "pageToken": "4"})
    assert isinstance(rest, TaskQuery)
    assert [t["id"] for t in rest.page(tasks)["tasks"]] == ["t4"]
    assert rest.page(tasks)["nextPageToken"] == ""
    working = parse_list({"contextId": "a", "status": "TASK_STATE_WORKING"})
    assert isinstance(working, TaskQuery)
    assert [t["id"] for t in working.page(tasks)["tasks"]] == ["t0", "t2"]
    after = parse_list({"statusTimestampAfter": a2a.timestamp(T0 + 2.5)})
    assert isinstance(after, TaskQuery)
    assert [t["id"] for t in after.page(tasks)["tasks"]] == ["t3", "t4"]
    big = parse_list({"pageSize": 5000})
    assert isinstance(big, TaskQuery)
    assert big.page_size == a2a.MAX_PAGE_SIZE
    for bad in ({"pageToken": "x"}, {"status": "DONE"}, {"pageSize": -1}, {"historyLength": "x"}):
        assert isinstance(parse_list(bad), RpcError), bad


def test_the_card_lists_the_tools_and_the_bearer_scheme() -> None:
    tools = [
        {
            "name": "file_read",
            "description": "Read a file.",
            "input_schema": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "offset": {"type": "integer"}},
                "required": ["path"],
            },
        }
    ]
    card = agent_card(name="edge box", url="http://127.0.0.1:1/a2a", version="1.2", tools=tools)
    assert card["supportedInterfaces"] == [
        {"url": "http://127.0.0.1:1/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
    ]
    assert card["capabilities"]["pushNotifications"] is False
    assert card["capabilities"]["streaming"] is True
    assert card["securitySchemes"]["edgeToken"]["httpAuthSecurityScheme"]["scheme"] == "Bearer"
    (skill,) = card["skills"]
    assert skill["id"] == "file_read"
    assert '{"tool": "file_read", "args": {...}}' in skill["description"]
    assert "path (string, required), offset (integer)" in skill["description"]
    assert json.loads(skill["examples"][0]) == {"tool": "file_read", "args": {"path": "..."}}


# --- the token --------------------------------------------------------------------------


def test_the_token_is_made_once_private_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert read_token(state) is None
    token = load_token(state)
    path = token_file(state)
    assert len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_token(state) == token == read_token(state)
    assert [p.name for p in state.iterdir()] == ["a2a.token"]  # no temporary file left
    path.chmod(0o644)
    assert load_token(state) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("")
    fresh = load_token(state)
    assert fresh != token
    assert read_token(state) == fresh


def test_processes_making_the_token_at_once_agree(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(load_token(state))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(got)) == 1
    assert got[0] == read_token(state)
    assert sorted(os.listdir(state)) == ["a2a.token"]


def test_bearer_matches_only_the_token() -> None:
    assert bearer_matches("Bearer abc", "abc")
    assert bearer_matches("bearer  abc ", "abc")
    for header in (None, "", "abc", "Basic abc", "Bearer abd", "Bearer ", "Bearer ábc"):
        assert not bearer_matches(header, "abc"), header
    assert not bearer_matches("Bearer ", "")


# --- values JSON cannot carry, numbers that are not ---------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_a_parse_error(constant: str) -> None:
    body = (
        '{"jsonrpc": "2.0", "id": 3, "method": "SendMessage", "params": {"message": '
        '{"messageId": "m", "role": "ROLE_USER", "parts": [{"data": {"tool": "steps", '
        f'"args": {{"n": {constant}}}}}}}]}}}}}}'
    ).encode()
    failure = parse_call(body)
    assert isinstance(failure, RpcFailure), failure
    assert failure.error.code == PARSE_ERROR
    assert f"{constant} is not a JSON value" in failure.error.message
    encode(failure.to_json())


def test_a_task_with_nan_in_its_arguments_still_shows() -> None:
    # Arguments come from other origins too (agent_ask, the cloud): a task made with a
    # value JSON cannot carry does not break every later listing of it.
    task = make_task(
        TaskState.COMPLETED,
        args={"n": math.nan, "deep": [{"x": -math.inf}]},
        result={"output": "done", "extra": {"score": math.inf}},
    )
    shown = json.loads(encode(task_json(task)))
    assert shown["history"][0]["parts"][0]["data"]["args"] == {"n": "nan", "deep": [{"x": "-inf"}]}
    assert shown["artifacts"][0]["metadata"] == {"extra": {"score": "inf"}}
    encode(TaskQuery().page([task]))


#: JSON values of every kind, floats among them NaN and the infinities, and text that looks
#: like a number to ``str.isdigit`` but is not one ``int`` takes.
FLOATS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]), st.floats(allow_nan=True, allow_infinity=True)
)
DIGITISH = st.one_of(
    st.sampled_from(["\u00b2", "\u0663", "\u2460", "9" * 10, " 7 ", "-1", "0x10", "1e3"]),
    st.text(alphabet="0123456789\u00b2\u00b3\u0660\u0966\uff11 ", max_size=12),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), FLOATS, st.text(max_size=8), DIGITISH)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
#: What a ``ListTasks`` or ``historyLength`` number may be given as: also longer digit runs
#: than ``int`` takes from text (4300).
NUMBERISH = st.one_of(SCALARS, st.just("1" * 4400), st.lists(SCALARS, max_size=2))


@given(
    args=st.dictionaries(st.text(max_size=6), FLOATS | VALUES, min_size=1, max_size=4),
    extra=st.dictionaries(st.sampled_from(["agent", "timeout", "skill"]), VALUES, max_size=2),
    configuration=st.dictionaries(
        st.sampled_from(["historyLength", "returnImmediately"]), VALUES, max_size=2
    ),
)
def test_what_parse_send_takes_encodes_as_a_task(
    args: dict[str, Any], extra: dict[str, Any], configuration: dict[str, Any]
) -> None:
    params = send_params({"data": {"tool": "steps", "args": args, **extra}})
    params["configuration"] = configuration
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": params})
    call = parse_call(body.encode())
    if isinstance(call, RpcFailure):
        encode(call.to_json())
        return
    work = parse_send(call.params)
    if isinstance(work, RpcError):
        encode(work.to_json(call.id))
        return
    task = make_task(TaskState.WORKING, args=work.args, agent=work.agent)
    encode(task_json(task, history_length=work.history_length))


@given(
    params=st.dictionaries(
        st.sampled_from(
            ["pageSize", "pageToken", "historyLength", "contextId", "status", "includeArtifacts"]
        ),
        NUMBERISH,
        max_size=4,
    )
)
def test_parse_list_answers_a_query_or_invalid_params(params: dict[str, Any]) -> None:
    query = parse_list(params)
    if isinstance(query, RpcError):
        assert query.code == INVALID_PARAMS
        return
    assert 1 <= query.page_size <= a2a.MAX_PAGE_SIZE
    encode(query.page([make_task()]))


@given(value=NUMBERISH)
def test_parse_history_answers_a_length_or_invalid_params(value: Any) -> None:
    length = a2a.parse_history(value)
    assert length is None or isinstance(length, int) or length.code == INVALID_PARAMS


@pytest.mark.parametrize("text", ["\u00b2", "\u0663", "1" * 5000, "1234567890", "-3", ""])
def test_digit_like_text_is_not_a_number(text: str) -> None:
    for params in ({"pageSize": text}, {"pageToken": text}, {"historyLength": text}):
        if text == "" and "historyLength" not in params:
            continue  # an empty page size or token is the default
        problem = parse_list(params)
        assert isinstance(problem, RpcError), params
        assert problem.code == INVALID_PARAMS, params
    history = a2a.parse_history(text)
    assert isinstance(history, RpcError)
    assert history.code == INVALID_PARAMS


def test_ascii_decimal_text_is_a_number() -> None:
    query = parse_list({"pageSize": "7", "pageToken": "14", "historyLength": " 2 "})
    assert isinstance(query, TaskQuery)
    assert (query.page_size, query.offset, query.history_length) == (7, 14, 2)


# --- the card's URL, the token file -------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "server", "url"),
    [
        ("127.0.0.1", ("127.0.0.1", 8660), "http://127.0.0.1:8660/a2a"),
        ("127.0.0.1:8660", ("127.0.0.1", 8660), "http://127.0.0.1:8660/a2a"),
        ("localhost:9", ("127.0.0.1", 8660), "http://localhost:8660/a2a"),
        ("[::1]:8660", ("::1", 8660), "http://[::1]:8660/a2a"),
        ("[::1]", ("::1", 8661), "http://[::1]:8661/a2a"),
        (None, ("::1", 8661), "http://[::1]:8661/a2a"),
        ("localhost", None, "http://localhost/a2a"),
    ],
)
def test_the_card_names_the_port_edge_listens_on(host: str | None, server: Any, url: str) -> None:
    from edge.control.agents import endpoint_url

    assert endpoint_url(host, server) == url


@pytest.mark.parametrize(
    "written", ["t\u00f6k\u00e9n-" * 4, "short", "two words here and more", "\u00ff" * 40]
)
def test_a_token_file_edge_cannot_use_gets_a_new_token(
    tmp_path: Path, written: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = token_file(tmp_path)
    path.write_text(written + "\n", encoding="utf-8")
    path.chmod(0o600)
    with caplog.at_level("WARNING", logger="edge.agents.token"):
        assert read_token(tmp_path) is None
        token = load_token(tmp_path)
    assert token != written.strip()
    assert a2a_token_is_usable(token)
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "not one edge can use" in caplog.text
    assert written.strip() not in caplog.text
    assert load_token(tmp_path) == token  # kept from then on
    assert bearer_matches(f"Bearer {token}", token)


def a2a_token_is_usable(token: str) -> bool:
    from edge.agents.token import valid_token

    return valid_token(token) and token.isascii()


def test_bearer_compares_any_text_without_raising() -> None:
    assert bearer_matches("Bearer t\u00f6ken", "t\u00f6ken")
    assert not bearer_matches("Bearer t\u00f6ken", "token")
    assert not bearer_matches("Bearer token", "t\u00f6ken")
    assert not bearer_matches("Bearer \udcff", "token")
