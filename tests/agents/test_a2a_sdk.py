"""The local A2A endpoint as the official A2A Python SDK's client sees it: a real daemon, its
real control API on loopback, the SDK's JSON-RPC client (under trio: it runs on httpx)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from a2a.client import ClientCallContext, ClientConfig, ClientFactory
from a2a.client.auth import AuthInterceptor, CredentialService
from a2a.client.card_resolver import A2ACardResolver
from a2a.client.errors import A2AClientError
from a2a.types import a2a_pb2 as pb
from a2a.utils.errors import (
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf import json_format

from edge.agents.a2a import A2A_PATH, CARD_PATH
from edge.agents.token import read_token
from edge.daemon import Daemon
from edge.protocol import ok_result
from edge.tools.registry import CallContext, ToolSpec

from ..conftest import make_config, processes_in_group, until

pytestmark = [
    pytest.mark.usefixtures("no_child_left"),
    # The SDK's streaming methods are async generators nested four deep, of which it closes
    # only the outermost: a stream left early (an error answer, a client that stops
    # reading) leaves the inner ones to the garbage collector, and trio's finalizer warns
    # (asyncio's closes them quietly). Nothing of edge's is left open.
    pytest.mark.filterwarnings("ignore:Async generator 'a2a\\.:ResourceWarning"),
]

#: Seconds anything here may take on a loaded machine (a bound on failure only).
SOON = 30.0


def steps_tool(release: trio.Event) -> ToolSpec:
    """A tool that reports ``n`` steps of progress, then (``hold``) waits for ``release``."""

    async def run(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        n = args.get("n", 3)
        for i in range(n):
            if ctx.progress is not None:
                ctx.progress(i + 1, n, f"step {i + 1}")
            await trio.sleep(0.01)
        if args.get("hold"):
            await release.wait()
        return ok_result(f"{n} steps done")

    return ToolSpec(
        name="steps",
        description="Count steps, telling each.",
        input_schema={
            "type": "object",
            "properties": {"n": {"type": "integer"}, "hold": {"type": "boolean"}},
        },
        run=run,
        source="test",
    )


@dataclass
class Edge:
    daemon: Daemon
    url: str
    token: str
    release: trio.Event
    workspace: Path


@pytest.fixture
async def edge(nursery: trio.Nursery, workspace: Path, tmp_path: Path) -> Edge:
    state = tmp_path / "state"
    daemon = Daemon(make_config(workspace, control=("127.0.0.1", 0), state_dir=state))
    release = trio.Event()
    daemon.registry.add(steps_tool(release))
    await nursery.start(daemon.run)
    assert daemon.control_url is not None
    token = read_token(state)
    assert token is not None
    return Edge(daemon, daemon.control_url, token, release, workspace)


class TokenStore(CredentialService):
    """The A2A token, for the SDK's auth interceptor (the card names the scheme)."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_credentials(self, scheme: str, context: ClientCallContext | None) -> str | None:
        return self.token if scheme == "edgeToken" else None


@dataclass
class Sdk:
    card: pb.AgentCard
    streaming: Any
    blocking: Any
    http: httpx.AsyncClient


@pytest.fixture
async def sdk(edge: Edge) -> AsyncIterator[Sdk]:
    async with httpx.AsyncClient(timeout=SOON) as http:
        card = await A2ACardResolver(http, edge.url).get_agent_card()
        auth = [AuthInterceptor(TokenStore(edge.token))]
        streaming = ClientFactory(ClientConfig(httpx_client=http)).create(card, auth)
        blocking = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(
            card, auth
        )
        yield Sdk(card, streaming, blocking, http)


def message(tool: str, args: dict[str, Any] | None = None, **extra: Any) -> pb.Message:
    named: dict[str, Any] = {"tool": tool, "args": args or {}, **extra}
    return json_format.ParseDict(
        {"messageId": os.urandom(6).hex(), "role": "ROLE_USER", "parts": [{"data": named}]},
        pb.Message(),
    )


def send(msg: pb.Message, **configuration: Any) -> pb.SendMessageRequest:
    request = pb.SendMessageRequest(message=msg)
    if configuration:
        json_format.ParseDict(configuration, request.configuration)
    return request


