"""``[capture] on_disconnect``: a dropped tunnel leaves captures recording ("keep", the
default: their uplinks retry) or stops them ("stop"); /tunnel/status shows their state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import pytest
import trio

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud
from edge.nurseries.tunnel import TunnelStatus

from ..conftest import CONNECT_WITHIN, fast_tunnel, make_config, until

#: Seconds for what follows a step (a bound on failure on a busy machine).
SOON: Final = 30.0


@pytest.mark.parametrize("policy", ["keep", "stop"])
async def test_a_dropped_tunnel_keeps_or_stops_the_captures(
    nursery: trio.Nursery, workspace: Path, cloud: FakeCloud, policy: str
) -> None:
    cfg = make_config(workspace, cloud, capture_on_disconnect=policy)
    daemon: Daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
    with trio.fail_after(SOON):
        status = await daemon.targets.record.record_start("c1", "tone:440", asr=False)
        assert status["state"] == "running"
        await until(lambda: daemon.captures.status()[0]["frames"] > 0)  # it has recorded
        before = daemon.tunnel.connections
        with daemon.events.subscribe() as events:
            await cloud.drop()
            await until(lambda: daemon.tunnel.connections > before)  # reconnected since
            await until(lambda: daemon.tunnel.status is TunnelStatus.CONNECTED)
            if policy == "stop":
                while (event := await events.receive.receive())["type"] != "capture_ended":
                    pass
                assert Path(event["summary"]["file"]).suffix == ".flac", json.dumps(event)
                assert Path(event["summary"]["file"]).stat().st_size > 0
                assert daemon.targets.tunnel.info()["captures"] == []
                return

            [shown] = daemon.targets.tunnel.info()["captures"]
            assert (shown["chatId"], shown["state"]) == ("c1", "running")
            assert shown["file"] and shown["seconds"] >= 0
            await daemon.targets.record.record_stop("c1")


def test_an_unknown_policy_is_a_config_error(tmp_path: Path) -> None:
    from edge.config import load_config
    from edge.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text('[capture]\non_disconnect = "pause"\n')
    with pytest.raises(ConfigError, match=r'`capture.on_disconnect` must be "keep" or "stop"'):
        load_config(config_file=path)
