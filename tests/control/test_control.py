"""The control API over real loopback HTTP (hypercorn on trio, httpx as the client)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Final

import httpx
import pytest
import trio

from edge.control.guard import host_is_loopback
from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud
from edge.nurseries.tunnel import TunnelStatus

from ..conftest import CONNECT_WITHIN, TOKEN, fast_tunnel, make_config, until

ORIGIN = "https://app.example"
#: Seconds for a request or what follows it at once, on a busy machine (a bound on failure).
SOON: Final = 30.0


@pytest.fixture
async def daemon(nursery: trio.Nursery, workspace: Path) -> Daemon:
    cfg = make_config(workspace, control=("127.0.0.1", 0), allowed_origins=(ORIGIN,))
    return await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)


@pytest.fixture
async def client(daemon: Daemon) -> httpx.AsyncClient:
    assert daemon.control_url is not None
    async with httpx.AsyncClient(base_url=daemon.control_url, timeout=SOON) as c:
        yield c


async def test_health_and_status_without_a_cloud(client: httpx.AsyncClient) -> None:
    health = (await client.get("/health")).json()
    assert health["status"] == "ok"
    assert health["version"] == "0.1.0"
    assert health["tunnel"] == "disconnected"
    assert health["tools"] == 0 and health["offeredTools"] == 7
    assert health["uptime"] >= 0
    status = (await client.get("/tunnel/status")).json()
    assert status["status"] == "disconnected" and status["url"] is None


async def test_activate_connects_and_never_echoes_the_token(
    client: httpx.AsyncClient, daemon: Daemon, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cloud = await nursery.start(FakeCloud([TOKEN]).serve)
    response = await client.post("/tunnel/activate", json={"jwt": TOKEN, "tunnelUrl": cloud.url})
    assert response.status_code == 202
    assert response.json() == {"ok": True, "status": "connecting", "tunnelUrl": cloud.url}
    assert TOKEN not in response.text
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
        await until(lambda: daemon.tunnel.status is TunnelStatus.CONNECTED)
    status = await client.get("/tunnel/status")
    assert status.json()["status"] == "connected"
    assert status.json()["effectiveTools"] == sorted(
        ["agent_ask", "code", "file_ops", "file_read", "file_write", "grep", "terminal"]
    )
    assert (await client.get("/health")).json()["tools"] == 7
    assert TOKEN not in status.text
    response = await client.post("/tunnel/disconnect")
    assert response.json() == {"status": "disconnected"}
    with trio.fail_after(SOON):
        await cloud.wait_for(lambda: not cloud.connected)
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"{}", '"jwt" is missing'),
        (json.dumps({"jwt": "t"}).encode(), '"tunnelUrl" is missing'),
        (json.dumps({"jwt": "t", "tunnelUrl": "http://x"}).encode(), "ws:// or wss://"),
        (json.dumps({"jwt": 5, "tunnelUrl": "ws://x"}).encode(), '"jwt"'),
        (json.dumps({"jwt": "t", "tunnelUrl": "ws://"}).encode(), "has no host"),
        (b"{" + b'"a":"' + b"x" * 70_000 + b'"}', "over 65536 bytes"),
    ],
)
async def test_bad_bodies_get_400(client: httpx.AsyncClient, body: bytes, message: str) -> None:
    response = await client.post("/tunnel/activate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert (await client.get("/health")).status_code == 200


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nope")).status_code == 404
    assert (await client.get("/tunnel/activate")).status_code == 405


async def test_foreign_host_header_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"host": "evil.example:8660"})
    assert response.status_code == 403
    assert "Host not allowed" in response.json()["error"]
    for host in ("localhost:8660", "127.0.0.1", "[::1]:8660"):
        assert (await client.get("/health", headers={"host": host})).status_code == 200


async def test_cors_for_configured_origins_only(client: httpx.AsyncClient) -> None:
    preflight = {
        "origin": ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    allowed = await client.options("/tunnel/activate", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    private = await client.options(
        "/tunnel/activate", headers={**preflight, "access-control-request-private-network": "true"}
    )
    assert private.headers["access-control-allow-private-network"] == "true"
    simple = await client.get("/health", headers={"origin": ORIGIN})
    assert simple.status_code == 200
    assert simple.headers["access-control-allow-origin"] == ORIGIN

    evil = {**preflight, "origin": "https://evil.example"}
    refused = await client.options("/tunnel/activate", headers=evil)
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    # a "simple" cross-site POST never reaches the handler
    post = await client.post(
        "/tunnel/activate", content=b'{"jwt":"x","tunnelUrl":"ws://127.0.0.1:1/"}',
        headers={"origin": "https://evil.example", "content-type": "text/plain"},
    )
    assert post.status_code == 403


def test_host_header_parsing() -> None:
    assert host_is_loopback("127.0.0.1:8660")
    assert host_is_loopback("localhost")
    assert host_is_loopback("[::1]:8660")
    assert host_is_loopback("127.3.4.5")
    assert not host_is_loopback("")
    assert not host_is_loopback("localhost.evil.example")
    assert not host_is_loopback("10.0.0.1:8660")
    assert not host_is_loopback("[::1")
