"""The fake model gateway over real loopback HTTP: scripted steps in every stream shape parse
(through edge's own SSE decoder and turn accumulator) to the intended turn; errors, auth,
defaults, records, slow and stalled streams, and clients that go away mid-stream."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import pytest
import trio
import trio_websocket

from edge.dev.cloud import FakeCloud
from edge.dev.gateway import SHAPES, TOOL_RESULT_CHARS, FakeGateway, Step, default_step
from edge.protocol.frames import Connected, parse_frame
from edge.protocol.openai import (
    GatewayStreamError,
    Turn,
    TurnAccumulator,
    error_message,
    parse_data,
)
from edge.protocol.sse import SseDecoder

TOKEN: Final = "gw-test-token"
#: Seconds any one test may take (a bound on hangs, not a speed check).
LIMIT: Final = 20.0
USER = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def gateway(nursery: trio.Nursery) -> FakeGateway:
    gateway = FakeGateway([TOKEN])
    await nursery.start(gateway.serve)
    return gateway


@pytest.fixture
async def client(gateway: FakeGateway) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as client:
        yield client


class Streamed:
    """What one streamed request gave: each network read's content text, the turn, the end."""

    def __init__(self) -> None:
        self.reads: list[list[str]] = []
        self.accumulator = TurnAccumulator()
        self.done = False
        self.events = 0

    def turn(self) -> Turn:
        return self.accumulator.finish()

    @property
    def pieces(self) -> list[str]:
        return [piece for read in self.reads for piece in read]


async def stream(
    client: httpx.AsyncClient, messages: list[dict[str, Any]] = USER, **extra: Any
) -> Streamed:
    """POST a streamed chat request and read it all through SseDecoder and TurnAccumulator."""
    out = Streamed()
    body = {"model": "m", "messages": messages, "stream": True, **extra}
    with trio.fail_after(LIMIT):
        async with client.stream("POST", "/chat/completions", json=body) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            decoder = SseDecoder()
            async for data in reply.aiter_raw():
                read: list[str] = []
                for event in decoder.feed(data):
                    out.events += 1
                    chunk = parse_data(event.data)
                    if chunk is None:
                        out.done = True
                    else:
                        piece = out.accumulator.feed(chunk)
                        if piece:
                            read.append(piece)
                out.reads.append(read)
            assert decoder.close() == []
    return out


async def first_read(reply: httpx.Response) -> bytes:
    """The first piece of a body, the rest left unread.

    httpx's body iterators are nested async generators that only an exception inside them
    ends (encode/httpx#3686: breaking out leaves them to trio's finalizer, which warns), so
    the next read is cancelled rather than skipped.
    """
    first: bytes | None = None
    with trio.CancelScope() as scope:
        async for data in reply.aiter_raw():
            first = data if first is None else first
            scope.cancel()
    assert first is not None
    return first


async def complete(client: httpx.AsyncClient, messages: list[dict[str, Any]] = USER) -> Turn:
    """POST a non-streamed chat request; its turn."""
    with trio.fail_after(LIMIT):
        reply = await client.post("/chat/completions", json={"model": "m", "messages": messages})
    assert reply.status_code == 200
    accumulator = TurnAccumulator()
    accumulator.feed_completion(reply.json())
    return accumulator.finish()


CALLS: Final = (
    ("grep", {"pattern": 'a "quoted" x', "paths": ["src", "tests"], "n": 3}),
    ("time__now", {}),
    ("file_read", {"path": "ü/é.txt"}),
)


@pytest.mark.parametrize("shape", SHAPES)
async def test_every_shape_parses_to_the_intended_calls(
    gateway: FakeGateway, client: httpx.AsyncClient, shape: str
) -> None:
    gateway.script(Step(text="Let me look.", calls=CALLS, shape=shape))
    got = await stream(client)
    turn = got.turn()
    assert got.done
    assert turn.content == "Let me look."
    assert [(c.name, c.arguments, c.problem) for c in turn.calls] == [
        (name, args, None) for name, args in CALLS
    ]
    assert len({c.id for c in turn.calls}) == len(CALLS)
    assert (turn.finish_reason, turn.model) == ("tool_calls", "fake-model")
    # The same step, not streamed.
    gateway.script(Step(text="Let me look.", calls=CALLS, shape=shape))
    whole = await complete(client)
    assert [(c.name, c.arguments) for c in whole.calls] == list(CALLS)
    assert whole.content == "Let me look."


