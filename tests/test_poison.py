"""Replies that carry text UTF-8 cannot hold still go out, and nothing behind them is stuck.

A lone surrogate reaches a reply as a call id the cloud sent as ``"\\udc80"``, or
as a file name that is not valid UTF-8 (shown with ``surrogateescape``). Each is
escaped on the wire; the connection stays up and later results are delivered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import trio

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud

from .conftest import fast_tunnel, make_config

NOT_UTF8: bytes = b"caf\xe9.txt"


async def test_a_poison_id_is_answered_and_the_next_call_too(
    edge: Daemon, cloud: FakeCloud
) -> None:
    connections = edge.tunnel.connections
    with trio.fail_after(10):
        await cloud.send('{"jsonrpc":"2.0","id":"bad\\udc80id","method":"tool_call",'
                         '"params":{"tool":"no_such_tool"}}')
        result = await cloud.result("bad\udc80id")
        assert "no_such_tool" in result["error"]
        assert (await cloud.call("file_ops", {"op": "list", "path": "."}))["output"] == ""
    assert edge.tunnel.connections == connections  # never reconnected


async def test_a_file_name_that_is_not_utf8_lists_and_reads_back(
    edge: Daemon, cloud: FakeCloud, workspace: Path
) -> None:
    with open(os.path.join(os.fsencode(workspace), NOT_UTF8), "wb") as f:
        f.write(b"hello from a latin-1 name\n")
    with trio.fail_after(10):
        listed = await cloud.call("file_ops", {"op": "list", "path": "."})
        (entry,) = listed["entries"]
        name = entry["name"]
        assert name.encode("utf-8", "surrogateescape") == NOT_UTF8
        # The name the cloud got back works as a path: the same bytes on disk.
        read = await cloud.call("file_read", {"path": name})
        assert read["output"] == "hello from a latin-1 name\n"
        missing = await cloud.call("file_read", {"path": name + "\udc80"})
        assert "error" in missing
        assert (await cloud.call("file_ops", {"op": "stat", "path": "."}))["type"] == "dir"


async def test_the_control_api_replies_with_such_names_too(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path
) -> None:
    (workspace / "plain.txt").write_text("x")
    with open(os.path.join(os.fsencode(workspace), NOT_UTF8), "wb"):
        pass
    cfg = make_config(workspace, cloud, control=("127.0.0.1", 0))
    daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(10):
        await cloud.wait_connected()
    call = {"id": "c1", "type": "function",
            "function": {"name": "file_ops", "arguments": '{"op": "list", "path": "."}'}}
    async with httpx.AsyncClient(base_url=daemon.control_url, timeout=10) as client:
        response = await client.post("/tools/batch", json={"toolCalls": [call]})
    assert response.status_code == 200
    response.content.decode("utf-8")  # valid UTF-8 throughout
    names = {e["name"] for e in json.loads(response.content)["results"][0]["entries"]}
    assert names == {"plain.txt", NOT_UTF8.decode("utf-8", "surrogateescape")}
