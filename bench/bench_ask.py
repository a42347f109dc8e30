"""``edge ask`` benchmark: time to the first token through the daemon, against the gateway direct.

In one run, against one fake gateway (``edge.dev.gateway``, real HTTP on
loopback) named by one fake cloud, both in an ``edge dev-cloud`` process of
their own (as a real gateway is another machine's process):

- **direct**: this process asks the gateway itself (``GatewayClient``, the
  client the daemon uses, kept open as the daemon keeps its own, and with the
  same tools in the request), and the time is taken from the request to the
  first piece of text;
- **through the daemon**: this process asks a real ``edge run`` subprocess
  (``POST /ask`` on its control API, as ``edge ask`` does); the daemon asks
  the gateway under the tunnel's token, and the time is taken to the first
  ``text`` event of its stream.

The two take turns question by question, so both see the same machine; the
daemon's hop is the difference of the p50s (target: under 5 ms).

    python bench/bench_ask.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import trio

from edge.gateway import GatewayClient
from edge.secret import Secret

TOKEN = "bench-token"
QUESTION = [{"role": "user", "content": "hello"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def direct(client: GatewayClient, tools: list[dict[str, Any]]) -> float:
    """Seconds from the request to the first text, asking the gateway itself (with the
    tools the daemon offers, so both requests are the same)."""
    first: list[float] = []
    began = time.perf_counter()

    async def on_text(piece: str) -> None:
        if not first:
            first.append(time.perf_counter())

    await client.turn(QUESTION, tools=tools, on_text=on_text)
    return first[0] - began


async def through_daemon(client: httpx.AsyncClient) -> float:
    """Seconds from the request to the first text event of the daemon's /ask stream."""
    first = 0.0
    began = time.perf_counter()
    async with (
        client.stream("POST", "/ask", json={"messages": QUESTION}) as reply,
        aclosing(reply.aiter_lines()) as lines,
    ):
        async for line in lines:
            if not first and line and json.loads(line).get("type") == "text":
                first = time.perf_counter()
    assert first, "the daemon's stream held no text"
    return first - began


def row(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[int(len(ms) * 0.95) - 1]
    return f"{name:<22} p50 {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   n={len(ms)}"


async def wait_for(client: httpx.AsyncClient, path: str, ready: Any) -> Any:
    """GET ``path`` until ``ready(answer)`` (a process coming up), at most 60 s."""
    with trio.fail_after(60):
        while True:
            try:
                answer = (await client.get(path)).json()
                if ready(answer):
                    return answer
            except httpx.HTTPError:
                pass
            await trio.sleep(0.05)


async def main(rounds: int) -> None:
    cloud_port, gateway_port, port = free_port(), free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}/v1"
    with tempfile.TemporaryDirectory() as tmp:
        cloud = await trio.lowlevel.open_process(
            [sys.executable, "-m", "edge", "dev-cloud", "--port", str(cloud_port),
             "--gateway-port", str(gateway_port), "--token", TOKEN],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        config = Path(tmp) / "config.toml"
        config.write_text(
            f'[policy]\nworkspace = "{tmp}/ws"\n[plugins]\ndirs = ["{tmp}/p"]\n'
            f'[tools]\ndirs = ["{tmp}/t"]\n[mcp]\nservers = "{tmp}/mcp.json"\n'
        )
        env = {**os.environ, "EDGE_TOKEN": TOKEN, "XDG_STATE_HOME": f"{tmp}/state"}
        cmd = [
            sys.executable, "-m", "edge", "run", "--config", str(config),
            "--cloud", f"ws://127.0.0.1:{cloud_port}/tunnel", "--control", f"127.0.0.1:{port}",
            "--log-level", "WARNING",
        ]  # fmt: skip
        daemon = await trio.lowlevel.open_process(cmd, env=env, stdin=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            async with (
                httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30.0)) as client,
                GatewayClient(gateway_url, token=Secret(TOKEN)) as gw,
            ):
                await wait_for(client, "/health", lambda h: h.get("tunnel") == "connected")
                tools = (await client.get("/tools/openai")).json()["tools"]
                for _ in range(10):  # warm both paths
                    await direct(gw, tools)
                    await through_daemon(client)
                a: list[float] = []
                b: list[float] = []
                h: list[float] = []
                for _ in range(rounds):
                    a.append(await direct(gw, tools))
                    b.append(await through_daemon(client))
                    began = time.perf_counter()
                    await client.get("/health")
                    h.append(time.perf_counter() - began)
        finally:
            for proc in (daemon, cloud):
                proc.terminate()
                with trio.CancelScope(shield=True):
                    await proc.wait()
    print("edge ask: time to the first token (fake gateway in its own process, one run)")
    print(row("direct (GatewayClient)", a))
    print(row("through the daemon", b))
    print(row("daemon's GET /health", h))
    hop = statistics.median(b) - statistics.median(a)
    plain = statistics.median(h)
    print(f"the daemon's hop: {hop * 1000:+.2f} ms at p50 (target: under 5 ms), of which "
          f"{plain * 1000:.2f} ms is what any control-API request costs (GET /health)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 questions a side, not 300")
    trio.run(main, 50 if parser.parse_args().quick else 300)