async def one(stream: AsyncIterator[pb.StreamResponse]) -> pb.StreamResponse:
    async for event in stream:
        return event
    raise AssertionError("no event")


async def test_the_card_resolves_with_the_tools_as_skills(edge: Edge, sdk: Sdk) -> None:
    card = sdk.card
    assert card.supported_interfaces[0].url == f"{edge.url}{A2A_PATH}"
    assert card.supported_interfaces[0].protocol_binding == "JSONRPC"
    assert card.supported_interfaces[0].protocol_version == "1.0"
    assert card.capabilities.streaming
    assert not card.capabilities.push_notifications
    scheme = card.security_schemes["edgeToken"].http_auth_security_scheme
    assert scheme.scheme.lower() == "bearer"
    skills = {s.id: s for s in card.skills}
    assert {"file_read", "terminal", "steps"} <= set(skills)
    assert '{"tool": "file_read"' in skills["file_read"].description
    # Strict parsing: every field edge writes is one of the card's.
    raw = (await sdk.http.get(f"{edge.url}{CARD_PATH}")).json()
    json_format.ParseDict(raw, pb.AgentCard())
    # The card passes the guard like every route: a foreign Host gets nothing.
    refused = await sdk.http.get(f"{edge.url}{CARD_PATH}", headers={"host": "evil.example"})
    assert refused.status_code == 403


async def test_send_message_blocks_until_file_read_is_done(edge: Edge, sdk: Sdk) -> None:
    (edge.workspace / "notes.txt").write_text("line one\nline two\n")
    with trio.fail_after(SOON):
        (response,) = [
            e
            async for e in sdk.blocking.send_message(
                send(message("file_read", {"path": "notes.txt"}))
            )
        ]
    task = response.task
    assert task.status.state == pb.TASK_STATE_COMPLETED
    (artifact,) = task.artifacts
    assert "line two" in artifact.parts[0].text
    assert task.history[0].role == pb.ROLE_USER
    # The same task, asked for again; strict parsing of what edge sends.
    got = await sdk.blocking.get_task(pb.GetTaskRequest(id=task.id, history_length=0))
    assert got.status.state == pb.TASK_STATE_COMPLETED
    assert not got.history
    raw = await _rpc(sdk, edge, "GetTask", {"id": task.id})
    json_format.ParseDict(raw["result"], pb.Task())


async def test_streaming_tells_progress_then_the_output(sdk: Sdk) -> None:
    with trio.fail_after(SOON):
        events = [e async for e in sdk.streaming.send_message(send(message("steps", {"n": 3})))]
    assert events[0].HasField("task")
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[-2:] == ["artifact_update", "status_update"]
    lines = [
        e.status_update.status.message.parts[0].text
        for e in events
        if e.HasField("status_update") and e.status_update.status.message.parts
    ]
    first = events[0].task.status.message.parts
    shown = ([first[0].text] if first else []) + lines
    assert [line for line in shown if line.startswith("step")][-1] == "step 3 (3/3)"
    assert events[-2].artifact_update.artifact.parts[0].text == "3 steps done"
    assert events[-1].status_update.status.state == pb.TASK_STATE_COMPLETED


async def test_list_tasks_filters_by_context_and_pages(sdk: Sdk) -> None:
    with trio.fail_after(SOON):
        for _ in range(3):
            msg = message("steps", {"n": 1})
            msg.context_id = "ctx-list"
            [e async for e in sdk.blocking.send_message(send(msg))]
        [e async for e in sdk.blocking.send_message(send(message("steps", {"n": 1})))]
    page = await sdk.blocking.list_tasks(pb.ListTasksRequest(context_id="ctx-list", page_size=2))
    assert len(page.tasks) == 2
    assert page.total_size == 3
    assert all(t.context_id == "ctx-list" for t in page.tasks)
    rest = await sdk.blocking.list_tasks(
        pb.ListTasksRequest(context_id="ctx-list", page_size=2, page_token=page.next_page_token)
    )
    assert len(rest.tasks) == 1
    assert not rest.next_page_token
    assert {t.id for t in page.tasks}.isdisjoint(t.id for t in rest.tasks)


