"""Writing a binary message to a trio-websocket connection without a schedule point.

``WebSocketConnection.send_message`` passes several schedule points per message
(its send lock, then trio's socket send and its checkpoints), so a task sending
one small message per audio frame yields to every other ready task as many
times: with many captures woken together, each frame's send waits for the
whole burst, several times over. ``FastSend.send_now`` is synchronous: it
frames the message and writes it with one non-blocking ``write``, when that
cannot come between two writes of the library:

- the connection is a client's, open (for wsproto too: no close received), and
  its stream is plain TCP (``trio.SocketStream``);
- no task holds the library's send lock, which every write of the library
  takes (a task queued on it implies it is held), and nothing else runs
  between that check and the ``write``.

The frame is what the connection's wsproto would make of a ``BytesMessage``
(RFC 6455 §5.2: FIN and the binary opcode, the length, a fresh masking key,
the masked payload), made here with one integer XOR instead of wsproto's
copies and its ``os.urandom(4)`` per frame: the keys come from a pool of
``os.urandom`` bytes, as unpredictable as §5.3 asks. trio-websocket offers no
extensions, so none can be negotiated that would change a data frame; and a
complete message leaves wsproto's state as it was.

What the socket does not take at once (a full send buffer, a broken link) is
kept and written first by the connection's next write, whoever makes it: the
connection's stream is wrapped, once, in ``_RestFirst``. A later ``send_now``
declines while anything is kept, so the awaited path (``send_message``) goes
next, and with it the library's error and close handling. Anything else (TLS,
a lock held, a connection closing) is declined before anything is written.
"""

from __future__ import annotations

import os
import struct
from typing import Final

import trio
import trio_websocket
from wsproto.connection import ConnectionState

#: Masking keys drawn from the OS at a time (4 bytes each).
KEY_POOL: Final = 1024
#: FIN and the binary opcode: the first byte of a complete binary message's frame.
_FIN_BINARY: Final = 0x82
#: The mask bit, in the second byte of every frame a client sends.
_MASKED: Final = 0x80


def binary_frame(payload: bytes, key: bytes) -> bytes:
    """A client's frame holding ``payload`` as one complete binary message, masked with ``key``."""
    n = len(payload)
    if n < 126:
        header = bytes((_FIN_BINARY, _MASKED | n))
    elif n < 1 << 16:
        header = struct.pack("!BBH", _FIN_BINARY, _MASKED | 126, n)
    else:
        header = struct.pack("!BBQ", _FIN_BINARY, _MASKED | 127, n)
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(
        n, "little"
    )
    return header + key + masked


class _RestFirst(trio.abc.Stream):
    """A connection's TCP stream that writes what a ``send_now`` left over before anything else."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self.rest = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.rest:
            data, self.rest = self.rest + bytes(data), b""
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


class FastSend:
    """Synchronous sends of binary messages on one trio-websocket client connection."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws
        stream = ws._stream
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        if not ws.is_client:  # a server's frames are not masked: not what this makes
            self._sock = None
        self._rest: _RestFirst | None = None
        self._keys = b""
        self._next_key = 0

    def send_now(self, payload: bytes) -> bool:
        """Send ``payload`` as one binary message now, without yielding.

        Returns True when the message is committed: written, or (what the socket
        did not take) to be written ahead of the connection's next write. False
        when it cannot be sent this way now (see the module's docstring): nothing
        was sent, and the caller sends it with ``send_message``.
        """
        sock, ws = self._sock, self._ws
        if sock is None or (self._rest is not None and self._rest.rest):
            return False
        if ws._close_reason is not None or ws._wsproto.state is not ConnectionState.OPEN:
            return False
        if ws._stream_lock.locked():
            return False
        fd = sock.fileno()
        if fd < 0:
            return False
        i = self._next_key
        if i == len(self._keys):
            self._keys, i = os.urandom(4 * KEY_POOL), 0
        self._next_key = i + 4
        data = binary_frame(payload, self._keys[i : i + 4])
        try:
            written = os.write(fd, data)
        except OSError:
            # Full (BlockingIOError) or broken: the next write of the connection
            # sends it, or raises what the library turns into its close handling.
            written = 0
        if written < len(data):
            if self._rest is None:
                stream = ws._stream
                assert isinstance(stream, trio.SocketStream)
                self._rest = ws._stream = _RestFirst(stream)
            self._rest.rest = data[written:]
        return True
