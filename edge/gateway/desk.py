"""The daemon's side of ``POST /ask``: the cloud's gateway, the tunnel's token, the cloud's tools.

``AskDesk`` is what the control API's ``/ask`` route drives
(``edge.control.ask.AskControl``). The daemon makes it from callables (the
live token, the gateway's URL, the effective tools, the tool path) and a
``GatewayClients`` it owns and closes, so it imports nothing of the daemon.

``GatewayClients`` keeps one open client for the gateway and token in use: a
question reuses its pooled connection instead of a new TLS context and
handshake (about 30 ms here) each time.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import GatewayError
from ..secret import Secret
from .client import GatewayClient
from .loop import Emit, RunTool, converse

log = logging.getLogger(__name__)

#: What ``edge ask`` says when the daemon holds no token.
NOT_CONNECTED: Final = (
    "edge is not connected to the cloud (it holds no token): connect it from the cloud's "
    "web page, or run `edge run --cloud URL --token-file FILE`; or use --offline to ask a "
    "model server on this machine"
)
#: What it says when no gateway URL is known.
NO_GATEWAY: Final = (
    "the cloud named no model gateway and [gateway] url is not set in the config; "
    "or use --offline to ask a model server on this machine"
)


class GatewayClients:
    """One open ``GatewayClient`` per (URL, token) in use; ``aclose`` closes them all.

    A client replaced by a new URL or token is closed once the questions using it end.
    """

    def __init__(self) -> None:
        self._key: tuple[str, Secret] | None = None
        self._client: GatewayClient | None = None
        self._users: dict[GatewayClient, int] = {}

    @asynccontextmanager
    async def use(self, url: str, token: Secret) -> AsyncIterator[GatewayClient]:
        """The client for ``url`` and ``token`` (opened on first use), for one question."""
        if self._client is None or self._key != (url, token):
            old = self._client
            client = GatewayClient(url, token=token, name="the cloud's model gateway")
            await client.__aenter__()
            self._key, self._client = (url, token), client
            self._users[client] = 0
            if old is not None and self._users.get(old) == 0:
                await self._close(old)
        client = self._client
        self._users[client] += 1
        try:
            yield client
        finally:
            self._users[client] -= 1
            if client is not self._client and self._users[client] == 0:
                await self._close(client)

    async def _close(self, client: GatewayClient) -> None:
        self._users.pop(client, None)
        await client.__aexit__(None, None, None)

    async def aclose(self) -> None:
        self._key = self._client = None
        for client in list(self._users):
            await self._close(client)


@dataclass(frozen=True, slots=True)
class AskDesk:
    """Questions through the cloud's model gateway, under the tunnel's token."""

    #: The tunnel's token now (``None``: not given one).
    token: Callable[[], Secret | None]
    #: The gateway's base URL now (the config's, else the one the cloud named).
    url: Callable[[], str | None]
    #: The effective tools (approved and allowed) in OpenAI form.
    tools: Callable[[], list[dict[str, Any]]]
    #: The path every tool call takes (the workers, the cloud's approval, the policy).
    run_tool: RunTool
    #: The model asked for when a question names none (``None``: the gateway's default).
    model: str | None = None
    #: The open clients (the daemon's; it closes them when it stops).
    clients: GatewayClients = field(default_factory=GatewayClients)

    def ask_problem(self) -> str | None:
        if self.token() is None:
            return NOT_CONNECTED
        if not self.url():
            return NO_GATEWAY
        return None

    async def ask(self, messages: list[dict[str, Any]], model: str | None, emit: Emit) -> None:
        token, url = self.token(), self.url()
        if token is None or not url:  # gone since ask_problem
            raise GatewayError(self.ask_problem() or NOT_CONNECTED)
        async with self.clients.use(url, token) as client:
            answer = await converse(
                client,
                list(messages),
                run_tool=self.run_tool,
                emit=emit,
                tools=self.tools(),
                model=model or self.model,
            )
        log.info("ask: answered in %d turn(s) by %s", answer.rounds, answer.model or "the gateway")
