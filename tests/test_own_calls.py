"""Calls edge itself runs on the workers (``edge tools call`` through the daemon, ``/ask``'s
tools) are not the cloud's: neither its cancel nor a disconnect stops them."""

from __future__ import annotations

import trio

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud

from .conftest import until


async def test_a_local_call_outlives_the_clouds_cancel_and_a_disconnect(
    edge: Daemon, cloud: FakeCloud
) -> None:
    results: list[dict[str, object]] = []
    call_tool = edge.targets.call_tool
    assert call_tool is not None

    async def local_call() -> None:
        results.append(await call_tool("terminal", {"command": "sleep 0.5; echo done"}))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(local_call)
            await until(lambda: bool(edge.calls.snapshot(10)["inFlight"]))
            [running] = edge.calls.snapshot(10)["inFlight"]
            assert running["id"].startswith("local-")
            await cloud.cancel(running["id"])  # the cloud saw the id on /calls: still not its call
            cloud_call = await cloud.start_call("terminal", {"command": "sleep 5"})
            await until(lambda: len(edge.calls.snapshot(10)["inFlight"]) == 2)
            edge.targets.tunnel.disconnect()  # cancels the cloud's call, not the local one
        [result] = results
        assert result.get("output") == "done\n", result
    finished = {c["id"]: c for c in edge.calls.snapshot(10)["recent"]}
    assert finished[running["id"]]["outcome"] == "ok"
    assert finished[str(cloud_call)]["outcome"] == "cancelled"