async def test_arguments_sent_verbatim_can_be_invalid(
    gateway: FakeGateway, client: httpx.AsyncClient
) -> None:
    gateway.script(Step(calls=(("f", "{not json"), ("g", "[1]")), shape="odd_pieces"))
    turn = (await stream(client)).turn()
    assert [c.raw_arguments for c in turn.calls] == ["{not json", "[1]"]
    problems = [c.problem or "" for c in turn.calls]
    assert problems[0].startswith("arguments of f are not valid JSON")
    assert problems[1] == "arguments of g must be a JSON object"
    assert turn.content == ""


async def test_text_streams_a_word_at_a_time_with_delays(
    gateway: FakeGateway, client: httpx.AsyncClient
) -> None:
    delay = 0.2
    gateway.script(Step(text="one two three four", chunk_delay=delay, finish_reason="length"))
    start = trio.current_time()
    got = await stream(client)
    assert got.pieces == ["one ", "two ", "three ", "four"]
    # 4 content chunks, the finish chunk and [DONE]: 5 delays at least (the server sleeps).
    assert trio.current_time() - start >= 5 * delay
    # Delayed chunks are separate network reads (unless this process slept through 0.2 s gaps).
    assert sum(1 for read in got.reads if read) >= 2
    assert got.turn().finish_reason == "length"


async def test_stall_sends_the_first_chunk_then_nothing(
    gateway: FakeGateway, client: httpx.AsyncClient
) -> None:
    gateway.script(Step(text="first second", stall=True))
    body = {"messages": USER, "stream": True}
    with trio.fail_after(LIMIT):
        async with client.stream("POST", "/chat/completions", json=body) as reply:
            decoder = SseDecoder()
            raw = reply.aiter_raw()
            events = decoder.feed(await raw.__anext__())
            assert parse_data(events[0].data)["choices"][0]["delta"] == {  # type: ignore[index]
                "role": "assistant",
                "content": "first ",
            }
            with trio.move_on_after(0.5) as waited:
                await raw.__anext__()
            assert waited.cancelled_caught
            assert gateway.streams_open == 1
            await raw.aclose()
        await gateway.wait_for(lambda: gateway.streams_open == 0)
    assert gateway.disconnects == 1


async def test_stall_without_streaming_answers_nothing(
    gateway: FakeGateway, client: httpx.AsyncClient
) -> None:
    gateway.script(Step(text="x", stall=True))
    with trio.move_on_after(0.5) as waited:
        await client.post("/chat/completions", json={"messages": USER})
    assert waited.cancelled_caught
    with trio.fail_after(LIMIT):
        await gateway.wait_for(lambda: gateway.streams_open == 0)
    assert gateway.disconnects == 1


@pytest.mark.parametrize("streamed", [True, False])
@pytest.mark.parametrize("status", [400, 429, 500, 503])
async def test_status_steps_answer_an_openai_error(
    gateway: FakeGateway, client: httpx.AsyncClient, status: int, streamed: bool
) -> None:
    gateway.script(Step(status=status), Step(text="fine"))
    with trio.fail_after(LIMIT):
        reply = await client.post("/chat/completions", json={"messages": USER, "stream": streamed})
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert error_message(body) == f"the fake gateway was told to answer {status}"
    assert body["error"]["type"] == ("server_error" if status >= 500 else
                                     "rate_limit_error" if status == 429 else
                                     "invalid_request_error")  # fmt: skip
    assert (await complete(client)).content == "fine"  # the next step is the next answer


