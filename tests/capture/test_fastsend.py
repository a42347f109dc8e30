"""The uplink's synchronous send (``edge.capture.fastsend``) against a real trio-websocket peer."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import pytest
import trio
import trio_websocket
from hypothesis import given, strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from edge.capture.fastsend import FastSend, binary_frame
from edge.net.wsclient import open_ws

#: Seconds one scenario may take on a busy machine (a bound on failure, not a speed).
WITHIN: Final = 30.0
#: Bytes of the messages that fill the socket buffers.
BIG: Final = 64 * 1024


@given(st.binary(max_size=70_000) | st.sampled_from([125, 126, 127, 65535, 65536]).map(bytes))
def test_a_frame_is_one_masked_binary_message_a_server_reads_back(payload: bytes) -> None:
    key = os.urandom(4)
    frame = binary_frame(payload, key)
    server = FrameProtocol(client=False, extensions=[])
    server.receive_bytes(frame)
    [received] = server.received_frames()
    assert received.opcode is Opcode.BINARY and received.message_finished
    assert bytes(received.payload) == payload
    # The header is wsproto's own for a client's frame of this length, the key follows it.
    wsproto_frame = FrameProtocol(client=True, extensions=[]).send_data(payload, True)
    header = len(wsproto_frame) - len(payload) - 4
    assert frame[:header] == wsproto_frame[:header] and frame[header : header + 4] == key


def message(i: int, size: int = BIG) -> bytes:
    """Message ``i``: its number, repeated; any loss, tear or reordering shows."""
    return i.to_bytes(4, "little") * (size // 4)


class Peer:
    """The server's end: what it read, in order, and a way to drop the TCP connection."""

    def __init__(self, received: trio.MemoryReceiveChannel[bytes]) -> None:
        self.received = received
        self.drop = trio.Event()


@asynccontextmanager
async def connection(
    nursery: trio.Nursery, *, small_buffers: bool = False
) -> AsyncIterator[tuple[trio_websocket.WebSocketConnection, Peer]]:
    """A client connection to a loopback server that reads only while the test takes.

    The server's handler passes each message on through an unbuffered channel,
    so it reads (at most two messages ahead) only while the test receives: until
    then the socket buffers fill (small ones, with ``small_buffers``).
    """
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = listeners[0]
    assert isinstance(listener, trio.SocketListener)
    if small_buffers:
        listener.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    port = listener.socket.getsockname()[1]
    send, receive = trio.open_memory_channel[bytes](0)
    peer = Peer(receive)

    async def serve() -> None:
        async with listener:
            stream = await listener.accept()
        async with stream, trio.open_nursery() as inner:
            request = await trio_websocket.wrap_server_stream(inner, stream)
            ws = await request.accept()

            async def relay() -> None:
                async with send:
                    while True:
                        try:
                            data = await ws.get_message()
                        except trio_websocket.ConnectionClosed:
                            return
                        assert isinstance(data, bytes)
                        await send.send(data)

            inner.start_soon(relay)
            await peer.drop.wait()
            inner.cancel_scope.cancel()  # the stream closes: no closing handshake

    async with trio.open_nursery() as servers:
        servers.start_soon(serve)
        async with open_ws(
            f"ws://127.0.0.1:{port}/", headers=[], connect_timeout=WITHIN, max_message_size=1 << 20
        ) as ws:
            if small_buffers:
                sock = ws._stream.socket  # type: ignore[attr-defined]
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            yield ws, peer
        peer.drop.set()


async def stall(ws: trio_websocket.WebSocketConnection, fast: FastSend, peer: Peer) -> int:
    """Fill the server's queues so that it reads no more until the test receives."""
    for i in range(3):
        assert fast.send_now(message(i, 640))
    await trio.testing.wait_all_tasks_blocked()
    return 3


async def test_sends_now_and_awaited_sends_arrive_in_order(nursery: trio.Nursery) -> None:
    with trio.fail_after(WITHIN):
        async with connection(nursery) as (ws, peer):
            fast = FastSend(ws)
            for i in range(20):
                if i % 3 == 2:
                    await ws.send_message(message(i, 640))
                else:
                    assert fast.send_now(message(i, 640))
            got = [await peer.received.receive() for _ in range(20)]
            assert got == [message(i, 640) for i in range(20)]


async def test_what_the_socket_did_not_take_goes_first_and_whole(nursery: trio.Nursery) -> None:
    with trio.fail_after(WITHIN):
        async with connection(nursery, small_buffers=True) as (ws, peer):
            fast = FastSend(ws)
            primed = await stall(ws, fast, peer)
            sent = primed
            while fast.send_now(message(sent)):  # until a message is left partly written
                sent += 1
                assert sent < 1000, "the socket buffers never filled"
            # Declined while the rest waits: the awaited send goes next, and blocks.
            assert not fast.send_now(message(sent))
            async with trio.open_nursery() as inner:
                inner.start_soon(ws.send_message, message(sent))
                await trio.testing.wait_all_tasks_blocked()
                assert not fast.send_now(message(sent + 1))  # its send lock is held
                got = [await peer.received.receive() for _ in range(sent + 1)]
            assert got[:primed] == [message(i, 640) for i in range(primed)]
            assert got[primed:] == [message(i) for i in range(primed, sent + 1)]
            # The connection is whole again: sends now go straight through.
            assert fast.send_now(message(sent + 1, 640))
            assert await peer.received.receive() == message(sent + 1, 640)


async def test_a_closed_connection_declines_and_closes_as_the_library_does(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(WITHIN):
        async with connection(nursery) as (ws, peer):
            fast = FastSend(ws)
            assert fast.send_now(message(0, 640))
            assert await peer.received.receive() == message(0, 640)
            await ws.aclose()
            assert ws.closed is not None and ws.closed.code == 1000
            assert not fast.send_now(message(1, 640))
            with pytest.raises(trio_websocket.ConnectionClosed):
                await ws.send_message(message(1, 640))


async def test_a_peer_that_goes_away_never_makes_a_send_now_raise(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(WITHIN):
        async with connection(nursery) as (ws, peer):
            fast = FastSend(ws)
            assert fast.send_now(message(0, 640))
            assert await peer.received.receive() == message(0, 640)
            peer.drop.set()  # the TCP connection closes, without a closing handshake
            while ws.closed is None:
                fast.send_now(message(1, 640))  # committed or declined, never an error
                await trio.sleep(0.001)
            assert ws.closed.code == 1006  # the library's own verdict on the dead link
            assert not fast.send_now(message(2, 640))
            with pytest.raises(trio_websocket.ConnectionClosed):
                await ws.send_message(message(2, 640))
