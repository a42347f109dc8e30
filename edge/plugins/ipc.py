"""Envelopes over a trio stream: ``edge.protocol.rpc`` frames read and written, both sides.

``Channel.receive`` reads up to ``READ_CHUNK`` bytes at a time (more only
when a frame of an allowed size still needs them): the decoder checks each
frame's length from its prefix the moment the prefix arrives, so an oversized
frame is refused after one read at most, never buffered. It raises
``RpcProtocolError`` for a broken frame, ``EOFError`` at the end.

``Channel.send`` writes one frame, from whichever task has one to send (no
hop through a writer task): a FIFO lock keeps frames whole and in order, and
the write itself is shielded from the sender's cancellation (a frame cut in
half would break the stream for everyone) but bounded by ``send_timeout``: a
peer that stops reading for that long breaks the channel
(``trio.BrokenResourceError``) instead of holding senders for ever.
"""

from __future__ import annotations

from typing import Final

import trio

from ..protocol.rpc import (
    MAX_DEPTH,
    MAX_FRAME,
    Envelope,
    FrameDecoder,
    RpcProtocolError,
    decode_body,
    encode_frame,
)

__all__ = ["Channel"]

#: Most bytes read from the socket at once.
READ_CHUNK: Final = 65536
#: Frames larger than this (bytes) are decoded in a worker thread.
INLINE_DECODE: Final = 65536
#: Seconds one frame may take to go out before the channel counts as broken.
SEND_TIMEOUT: Final = 10.0


class Channel:
    """One end of a runner connection."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        max_size: int = MAX_FRAME,
        max_depth: int = MAX_DEPTH,
        send_timeout: float = SEND_TIMEOUT,
    ) -> None:
        self.stream = stream
        self.max_size = max_size
        self.send_timeout = send_timeout
        self._decoder = FrameDecoder(max_size, max_depth)
        self._lock = trio.StrictFIFOLock()
        self._broken: str | None = None

    async def receive(self) -> Envelope:
        """The next envelope.

        Raises:
            RpcProtocolError: the frame breaks the protocol (too large, too deep,
                not msgpack, not an envelope).
            EOFError: the other end closed the connection.
        """
        while (body := self._decoder.next_body()) is None:
            data = await self.stream.receive_some(max(READ_CHUNK, self._decoder.wanted()))
            if not data:
                raise EOFError("the connection was closed")
            self._decoder.feed(data)
        try:
            if len(body) <= INLINE_DECODE:
                return decode_body(body, self._decoder.max_depth)
            # A large frame is decoded (and its shape checked) off the event loop.
            return await trio.to_thread.run_sync(decode_body, body, self._decoder.max_depth)
        except RpcProtocolError as exc:
            self._decoder.fail(str(exc))

    async def send(self, envelope: Envelope) -> None:
        """Write one frame, whole, after the frames other tasks are writing.

        Raises:
            RpcProtocolError: ``envelope`` cannot be encoded, or is too large.
            trio.BrokenResourceError: the connection is broken, or the peer read
                nothing for ``send_timeout`` seconds (then it stays broken).
        """
        data = encode_frame(envelope, self.max_size)
        async with self._lock:
            if self._broken is not None:
                raise trio.BrokenResourceError(self._broken)
            deadline = trio.current_time() + self.send_timeout
            with trio.CancelScope(shield=True, deadline=deadline) as scope:
                await self.stream.send_all(data)
            if scope.cancelled_caught:
                self._broken = f"the other end read nothing for {self.send_timeout:g} s"
                raise trio.BrokenResourceError(self._broken)

    async def aclose(self) -> None:
        await self.stream.aclose()
