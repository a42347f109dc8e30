"""One OpenAI-compatible ``chat/completions`` endpoint, streamed: the cloud's or a local one.

httpx carries it (already edge's HTTP client, and it runs under trio); the
server-sent events and the chunks are parsed by ``edge.protocol.sse`` and
``edge.protocol.openai``, plain code. ``GatewayClient`` is opened with ``async
with`` and closes its connections with it.

Every way a turn can fail (no connection, an HTTP error status, a refused
token, a stream that breaks off or carries an error) is a ``GatewayError``
whose message says what happened, where, and never holds the token: a token
that cannot be a header value is refused before it is sent (an HTTP library's
error would quote it), and what the gateway says is scrubbed of it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Final

import httpx
import trio

from ..config import is_loopback
from ..errors import GatewayError
from ..protocol.openai import (
    GatewayStreamError,
    Turn,
    TurnAccumulator,
    error_message,
    parse_data,
)
from ..protocol.sse import SseDecoder, SseError
from ..secret import Secret, scrub

log = logging.getLogger(__name__)

#: Seconds to connect, and to wait for each piece of a stream (a local model may think a while
#: before its first token: the read timeout is long, and ``stop`` ends a turn at any time).
CONNECT_TIMEOUT: Final = 10.0
READ_TIMEOUT: Final = 300.0
#: Most bytes of an error body read to find its message.
MAX_ERROR_BODY: Final = 64 * 1024
#: Most bytes of a whole (non-streamed) answer.
MAX_BODY: Final = 16 * 1024 * 1024

#: Seconds the rest of a stream is read after its [DONE] (its connection then goes back to
#: the pool); a server that keeps it open longer is cut off, the answer kept.
AFTER_DONE: Final = 1.0
#: What a token sent as a header value may hold (visible ASCII).
TOKEN_CHARS: Final = re.compile(r"[\x21-\x7e]+")

#: What receives each piece of text as it arrives.
OnText = Callable[[str], Awaitable[None]]


class GatewayClient:
    """``POST {base_url}/chat/completions`` with ``stream: true``, one turn at a time.

    Args:
        base_url: the API's base (``https://cloud.example/v1``; ``chat/completions`` is below it).
        token: sent as ``Authorization: Bearer``; ``None``: no authorization header.
        transport: for tests that need one; normally httpx's own.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: Secret | None = None,
        name: str = "the model gateway",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name
        self._token = token
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        try:
            url = httpx.URL(self.base_url)
        except httpx.InvalidURL as exc:
            raise GatewayError(f"{name}: {base_url!r} is not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise GatewayError(f"{name}: {base_url!r} is not an http:// or https:// URL")
        if token is not None and not TOKEN_CHARS.fullmatch(token.reveal()):
            raise GatewayError(
                f"{name}: the token holds a space, a line break or a character that is not "
                "ASCII, so it cannot be sent (check the token file)"
            )
        #: A proxy named in the environment is for other hosts, not this machine's.
        self._trust_env = not is_loopback(url.host)

    async def __aenter__(self) -> GatewayClient:
        headers = {"accept": "text/event-stream"}
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token.reveal()}"
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
            transport=self._transport,
            follow_redirects=False,
            trust_env=self._trust_env,
        )
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.__aexit__(exc_type, exc, tb)

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    async def models(self) -> list[str]:
        """The ids ``GET {base_url}/models`` lists (a local server's loaded models).

        Raises:
            GatewayError: no answer, an error status, or not an OpenAI model list.
        """
        client = self._open()
        try:
            reply = await client.get(f"{self.base_url}/models")
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if reply.status_code >= 400:
            raise GatewayError(self._status_text(reply.status_code, reply.text))
        try:
            data = reply.json()["data"]
            return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
        except (ValueError, KeyError, TypeError):
            raise GatewayError(f"{self.name} at {self.base_url} gave no model list") from None

    async def turn(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        tools: Sequence[dict[str, Any]] = (),
        model: str | None = None,
        on_text: OnText | None = None,
    ) -> Turn:
        """One assistant turn for ``messages``: its text (each piece to ``on_text`` as it
        arrives) and the tool calls it asks for.

        Raises:
            GatewayError: the turn failed; the message says how.
        """
        client = self._open()
        body: dict[str, Any] = {"messages": list(messages), "stream": True}
        if model:
            body["model"] = model
        if tools:
            body["tools"] = list(tools)
        accumulator = TurnAccumulator()
        try:
            async with client.stream("POST", self.url, json=body) as reply:
                if reply.status_code >= 400:
                    text = await _read_capped(reply, MAX_ERROR_BODY)
                    raise GatewayError(self._status_text(reply.status_code, text))
                kind = reply.headers.get("content-type", "")
                if "text/event-stream" in kind:
                    await self._read_events(reply, accumulator, on_text)
                else:  # a server that ignored "stream": one whole answer
                    text = await _read_capped(reply, MAX_BODY)
                    piece = accumulator.feed_completion(_json(text, self.name))
                    if piece and on_text is not None:
                        await on_text(piece)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        except (GatewayStreamError, SseError) as exc:
            raise GatewayError(f"{self.name}: {self._clean(str(exc))}") from None
        return accumulator.finish()

    async def _read_events(
        self, reply: httpx.Response, accumulator: TurnAccumulator, on_text: OnText | None
    ) -> None:
        """Read the stream into ``accumulator``, its text to ``on_text`` as it comes.

        The reading task awaits nothing but the next read, and ``on_text`` runs in a task of
        its own, fed through a channel (bounded by the turn's own limit, MAX_TURN_CHARS):
        so a cancellation (Ctrl-C, a client gone) always lands in a read, which ends httpx's
        nested iterators; one landing anywhere else would leave them to the garbage
        collector. After [DONE] the stream is read to its end (for at most ``AFTER_DONE``
        seconds), so that its connection goes back to the pool.
        """
        send, receive = trio.open_memory_channel[str](math.inf)

        async def forward() -> None:
            async with receive:
                async for piece in receive:
                    if on_text is not None:
                        await on_text(piece)

        failure: list[Exception] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward)
            with send:
                try:
                    await self._read_into(reply, accumulator, send)
                except (httpx.HTTPError, GatewayStreamError, SseError) as exc:
                    failure.append(exc)  # raised outside the nursery, as itself
                    nursery.cancel_scope.cancel()
        if failure:
            raise failure[0]

    async def _read_into(
        self,
        reply: httpx.Response,
        accumulator: TurnAccumulator,
        pieces: trio.MemorySendChannel[str],
    ) -> None:
        decoder = SseDecoder()
        done = False
        failure: Exception | None = None
        extra = 0
        with trio.CancelScope() as stop:
            async for data in reply.aiter_raw():
                if done:
                    extra += len(data)
                    if extra > MAX_ERROR_BODY:
                        stop.cancel()  # it goes on after its end: enough
                    continue
                try:
                    for event in decoder.feed(data):
                        if not event.data.strip():
                            continue  # an empty keep-alive event
                        chunk = parse_data(event.data)
                        if chunk is None:  # [DONE]
                            done = True
                            stop.deadline = min(stop.deadline, trio.current_time() + AFTER_DONE)
                            break
                        piece = accumulator.feed(chunk)
                        if piece:
                            pieces.send_nowait(piece)
                except (GatewayStreamError, SseError) as exc:
                    failure = exc
                    stop.cancel()
        if failure is not None:
            raise failure
        if not done:
            decoder.close()

    def _open(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("GatewayClient is used outside `async with`")
        return self._client

    def _unreachable(self, exc: httpx.HTTPError) -> GatewayError:
        if isinstance(exc, httpx.TimeoutException):
            why = "timed out"
        elif isinstance(exc, httpx.RemoteProtocolError):
            why = "the connection broke off mid-answer"
        elif isinstance(exc, httpx.LocalProtocolError):
            why = "the request could not be sent"  # its text may quote a header
        else:
            why = self._clean(str(exc)) or type(exc).__name__
        return GatewayError(f"cannot reach {self.name} at {self.base_url}: {why}")

    def _clean(self, text: str) -> str:
        """``text`` without the token (whole or as a bearer/JWT shape)."""
        if self._token is not None:
            text = text.replace(self._token.reveal(), "***")
        return scrub(text)

    def _status_text(self, status: int, body: str) -> str:
        message = self._clean(_error_message(body))
        said = f": {message}" if message else ""
        if status in (401, 403):
            return f"{self.name} refused the token (HTTP {status}){said}"
        return f"{self.name} answered HTTP {status}{said}"


async def _read_capped(reply: httpx.Response, limit: int) -> str:
    """At most ``limit`` bytes of the body, as text."""
    chunks: list[bytes] = []
    size = 0
    with trio.CancelScope() as stop:  # a cancelled read ends httpx's generators cleanly
        async for data in reply.aiter_bytes():
            chunks.append(data)
            size += len(data)
            if size >= limit:
                stop.cancel()
    return b"".join(chunks)[:limit].decode("utf-8", "replace")


def _json(text: str, name: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise GatewayError(
            f"{name} answered with something that is not JSON: {text[:200]!r}"
        ) from None


def _error_message(body: str) -> str:
    """The message of an OpenAI-shaped error body, else the body's start."""
    try:
        message = error_message(json.loads(body))
    except ValueError:
        message = None
    return (message or body.strip())[:300]
