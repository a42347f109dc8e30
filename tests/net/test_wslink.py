"""The tunnel's lean WebSocket against a real trio-websocket server on loopback."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import pytest
import trio
import trustme
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

from edge.net.wslink import MESSAGES_PER_CHECKPOINT, WsLink, open_link

#: Seconds for anything here to happen on a loaded machine (a bound on failure only).
SOON: Final = 30.0

Handler = Callable[[WebSocketConnection], Awaitable[None]]


@asynccontextmanager
async def server(
    handle: Handler,
    *,
    reject: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    """A WebSocket server running ``handle`` per connection; yields its URL."""

    async def on_request(request: WebSocketRequest) -> None:
        if reject is not None:
            await request.reject(reject, body=b"go away")
            return
        ws = await request.accept()
        try:
            await handle(ws)
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            serve_websocket, on_request, "127.0.0.1", 0, ssl_context
        )
        port = listener.port
        scheme = "wss" if ssl_context is not None else "ws"
        yield f"{scheme}://127.0.0.1:{port}/tunnel"
        nursery.cancel_scope.cancel()


def link_to(url: str, max_message_size: int = 1 << 20) -> AsyncIterator[WsLink]:
    return open_link(url, headers=[], connect_timeout=SOON, max_message_size=max_message_size)


async def echo(ws: WebSocketConnection) -> None:
    while True:
        await ws.send_message(await ws.get_message())


async def test_messages_go_both_ways_in_order_whole() -> None:
    big = "x" * 300_000  # several reads and several frames' worth
    async with server(echo) as url, link_to(url) as link, trio.open_nursery() as nursery:
        nursery.start_soon(link.flush_forever)
        with trio.fail_after(SOON):
            for i in range(MESSAGES_PER_CHECKPOINT * 3):
                link.write(f"m{i}")
            link.write(b"\x00bytes")
            link.write(big)
            got = [await link.get_message() for _ in range(MESSAGES_PER_CHECKPOINT * 3 + 2)]
        assert got[:-2] == [f"m{i}" for i in range(MESSAGES_PER_CHECKPOINT * 3)]
        assert got[-2:] == [b"\x00bytes", big]
        nursery.cancel_scope.cancel()


async def test_a_full_socket_queues_in_order_and_the_flusher_drains_it() -> None:
    release = trio.Event()
    received: list[str] = []

    async def slow(ws: WebSocketConnection) -> None:
        await release.wait()  # meanwhile the socket buffers fill up
        while True:
            received.append(str(await ws.get_message()))

    chunk = "y" * 65536
    count = 400  # 26 MB: more than loopback's buffers hold
    drained: list[int] = []
    async with server(slow) as url, link_to(url) as link, trio.open_nursery() as nursery:
        nursery.start_soon(link.flush_forever)
        link.on_drained = lambda: drained.append(link.backlog)
        for i in range(count):
            link.write(f"{i:04d}{chunk}")
        assert link.backlog > 0  # the socket did not take it all: the rest waits here
        release.set()
        with trio.fail_after(SOON):
            while len(received) < count:
                await trio.sleep(0.01)
        assert [int(m[:4]) for m in received] == list(range(count))
        assert drained
        assert drained[-1] == 0
        nursery.cancel_scope.cancel()


async def test_a_ping_waits_for_its_pong() -> None:
    async with server(echo) as url, link_to(url) as link, trio.open_nursery() as nursery:
        nursery.start_soon(link.flush_forever)

        async def read() -> None:
            with pytest.raises(ConnectionClosed):
                while True:
                    await link.get_message()

        nursery.start_soon(read)  # pongs are read by whoever reads
        with trio.fail_after(SOON):
            await link.ping()
            await link.ping()
        nursery.cancel_scope.cancel()


async def test_the_servers_close_code_and_reason_come_through() -> None:
    async def refuse(ws: WebSocketConnection) -> None:
        await ws.send_message("last words")
        await ws.aclose(4401, "token refused")

    async with server(refuse) as url, link_to(url) as link:
        with trio.fail_after(SOON):
            assert await link.get_message() == "last words"  # what came before the close
            with pytest.raises(ConnectionClosed) as caught:
                await link.get_message()
    assert caught.value.reason.code == 4401
    assert caught.value.reason.reason == "token refused"
    with pytest.raises(ConnectionClosed):
        link.write("too late")


async def test_a_dropped_socket_is_1006() -> None:
    async def drop(ws: WebSocketConnection) -> None:
        await ws._stream.aclose()  # no close frame

    async with server(drop) as url, link_to(url) as link:
        with trio.fail_after(SOON), pytest.raises(ConnectionClosed) as caught:
            await link.get_message()
    assert caught.value.reason.code == 1006


async def test_a_message_over_the_limit_closes_with_1009() -> None:
    seen: list[int | None] = []

    async def flood(ws: WebSocketConnection) -> None:
        await ws.send_message("z" * 5000)
        try:
            await ws.get_message()
        except ConnectionClosed as exc:
            seen.append(exc.reason.code)

    async with server(flood) as url, link_to(url, max_message_size=1000) as link:
        with trio.fail_after(SOON), pytest.raises(ConnectionClosed) as caught:
            await link.get_message()
        with trio.fail_after(SOON):
            await link.aclose()
            while not seen:
                await trio.sleep(0.01)
    assert caught.value.reason.code == 1009
    assert seen == [1009]


async def test_a_rejected_upgrade_carries_the_status_and_closes_the_socket() -> None:
    async with server(echo, reject=401) as url:
        with trio.fail_after(SOON), pytest.raises(ConnectionRejected) as caught:
            async with link_to(url):
                pass
    assert caught.value.status_code == 401
    assert caught.value.body == b"go away"


async def test_tls_goes_through_the_flusher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    async with server(echo, ssl_context=server_context) as url:
        async with link_to(url) as link, trio.open_nursery() as nursery:
            nursery.start_soon(link.flush_forever)
            with trio.fail_after(SOON):
                link.write("over tls")
                assert await link.get_message() == "over tls"
            nursery.cancel_scope.cancel()


async def test_closing_sends_the_code_and_reads_the_reply() -> None:
    codes: list[int] = []

    async def wait_close(ws: WebSocketConnection) -> None:
        try:
            await ws.get_message()
        except ConnectionClosed as exc:
            codes.append(exc.reason.code)

    async with server(wait_close) as url, link_to(url) as link:
        with trio.fail_after(SOON):
            await link.aclose(1001, "edge is shutting down")
            while not codes:
                await trio.sleep(0.01)
        assert link.closed is not None
    assert codes == [1001]