async def test_cancel_task_kills_the_running_terminal_command(edge: Edge, sdk: Sdk) -> None:
    pid_file = edge.workspace / "pid"
    command = f"echo $$ > {pid_file}; exec sleep 300"
    with trio.fail_after(SOON):
        (response,) = [
            e
            async for e in sdk.blocking.send_message(
                send(message("terminal", {"command": command}), returnImmediately=True)
            )
        ]
        task_id = response.task.id
        await until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", poll=0.02)
        pid = int(pid_file.read_text())
        assert processes_in_group(os.getpgid(pid))
        canceled = await sdk.blocking.cancel_task(pb.CancelTaskRequest(id=task_id))
        assert canceled.status.state == pb.TASK_STATE_CANCELED
        assert "canceled by the A2A client" in canceled.status.message.parts[0].text
        await until(lambda: not _alive(pid), poll=0.02)
    again = await sdk.blocking.get_task(pb.GetTaskRequest(id=task_id))
    assert again.status.state == pb.TASK_STATE_CANCELED
    with pytest.raises(TaskNotCancelableError, match="has ended already"):
        await sdk.blocking.cancel_task(pb.CancelTaskRequest(id=task_id))


async def test_subscribe_gives_the_running_task_then_ends_at_its_end(edge: Edge, sdk: Sdk) -> None:
    with trio.fail_after(SOON):
        (response,) = [
            e
            async for e in sdk.blocking.send_message(
                send(message("steps", {"n": 2, "hold": True}), returnImmediately=True)
            )
        ]
        task_id = response.task.id
        await until(lambda: edge.daemon.agents.get(task_id).seq >= 4, poll=0.02)  # type: ignore[union-attr]
        events: list[pb.StreamResponse] = []
        async with trio.open_nursery() as nursery:

            async def follow() -> None:
                async for event in sdk.streaming.subscribe(pb.SubscribeToTaskRequest(id=task_id)):
                    events.append(event)

            nursery.start_soon(follow)
            await until(lambda: len(events) >= 1, poll=0.02)
            assert events[0].task.id == task_id
            assert events[0].task.status.state == pb.TASK_STATE_WORKING
            edge.release.set()
    assert events[-1].status_update.status.state == pb.TASK_STATE_COMPLETED
    assert events[-2].artifact_update.artifact.parts[0].text == "2 steps done"
    with pytest.raises(UnsupportedOperationError, match="has ended"):
        await one(sdk.streaming.subscribe(pb.SubscribeToTaskRequest(id=task_id)))


async def test_a_client_that_goes_away_does_not_cancel_the_task(edge: Edge) -> None:
    # A request by hand on a socket closed after the first event (an abandoned httpx or SDK
    # stream is left to the garbage collector, which would close it at no known time).
    named = {"tool": "steps", "args": {"n": 1, "hold": True}}
    message = {"messageId": "m", "role": "ROLE_USER", "parts": [{"data": named}]}
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendStreamingMessage",
            "params": {"message": message},
        }
    ).encode()
    host, port = edge.url.removeprefix("http://").rsplit(":", 1)
    head = (
        f"POST {A2A_PATH} HTTP/1.1\r\nhost: {host}:{port}\r\nauthorization: Bearer {edge.token}"
        f"\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    with trio.fail_after(SOON):
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(head + body)
            seen = b""
            while b"\n\n" not in seen.partition(b"data: ")[2]:
                chunk = await stream.receive_some()
                assert chunk
                seen += chunk
        event = seen.partition(b"data: ")[2].partition(b"\n\n")[0]
        task_id = json.loads(event)["result"]["task"]["id"]
        await trio.sleep(0.2)
        assert edge.daemon.agents.get(task_id).state == "working"  # type: ignore[union-attr]
        edge.release.set()
        task = await edge.daemon.agents.wait(task_id)
    assert task.state == "completed"


async def test_requests_without_the_token_get_401(edge: Edge, sdk: Sdk) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}
    for headers in (
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Basic {edge.token}"},
    ):
        answer = await sdk.http.post(f"{edge.url}{A2A_PATH}", json=body, headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == -32600
        assert "Authorization: Bearer" in answer.json()["error"]["message"]
        assert edge.token not in answer.text
    unauthenticated = ClientFactory(ClientConfig(httpx_client=sdk.http)).create(sdk.card)
    with pytest.raises(A2AClientError, match="401"):
        await unauthenticated.list_tasks(pb.ListTasksRequest())


async def test_push_notifications_are_not_supported(sdk: Sdk) -> None:
    config = pb.TaskPushNotificationConfig(task_id="t", url="http://192.168.1.1/hook")
    with pytest.raises(PushNotificationNotSupportedError, match="not supported"):
        await sdk.blocking.create_task_push_notification_config(config)


async def test_an_unknown_tool_is_rejected_with_the_reason(sdk: Sdk) -> None:
    with trio.fail_after(SOON):
        (response,) = [e async for e in sdk.blocking.send_message(send(message("no_such_tool")))]
    assert response.task.status.state == pb.TASK_STATE_REJECTED
    assert "no_such_tool" in response.task.status.message.parts[0].text


async def test_a_message_that_names_no_tool_is_invalid_params(sdk: Sdk) -> None:
    text_only = json_format.ParseDict(
        {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "read notes.txt"}]},
        pb.Message(),
    )
    with pytest.raises(InvalidParamsError, match="names no tool"):
        [e async for e in sdk.blocking.send_message(send(text_only))]
    with pytest.raises(InvalidParamsError, match="names no tool"):
        [e async for e in sdk.streaming.send_message(send(text_only))]
    with pytest.raises(TaskNotFoundError):
        await sdk.blocking.get_task(pb.GetTaskRequest(id="task-nope"))