async def test_error_after_breaks_off_the_stream(
    gateway: FakeGateway, client: httpx.AsyncClient
) -> None:
    gateway.script(Step(text="a b c d e", error_after=2))
    accumulator = TurnAccumulator()
    pieces: list[str] = []
    ended = False
    with trio.fail_after(LIMIT):
        async with client.stream(
            "POST", "/chat/completions", json={"messages": USER, "stream": True}
        ) as reply:
            decoder = SseDecoder()
            async for data in reply.aiter_raw():
                for event in decoder.feed(data):
                    chunk = parse_data(event.data)
                    assert isinstance(chunk, dict), "no [DONE] after an error"
                    if "error" in chunk:
                        with pytest.raises(GatewayStreamError, match="broke off the answer"):
                            accumulator.feed(chunk)
                        ended = True
                    else:
                        pieces.append(accumulator.feed(chunk))
    assert ended
    assert pieces == ["a ", "b "]
    gateway.script(Step(text="x", error_after=0))
    reply = await client.post("/chat/completions", json={"messages": USER})
    assert reply.status_code == 500
    assert error_message(reply.json()) == "the fake gateway broke off the answer"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": TOKEN},
        {"authorization": "Basic Z3c6dGVzdA=="},
    ],
)
async def test_bad_or_missing_token_is_401(gateway: FakeGateway, headers: dict[str, str]) -> None:
    gateway.script(Step(text="kept for later"))
    with trio.fail_after(LIMIT):
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as client:
            reply = await client.post("/chat/completions", json={"messages": USER, "stream": True})
            models = await client.get("/models")
    for answer in (reply, models):
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "invalid_request_error"
        assert error_message(answer.json())
    assert gateway.steps_left == 1
    (record,) = gateway.requests
    assert record["authorized"] is False
    assert record["bearer"] is (headers.get("authorization", "").startswith("Bearer w"))
    assert TOKEN not in json.dumps(gateway.requests)


async def test_without_tokens_no_authorization_is_needed(nursery: trio.Nursery) -> None:
    gateway = FakeGateway(None)
    url = await nursery.start(gateway.serve)
    assert url == gateway.url
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/v1")
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await complete(client)).content == "echo: hello there"
    assert gateway.requests[0]["authorized"] is True
    assert gateway.requests[0]["bearer"] is False


async def test_models(gateway: FakeGateway, client: httpx.AsyncClient) -> None:
    with trio.fail_after(LIMIT):
        reply = await client.get("/models")
    assert reply.status_code == 200
    assert [m["id"] for m in reply.json()["data"]] == ["fake-model"]


async def test_defaults_echo_call_and_tool_results(client: httpx.AsyncClient) -> None:
    assert (await stream(client)).turn().content == "echo: hello there"
    call = [{"role": "user", "content": '/call grep {"pattern": "x"}'}]
    turn = (await stream(client, call)).turn()
    assert [(c.name, c.arguments) for c in turn.calls] == [("grep", {"pattern": "x"})]
    assert turn.finish_reason == "tool_calls"
    long = "y" * (TOOL_RESULT_CHARS + 50)
    messages = [
        *call,
        turn.assistant_message(),
        {"role": "tool", "tool_call_id": turn.calls[0].id, "content": "found 3"},
        {"role": "tool", "tool_call_id": "other", "content": long},
    ]
    answer = (await stream(client, messages)).turn()
    assert answer.content == "tool results: found 3; " + "y" * TOOL_RESULT_CHARS
    assert answer.calls == ()


def test_default_step_rules() -> None:
    assert default_step([]) == Step(text="echo: ")
    assert default_step([{"role": "user", "content": " /call now"}]).calls == (("now", "{}"),)
    assert default_step([{"role": "user", "content": "/call f {bad"}]).calls == (("f", "{bad"),)
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}]
    assert default_step(parts).text == "echo: ab"
    after = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]
    assert default_step(after).text == "echo: hi"  # the last user message
    with pytest.raises(ValueError, match="unknown shape"):
        Step(shape="sideways")


async def test_requests_are_recorded(gateway: FakeGateway, client: httpx.AsyncClient) -> None:
    tools = [{"type": "function", "function": {"name": "grep", "parameters": {}}}]

    async def ask() -> None:
        await stream(client, tools=tools)
        await complete(client, [{"role": "user", "content": "second"}])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        with trio.fail_after(LIMIT):
            requests = await gateway.wait_requests(2)
    assert requests[0]["tools"] == tools
    assert requests[0]["stream"] is True
    assert requests[1]["messages"] == [{"role": "user", "content": "second"}]
    assert all(r["authorized"] and r["bearer"] for r in requests)
    assert TOKEN not in json.dumps(requests)


