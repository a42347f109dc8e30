"""POST /tools/batch: one malformed entry does not fail the others; a per-batch deadline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import httpx
import trio

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud

from ..conftest import CONNECT_WITHIN, fast_tunnel, make_config

#: Seconds for a request on a busy machine (a bound on failure).
SOON: Final = 30.0


def _call(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


async def test_a_malformed_entry_gets_its_own_error_and_the_deadline_cuts_the_rest(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path
) -> None:
    cfg = make_config(workspace, cloud, control=("127.0.0.1", 0))
    daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
    assert daemon.control_url is not None
    async with httpx.AsyncClient(base_url=daemon.control_url, timeout=SOON) as client:
        entries = [
            _call("a", "terminal", {"command": "echo one"}),
            "not an object",
            {"id": "b", "type": "function", "function": {"name": "terminal", "arguments": "{oops"}},
            {"id": "c", "type": "function"},
            _call("d", "terminal", {"command": "echo two"}),
        ]
        answer = await client.post("/tools/batch", json={"toolCalls": entries})
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [r.get("output") for r in results] == ["one\n", None, None, None, "two\n"]
        assert results[1]["error"] == "toolCalls[1] is not an object"
        assert results[2]["error"].startswith("toolCalls[2]: ")
        assert results[3]["error"].startswith("toolCalls[3]: ")
        messages = answer.json()["messages"]
        assert [m["tool_call_id"] for m in messages] == ["a", "1", "b", "c", "d"]

        # A deadline: what still runs then is cancelled (its process with it), the rest is kept.
        slow = [
            _call("fast", "terminal", {"command": "echo quick"}),
            _call("slow", "terminal", {"command": "sleep 30; echo late"}),
        ]
        cut = await client.post("/tools/batch", json={"toolCalls": slow, "deadline": 1})
        assert cut.status_code == 200
        fast, late = cut.json()["results"]
        assert fast["output"] == "quick\n"
        assert late["timed_out"] is True and "deadline of 1 s" in late["error"]
        snapshot = daemon.calls.snapshot(10)
        assert snapshot["inFlight"] == []  # nothing the batch started is left running
        assert snapshot["recent"][0]["outcome"] == "cancelled"

        for bad in (0, -1, "soon", True, 1e9):
            refused = await client.post("/tools/batch", json={"toolCalls": slow, "deadline": bad})
            assert refused.status_code == 400 and '"deadline"' in refused.json()["error"]