async def test_bad_json_is_a_parse_error_and_the_daemon_keeps_serving(edge: Edge, sdk: Sdk) -> None:
    headers = {"authorization": f"Bearer {edge.token}", "content-type": "application/json"}
    for body in (b"{nope", b"[]", b'{"jsonrpc": "2.0", "id": 1, "method": "Nope"}'):
        answer = await sdk.http.post(f"{edge.url}{A2A_PATH}", content=body, headers=headers)
        assert answer.status_code == 200
        assert answer.json()["error"]["code"] in (-32700, -32600, -32601), body
    assert (await _rpc(sdk, edge, "ListTasks", {}))["result"]["tasks"] == []
    version = await sdk.http.post(
        f"{edge.url}{A2A_PATH}",
        json={"jsonrpc": "2.0", "id": 2, "method": "ListTasks"},
        headers={**headers, "a2a-version": "0.3"},
    )
    assert version.json()["error"]["code"] == -32009


async def test_get_agents_lists_tasks_without_their_arguments(edge: Edge, sdk: Sdk) -> None:
    with trio.fail_after(SOON):
        [e async for e in sdk.blocking.send_message(send(message("steps", {"n": 1})))]
    answer = (await sdk.http.get(f"{edge.url}/agents")).json()
    assert answer["agentId"] == edge.daemon.agents.agent_id
    assert answer["peers"] == []
    (task,) = answer["tasks"]
    assert task["skill"] == "steps"
    assert task["origin"] == "a2a"
    assert "args" not in task
    assert "result" not in task
    assert edge.token not in json.dumps(answer)


async def _rpc(sdk: Sdk, edge: Edge, method: str, params: dict[str, Any]) -> Any:
    answer = await sdk.http.post(
        f"{edge.url}{A2A_PATH}",
        json={"jsonrpc": "2.0", "id": 9, "method": method, "params": params},
        headers={"authorization": f"Bearer {edge.token}", "a2a-version": "1.0"},
    )
    return answer.json()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_nan_in_a_message_is_a_parse_error_and_nothing_is_kept(edge: Edge, sdk: Sdk) -> None:
    headers = {"authorization": f"Bearer {edge.token}", "content-type": "application/json"}
    for constant in ("NaN", "Infinity", "-Infinity"):
        body = (
            '{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": '
            '{"messageId": "m", "role": "ROLE_USER", "parts": [{"data": {"tool": "steps", '
            f'"args": {{"n": {constant}}}}}}}]}}}}}}'
        )
        answer = await sdk.http.post(f"{edge.url}{A2A_PATH}", content=body, headers=headers)
        assert answer.json()["error"]["code"] == -32700, constant
    listed = await _rpc(sdk, edge, "ListTasks", {})
    assert listed["result"]["tasks"] == []
    assert edge.daemon.agents.list() == []  # type: ignore[union-attr]