async def test_a_body_that_is_not_a_chat_request_is_400(
    gateway: FakeGateway, client: httpx.AsyncClient
) -> None:
    for content in (b"{nope", b"[1]", b'{"messages": "x"}'):
        reply = await client.post("/chat/completions", content=content)
        assert reply.status_code == 400
        assert "messages" in (error_message(reply.json()) or "")
    assert len(gateway.requests) == 3


async def test_usage_chunk_when_asked(client: httpx.AsyncClient) -> None:
    turn = (await stream(client, stream_options={"include_usage": True})).turn()
    assert turn.usage is not None
    assert turn.usage["prompt_tokens"] == 2
    assert (await stream(client)).turn().usage is None
    assert (await complete(client)).usage is not None


@pytest.mark.parametrize(
    "step", [Step(text="w " * 200, chunk_delay=0.01), Step(text="a b", stall=True)]
)
async def test_a_client_leaving_mid_stream_is_harmless(
    gateway: FakeGateway, client: httpx.AsyncClient, step: Step, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway.script(step)
    with trio.fail_after(LIMIT):
        async with client.stream(
            "POST", "/chat/completions", json={"messages": USER, "stream": True}
        ) as reply:
            assert (await first_read(reply)).startswith(b"data: ")
        await gateway.wait_for(lambda: gateway.streams_open == 0)
        assert gateway.disconnects == 1
        assert (await stream(client)).turn().content == "echo: hello there"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


async def test_stopping_the_gateway_ends_open_streams(
    nursery: trio.Nursery, client: httpx.AsyncClient
) -> None:
    gateway = FakeGateway()
    gateway.script(Step(text="a b", stall=True))
    server = trio.CancelScope()
    stopped = trio.Event()

    async def run(task_status: trio.TaskStatus[str]) -> None:
        try:
            with server:
                await gateway.serve(task_status=task_status)
        finally:
            stopped.set()

    url = await nursery.start(run)
    body = {"messages": USER, "stream": True}
    with trio.fail_after(LIMIT):
        async with client.stream("POST", f"{url}/chat/completions", json=body) as reply:
            raw = reply.aiter_raw()
            await raw.__anext__()
            server.cancel()
            with pytest.raises(httpx.RemoteProtocolError):
                await raw.__anext__()
        await stopped.wait()
    assert gateway.streams_open == 0
    with pytest.raises(httpx.ConnectError):
        await client.get(f"{url}/models")


@pytest.mark.parametrize("urls", [False, True])
async def test_fake_cloud_names_the_gateway_in_connected(
    nursery: trio.Nursery, gateway: FakeGateway, urls: bool
) -> None:
    cloud = FakeCloud([TOKEN])
    if urls:
        cloud.gateway_url = gateway.url
        cloud.versions_url = "https://updates.example/versions.json"
    await nursery.start(cloud.serve)
    with trio.fail_after(LIMIT):
        async with trio_websocket.open_websocket_url(
            cloud.url, extra_headers=[(b"authorization", f"Bearer {TOKEN}".encode())]
        ) as ws:
            text = await ws.get_message()
    frame = parse_frame(text)
    assert isinstance(frame, Connected)
    assert frame.gateway_url == (gateway.url if urls else None)
    assert frame.versions_url == ("https://updates.example/versions.json" if urls else None)
    assert ("gatewayUrl" in json.loads(text)) is urls


def test_dev_cloud_gw_commands_script_the_next_answer() -> None:
    from edge.dev.commands import GATEWAY_HELP
    from edge.dev.console import gateway_step as _gateway_step

    assert _gateway_step("say hello there") == Step(text="hello there")
    assert _gateway_step("slow 0.5 one two") == Step(text="one two", chunk_delay=0.5)
    assert _gateway_step("error 503") == Step(status=503)
    assert _gateway_step('call grep {"pattern": "x"}') == Step(calls=(("grep", {"pattern": "x"}),))
    assert _gateway_step("call no_index file_read") == Step(
        calls=(("file_read", {}),), shape="no_index"
    )
    assert "no_index" in str(_gateway_step("shapes"))
    assert _gateway_step("dance") == f"usage: {GATEWAY_HELP}"
