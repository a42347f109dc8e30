"""The handshake's leniency: a cloud that answers the capability report with something
other than ``approved_tools`` is served with an empty approval, as the older bridge did."""

from __future__ import annotations

from pathlib import Path

import trio

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud
from edge.nurseries.tunnel import TunnelStatus

from ..conftest import fast_tunnel, make_config, until


async def test_a_ping_and_a_call_before_the_approval_are_answered(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path
) -> None:
    cloud.send_approval = False
    daemon = Daemon(make_config(workspace, cloud), tunnel_options=fast_tunnel())
    await nursery.start(daemon.run)
    with trio.fail_after(30):
        await cloud.wait_connected()  # the report is in; no approval sent
        assert await cloud.ping() >= 0  # answered: the attempt goes on
        result = await cloud.call("terminal", {"command": "echo hi"})
        assert "not approved" in result["error"]
        await until(lambda: daemon.tunnel.status is TunnelStatus.CONNECTED)
        assert cloud.attempts == 1
        await cloud.approve_tools(["terminal"])  # the approval, late, still applies
        await until(lambda: daemon.approved == frozenset({"terminal"}))
        assert (await cloud.call("terminal", {"command": "echo hi"}))["output"] == "hi\n"
        assert cloud.attempts == 1


async def test_silence_after_the_report_still_fails_the_attempt(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path
) -> None:
    cloud.send_approval = False
    options = fast_tunnel(handshake_timeout=0.2)
    daemon = await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=options).run)
    with trio.fail_after(30):
        await until(lambda: "'approved_tools'" in (daemon.tunnel.reason or ""))
        assert daemon.tunnel.status is not TunnelStatus.CONNECTED