async def test_a_task_for_an_agent_nobody_named_is_refused_at_once(edge: Edge, sdk: Sdk) -> None:
    unknown = message("file_read", {"path": "notes.txt"}, agent="build-box")
    with trio.fail_after(SOON):
        with pytest.raises(InvalidParamsError, match="the tunnel is not connected"):
            [e async for e in sdk.blocking.send_message(send(unknown))]
        with pytest.raises(InvalidParamsError, match="no agent 'build-box' is known"):
            [e async for e in sdk.streaming.send_message(send(unknown))]
        edge.daemon.agents.set_peers(  # type: ignore[union-attr]
            [{"id": "agent-7", "name": "laptop", "hostname": "lap", "skills": []}]
        )
        with pytest.raises(InvalidParamsError, match=r"the cloud names these: laptop \(agent-7\)"):
            [e async for e in sdk.blocking.send_message(send(unknown))]
    assert edge.daemon.agents.list() == []  # type: ignore[union-attr]


async def test_a_task_for_a_remote_agent_has_a_deadline(edge: Edge, sdk: Sdk) -> None:
    edge.daemon.agents.set_peers(  # type: ignore[union-attr]
        [{"id": "agent-7", "name": "laptop", "hostname": "lap", "skills": []}]
    )
    remote = message("file_read", {"path": "notes.txt"}, agent="laptop")
    with trio.fail_after(SOON):
        (response,) = [
            e async for e in sdk.blocking.send_message(send(remote, returnImmediately=True))
        ]
    task = edge.daemon.agents.get(response.task.id)  # type: ignore[union-attr]
    assert task is not None
    assert task.agent == "agent-7"
    assert task.deadline is not None
    assert 0 < task.deadline - task.created_at <= 60.0 + 1
    assert response.task.metadata["deadline"]
    edge.daemon.agents.cancel(task.id)  # type: ignore[union-attr]


async def test_the_card_names_the_real_port_for_a_host_without_one(edge: Edge, sdk: Sdk) -> None:
    port = edge.url.rsplit(":", 1)[1]
    answer = await sdk.http.get(f"{edge.url}{CARD_PATH}", headers={"host": "127.0.0.1"})
    assert answer.status_code == 200
    (interface,) = answer.json()["supportedInterfaces"]
    assert interface["url"] == f"http://127.0.0.1:{port}{A2A_PATH}"


async def test_a_hand_written_token_edge_cannot_use_is_replaced(
    nursery: trio.Nursery, workspace: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    written = "tökén-of-my-own-chøice"
    token_path = state / "a2a.token"
    token_path.write_text(written + "\n", encoding="utf-8")
    token_path.chmod(0o600)
    daemon = Daemon(make_config(workspace, control=("127.0.0.1", 0), state_dir=state))
    await nursery.start(daemon.run)
    token = read_token(state)
    assert token is not None
    assert token != written
    body = {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}
    async with httpx.AsyncClient(timeout=SOON) as http:
        url = f"{daemon.control_url}{A2A_PATH}"
        good = await http.post(url, json=body, headers={"authorization": f"Bearer {token}"})
        assert good.status_code == 200
        assert good.json()["result"]["tasks"] == []
        raw = f"Bearer {written}".encode()
        old = await http.post(url, json=body, headers={b"authorization": raw})
        assert old.status_code == 401


async def test_nan_through_tools_call_is_refused_and_makes_no_task(edge: Edge, sdk: Sdk) -> None:
    # The control API reads JSON bodies strictly: NaN is no JSON value, so agent_ask never
    # hands one to a task (whose answers could not be encoded).
    from edge.control.key import read_key

    port = int(edge.url.rsplit(":", 1)[1])
    key = read_key(edge.daemon.config.state_dir, port)
    assert key is not None
    body = (
        '{"name": "agent_ask", "args": {"agent": "x", "tool": "file_read", '
        '"args": {"n": NaN}, "timeout": 5}}'
    )
    with trio.fail_after(SOON):
        answer = await sdk.http.post(
            f"{edge.url}/tools/call",
            content=body,
            headers={"x-edge-key": key, "content-type": "application/json"},
        )
    assert answer.status_code == 400
    assert "NaN is not a JSON value" in answer.json()["error"]
    assert edge.daemon.agents.list() == []  # type: ignore[union-attr]
    listed = await _rpc(sdk, edge, "ListTasks", {})
    assert listed["result"]["tasks"] == []
