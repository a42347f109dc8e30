"""Envelopes over a trio stream: ``edge.protocol.rpc`` frames read and written, both sides.

``Channel.receive`` reads only as many bytes as the next frame still needs
(the prefix first, so an oversized frame is refused before its body is read),
and raises ``RpcProtocolError`` for a broken frame, ``EOFError`` at the end.
``Channel.send`` writes one frame; callers that send from several tasks keep one
writer task (the host and the runner both do) so frames never interleave.
"""

from __future__ import annotations

from typing import Final

import trio

from ..protocol.rpc import MAX_DEPTH, MAX_FRAME, Envelope, FrameDecoder, encode_frame

__all__ = ["Channel"]

#: Most bytes read from the socket at once.
READ_CHUNK: Final = 65536


class Channel:
    """One end of a runner connection."""

    def __init__(
        self, stream: trio.abc.Stream, max_size: int = MAX_FRAME, max_depth: int = MAX_DEPTH
    ) -> None:
        self.stream = stream
        self.max_size = max_size
        self._decoder = FrameDecoder(max_size, max_depth)

    async def receive(self) -> Envelope:
        """The next envelope.

        Raises:
            RpcProtocolError: the frame breaks the protocol (too large, too deep,
                not msgpack, not an envelope).
            EOFError: the other end closed the connection.
        """
        while (envelope := self._decoder.next()) is None:
            data = await self.stream.receive_some(min(READ_CHUNK, self._decoder.wanted()))
            if not data:
                raise EOFError("the connection was closed")
            self._decoder.feed(data)
        return envelope

    async def send(self, envelope: Envelope) -> None:
        """Write one frame (``RpcProtocolError`` if it cannot be encoded or is too large)."""
        await self.stream.send_all(encode_frame(envelope, self.max_size))

    async def aclose(self) -> None:
        await self.stream.aclose()
