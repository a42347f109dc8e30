"""Minimal tunnel clients: the yardsticks edge's per-message cost is measured against.

Each connects to a cloud with a Bearer token, sends a capability report offering
one tool (``file_read``), answers pings and runs ``file_read`` calls inline, one at
a time: one loop reads a frame, handles it and answers before reading the next.
No validation, no policy, no concurrency, no journal: the least a client can do.

    python bench/baseline_client.py asyncio|trio|wsproto URL TOKEN WORKSPACE

``asyncio`` uses the ``websockets`` library (``pip install websockets``), ``trio``
uses trio-websocket, as edge does; ``wsproto`` uses trio with the wsproto
state machine directly (one task that reads, answers and writes: the floor of a
trio WebSocket peer). They are measuring sticks for ``bench/``, not part
of edge (edge never runs on asyncio).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def report() -> str:
    return json.dumps(
        {
            "type": "capability_report",
            "protocolVersion": 1,
            "edgeVersion": "baseline",
            "platform": sys.platform,
            "hostname": "baseline",
            "audioSources": [],
            "tools": [
                {
                    "name": "file_read",
                    "description": "read a file",
                    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
                }
            ],
            "extensions": [],
            "limits": {},
        }
    )


def answer(text: str | bytes, workspace: Path) -> str | None:
    """The reply to one frame, or ``None``."""
    frame: Any = json.loads(text)
    if frame.get("type") == "ping":
        return '{"type":"pong"}'
    if frame.get("type") == "connected":
        return report()
    if frame.get("method") == "tool_call":
        params = frame["params"]
        try:
            output: dict[str, Any] = {"output": (workspace / params["args"]["path"]).read_text()}
        except (OSError, KeyError, TypeError) as exc:
            output = {"error": str(exc)}
        return json.dumps({"jsonrpc": "2.0", "id": frame["id"], "result": output})
    return None


def run_asyncio(url: str, token: str, workspace: Path) -> None:
    import asyncio

    import websockets

    async def main() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
            async for message in ws:
                reply = answer(message, workspace)
                if reply is not None:
                    await ws.send(reply)

    asyncio.run(main())


def run_trio(url: str, token: str, workspace: Path) -> None:
    import trio
    import trio_websocket

    async def main() -> None:
        headers = [(b"Authorization", f"Bearer {token}".encode())]
        async with trio_websocket.open_websocket_url(
            url, extra_headers=headers, message_queue_size=0, max_message_size=2**30
        ) as ws:
            while True:
                reply = answer(await ws.get_message(), workspace)
                if reply is not None:
                    await ws.send_message(reply)

    trio.run(main)


def run_wsproto(url: str, token: str, workspace: Path) -> None:
    """trio with wsproto directly: one task reads, handles and writes, no library tasks."""
    import urllib.parse

    import trio
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import (
        AcceptConnection,
        CloseConnection,
        Message,
        Ping,
        Request,
        TextMessage,
    )

    async def main() -> None:
        parts = urllib.parse.urlsplit(url)
        stream = await trio.open_tcp_stream(parts.hostname or "", parts.port or 80)
        ws = WSConnection(ConnectionType.CLIENT)
        headers = [(b"Authorization", f"Bearer {token}".encode())]
        host = f"{parts.hostname}:{parts.port}"
        await stream.send_all(
            ws.send(Request(host=host, target=parts.path or "/", extra_headers=headers))
        )
        parts_of: list[str] = []
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(data)
            out = b""
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    continue
                if isinstance(event, Ping):
                    out += ws.send(event.response())
                elif isinstance(event, CloseConnection):
                    return
                elif isinstance(event, Message):
                    parts_of.append(event.data)
                    if event.message_finished:
                        text, parts_of[:] = "".join(parts_of), []
                        reply = answer(text, workspace)
                        if reply is not None:
                            out += ws.send(TextMessage(data=reply))
            if out:
                await stream.send_all(out)

    trio.run(main)


def main() -> None:
    kind, url, token, workspace = sys.argv[1:5]
    runners = {"asyncio": run_asyncio, "trio": run_trio, "wsproto": run_wsproto}
    try:
        runners[kind](url, token, Path(workspace))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # the connection closing ends the client
        if "Closed" not in type(exc).__name__:
            raise


if __name__ == "__main__":
    main()
