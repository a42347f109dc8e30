"""``GatewayClient`` and ``converse`` against a real HTTP server on loopback (the fake gateway,
and a plain one that ignores ``"stream": true``)."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
import trio

from edge.dev.gateway import FakeGateway, Step
from edge.errors import GatewayError
from edge.gateway import GatewayClient, converse, short_args
from edge.protocol import ok_result
from edge.secret import Secret

TOKEN = "gw-token"


@pytest.fixture
async def gateway(nursery: trio.Nursery) -> FakeGateway:
    gw = FakeGateway(tokens=[TOKEN])
    await nursery.start(gw.serve)
    return gw


async def collect(client: GatewayClient, **kw: Any) -> tuple[Any, list[str]]:
    pieces: list[str] = []

    async def on_text(piece: str) -> None:
        pieces.append(piece)

    turn = await client.turn([{"role": "user", "content": "hi"}], on_text=on_text, **kw)
    return turn, pieces


async def test_text_arrives_in_pieces_and_adds_up(gateway: FakeGateway) -> None:
    gateway.script(Step(text="one two three four"))
    async with GatewayClient(gateway.url, token=Secret(TOKEN)) as client:
        turn, pieces = await collect(client, model="m")
    assert len(pieces) > 1
    assert "".join(pieces) == turn.content == "one two three four"
    assert gateway.requests[0]["model"] == "m"
    assert "tools" not in gateway.requests[0]  # none offered: none sent


async def test_a_refused_token_and_an_error_status_are_gateway_errors(
    gateway: FakeGateway,
) -> None:
    async with GatewayClient(gateway.url, token=Secret("wrong")) as client:
        with pytest.raises(GatewayError, match=r"refused the token \(HTTP 401\)") as info:
            await collect(client)
    assert "wrong" not in str(info.value)
    gateway.script(Step(status=429))
    async with GatewayClient(gateway.url, token=Secret(TOKEN)) as client:
        with pytest.raises(GatewayError, match="HTTP 429: the fake gateway was told"):
            await collect(client)


async def test_an_error_in_the_stream_is_a_gateway_error(gateway: FakeGateway) -> None:
    gateway.script(Step(text="a b c d e f", error_after=2))
    async with GatewayClient(gateway.url, token=Secret(TOKEN), name="the gw") as client:
        with pytest.raises(GatewayError, match=r"^the gw: "):
            await collect(client)
        gateway.script(Step(text="fine"))  # the client still works after it
        turn, _ = await collect(client)
    assert turn.content == "fine"


async def test_nobody_listening_is_a_gateway_error_naming_the_url() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    async with GatewayClient(url) as client:
        with pytest.raises(GatewayError, match=f"cannot reach the model gateway at {url}"):
            await collect(client)


async def test_cancelling_a_stalled_stream_leaves_nothing_open(gateway: FakeGateway) -> None:
    gateway.script(Step(text="first then nothing", stall=True))
    async with GatewayClient(gateway.url, token=Secret(TOKEN)) as client:
        with trio.move_on_after(30) as scope:
            pieces: list[str] = []

            async def on_text(piece: str) -> None:
                pieces.append(piece)
                scope.cancel()  # as Ctrl-C would, once text has come

            await client.turn([{"role": "user", "content": "hi"}], on_text=on_text)
    assert scope.cancelled_caught
    assert pieces
    with trio.fail_after(30):
        await gateway.wait_for(lambda: gateway.streams_open == 0)


async def test_a_server_that_ignores_stream_answers_in_one_piece(nursery: trio.Nursery) -> None:
    import hypercorn
    import hypercorn.trio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        assert body["stream"] is True
        return JSONResponse({
            "object": "chat.completion", "model": "plain",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "whole",
                "tool_calls": [{"id": "c1", "type": "function",
                                "function": {"name": "grep", "arguments": "{\"pattern\": \"x\"}"}}],
            }}],
        })  # fmt: skip

    config = hypercorn.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    binds = await nursery.start(partial(hypercorn.trio.serve, app, config))  # type: ignore[arg-type]
    async with GatewayClient(f"{binds[0]}/v1") as client:
        turn, pieces = await collect(client)
    assert pieces == ["whole"]
    assert turn.model == "plain"
    assert [(c.name, c.arguments) for c in turn.calls] == [("grep", {"pattern": "x"})]


async def test_converse_stops_a_model_that_never_answers(gateway: FakeGateway) -> None:
    gateway.script(*[Step(calls=(("grep", {"pattern": "x"}),)) for _ in range(3)])
    ran: list[str] = []

    async def run_tool(name: str, args: dict[str, Any]) -> dict[str, Any]:
        ran.append(name)
        return ok_result("nothing")

    async def emit(event: dict[str, Any]) -> None:
        pass

    messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    async with GatewayClient(gateway.url, token=Secret(TOKEN)) as client:
        with pytest.raises(GatewayError, match="asked for tools 3 times without answering"):
            await converse(client, messages, run_tool=run_tool, emit=emit, max_rounds=3)
    assert ran == ["grep"] * 3
    assert [m["role"] for m in messages] == ["user"] + ["assistant", "tool"] * 3


async def test_converse_tells_every_step_and_appends_the_conversation(
    gateway: FakeGateway,
) -> None:
    gateway.script(
        Step(calls=(("grep", {"pattern": "a"}), ("nope", "{bad"))),
        Step(text="done now"),
    )
    events: list[dict[str, Any]] = []

    async def run_tool(name: str, args: dict[str, Any]) -> dict[str, Any]:
        return ok_result(f"{name} ran with {json.dumps(args)}")

    async def emit(event: dict[str, Any]) -> None:
        events.append(event)

    messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    async with GatewayClient(gateway.url, token=Secret(TOKEN)) as client:
        answer = await converse(client, messages, run_tool=run_tool, emit=emit)
    assert answer.content == "done now"
    assert answer.rounds == 2
    kinds = [e["type"] for e in events]
    assert kinds.count("tool") == 2
    assert kinds.count("tool_done") == 2
    assert kinds[-1] == "done"
    done = {e["name"]: e for e in events if e["type"] == "tool_done"}
    assert done["grep"]["ok"] is True
    assert done["nope"]["ok"] is False
    assert "not valid JSON" in done["nope"]["error"]
    assert events[-1]["messages"] == messages[1:]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]


def test_short_args_is_one_short_line() -> None:
    assert short_args({"path": "a b.txt", "n": 3}) == 'path="a b.txt" n=3'
    long = short_args({"text": "x" * 500})
    assert len(long) == 80
    assert long.endswith("…")
    assert short_args(None, '{"broken\n  json') == '{"broken json'
