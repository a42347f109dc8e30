"""The tunnel end to end: a real daemon against the fake cloud over loopback."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import pytest
import trio

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud
from edge.net.backoff import Backoff
from edge.nurseries.tunnel import HISTORY, TunnelOptions, TunnelStatus
from edge.protocol import MAX_FRAME_CHARS, PROTOCOL_VERSION

from ..conftest import (
    CONNECT_WITHIN,
    TOKEN,
    child_processes,
    fast_tunnel,
    make_config,
    open_fds,
    processes_in_group,
    task_tree,
    until,
)

pytestmark = pytest.mark.usefixtures("no_child_left")


async def test_handshake_reports_capabilities(edge: Daemon, cloud: FakeCloud) -> None:
    assert cloud.auth_headers[-1] == f"Bearer {TOKEN}"
    # The first report goes before the sound server is asked; the audio sources come in the
    # report announced again once everything has started.
    with trio.fail_after(10):
        await cloud.wait_for(lambda: cloud.report and cloud.report["audioSources"])
    assert cloud.handshakes == 1
    report = cloud.report
    assert report is not None
    assert report["protocolVersion"] == PROTOCOL_VERSION
    assert report["edgeVersion"] == "0.1.0"
    assert set(report["extensions"]) >= {"cancel", "outbox", "progress", "schedule"}
    tools = {t["name"]: t for t in report["tools"]}
    assert set(tools) == {
        "terminal", "code", "file_read", "file_write", "file_ops", "grep", "agent_ask"
    }
    assert tools["terminal"]["input_schema"]["required"] == ["command"]
    assert {s["id"] for s in report["audioSources"]} >= {"mic", "system", "tone:FREQ", "file:PATH"}
    assert edge.tunnel.status is TunnelStatus.CONNECTED
    assert edge.tunnel.user_id == "user-1"


async def test_every_builtin_tool_through_the_tunnel(edge: Daemon, cloud: FakeCloud, workspace: Path) -> None:
    with trio.fail_after(10):
        assert (await cloud.call("terminal", {"command": "echo hi"})) == {"output": "hi\n", "exit_code": 0}
        assert (await cloud.call("code", {"language": "python", "source": "print(2**10)"}))["output"] == "1024\n"
        assert (await cloud.call("file_write", {"path": "f.txt", "content": "abc\n"}))["bytes"] == 4
        assert (await cloud.call("file_read", {"path": "f.txt"}))["output"] == "abc\n"
        assert (await cloud.call("grep", {"pattern": "b"}))["output"] == "f.txt:1:abc"
        assert (await cloud.call("file_ops", {"op": "list", "path": "."}))["output"] == "f.txt"


async def test_approvals_and_hot_updates(nursery: trio.Nursery, workspace: Path) -> None:
    cloud = await nursery.start(FakeCloud([TOKEN], approve=["grep"]).serve)
    daemon = await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=fast_tunnel()).run)
    with trio.fail_after(10):
        await cloud.wait_connected()
        result = await cloud.call("terminal", {"command": "echo no"})
        assert result == {"error": "tool 'terminal' is not approved by the cloud"}
        await cloud.approve_tools(["grep", "terminal"])
        await until(lambda: "terminal" in daemon.approved)
        assert (await cloud.call("terminal", {"command": "echo yes"}))["output"] == "yes\n"
        await cloud.approve_tools([])
        await until(lambda: not daemon.approved)
        assert "not approved" in (await cloud.call("grep", {"pattern": "x"}))["error"]


async def test_the_cloud_cannot_widen_the_local_policy(nursery: trio.Nursery, workspace: Path) -> None:
    cloud = await nursery.start(FakeCloud([TOKEN], approve=["terminal", "grep"]).serve)
    cfg = make_config(workspace, cloud, allow_tools=frozenset({"grep"}))
    daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(10):
        await cloud.wait_connected()
        assert cloud.report is not None
        assert [t["name"] for t in cloud.report["tools"]] == ["grep"]
        result = await cloud.call("terminal", {"command": "echo no"})
        assert result == {"error": "tool 'terminal' is not allowed by the local policy"}
        assert daemon.effective_tools() == {"grep"}


async def test_bad_input_gets_error_results_and_the_tunnel_keeps_serving(
    edge: Daemon, cloud: FakeCloud
) -> None:
    with trio.fail_after(15):
        await cloud.send("this is not json")
        await cloud.send('{"type": 5}')
        await cloud.send({"jsonrpc": "2.0", "id": 1.5, "method": "tool_call", "params": {}})
        await cloud.send("x" * (MAX_FRAME_CHARS + 10))
        await cloud.wait_for(lambda: len([f for f in cloud.frames if isinstance(f, dict) and f.get("id", 0) is None]) >= 4)
        errors = [f["error"]["message"] for f in cloud.frames if isinstance(f, dict) and "error" in f]
        assert any("not valid JSON" in e for e in errors)
        assert any("limit" in e for e in errors)
        await cloud.send({"jsonrpc": "2.0", "id": "p", "method": "tool_call", "params": {"tool": 3}})
        assert "non-empty string" in (await cloud.result("p"))["error"]
        await cloud.send({"jsonrpc": "2.0", "id": "a", "method": "tool_call", "params": {"tool": "grep", "args": "x"}})
        assert "must be an object" in (await cloud.result("a"))["error"]
        await cloud.send({"jsonrpc": "2.0", "id": "m", "method": "self_destruct"})
        assert "unknown method" in (await cloud.result("m"))["error"]
        assert (await cloud.call("no_such_tool", {}))["error"] == "unknown tool 'no_such_tool'"
        result = await cloud.call("file_read", {"path": "../../etc/passwd"})
        assert "outside the allowed roots" in result["error"]
        result = await cloud.call("terminal", {"command": ["ls"]})
        assert "is not of type 'string'" in result["error"]
        # still serving, on the same connection
        assert (await cloud.call("terminal", {"command": "echo alive"}))["output"] == "alive\n"
        assert edge.tunnel.connections == 1


async def test_duplicate_id_in_flight_is_refused(edge: Daemon, cloud: FakeCloud) -> None:
    with trio.fail_after(10):
        await cloud.start_call("terminal", {"command": "sleep 0.5; echo first"}, call_id="dup")
        await until(lambda: edge.workers.in_flight == 1)
        await cloud.start_call("terminal", {"command": "echo second"}, call_id="dup")
        first = await cloud.result("dup")
        assert "already in flight" in first["error"]
        await until(lambda: edge.workers.in_flight == 0)
        await trio.sleep(0.05)
        assert cloud.duplicate_results == 1


async def test_pong_is_not_delayed_by_a_slow_call(edge: Daemon, cloud: FakeCloud) -> None:
    with trio.fail_after(10):
        call = await cloud.start_call("terminal", {"command": "sleep 1"})
        await until(lambda: edge.workers.running == 1)
        latency = await cloud.ping()
        assert call not in cloud.results
        assert latency < 0.5  # a generous bound: the point is that it does not wait 1 s
        await cloud.result(call)


async def test_cancel_an_in_flight_call(edge: Daemon, cloud: FakeCloud, workspace: Path) -> None:
    with trio.fail_after(10):
        call = await cloud.start_call("terminal", {"command": "echo $$ > pgid; sleep 30"})
        await until(lambda: (workspace / "pgid").exists() and (workspace / "pgid").read_text().strip() != "")
        await cloud.cancel(call)
        result = await cloud.result(call)
    assert result == {"error": "cancelled by the cloud", "cancelled": True}
    assert processes_in_group(int((workspace / "pgid").read_text())) == []


async def test_reconnects_after_a_dropped_socket(edge: Daemon, cloud: FakeCloud) -> None:
    with trio.fail_after(10):
        await cloud.drop()
        await cloud.wait_connected(2)
        assert (await cloud.call("terminal", {"command": "echo back"}))["output"] == "back\n"
        await cloud.drop(code=1001)
        await cloud.wait_connected(3)
        await until(lambda: edge.tunnel.status is TunnelStatus.CONNECTED)
    assert edge.tunnel.connections == 3


async def test_result_of_a_call_that_outlives_its_connection_is_delivered(
    edge: Daemon, cloud: FakeCloud
) -> None:
    with trio.fail_after(10):
        call = await cloud.start_call("terminal", {"command": "sleep 0.4; echo survived"})
        await until(lambda: edge.workers.running == 1)
        cloud.refuse_status = 503
        await cloud.drop()
        await until(lambda: edge.workers.in_flight == 0)
        assert call not in cloud.results
        assert len(edge.tunnel.outbox) == 1
        cloud.refuse_status = None
        assert (await cloud.result(call))["output"] == "survived\n"


async def test_unconfirmed_results_are_sent_again_after_a_drop(
    edge: Daemon, cloud: FakeCloud
) -> None:
    # The cloud answers no ping, so it has confirmed nothing: after a drop, edge
    # sends the result again and the cloud deduplicates it by id.
    cloud.answer_pings = False
    with trio.fail_after(10):
        assert (await cloud.call("terminal", {"command": "echo once"}))["output"] == "once\n"
        await cloud.wait_for(lambda: cloud.pings_unanswered >= 1)
        await cloud.drop()
        await cloud.wait_connected(2)
        await cloud.wait_for(lambda: cloud.duplicate_results == 1)
    assert len(edge.tunnel.outbox) == 1  # sent again, not yet confirmed
    assert edge.tunnel.info()["resent"] == 1


async def test_heartbeat_confirms_results(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path
) -> None:
    # Not the prompt confirmation (an hour away): the heartbeat's own ping.
    options = fast_tunnel(heartbeat_interval=0.05, confirm_delay=3600.0)
    daemon = await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=options).run)
    with trio.fail_after(10):
        await cloud.wait_connected()
        await cloud.call("terminal", {"command": "true"})
        await daemon.tunnel.outbox.wait_confirmed()
        await cloud.drop()
        await cloud.wait_connected(2)
        await trio.sleep(0.1)
    assert cloud.duplicate_results == 0


async def test_unauthorized_stops_retrying_until_a_new_token(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path
) -> None:
    cfg = make_config(workspace, cloud)
    cfg.token = type(cfg.token)("wrong-token")  # type: ignore[misc]
    daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(10):
        await until(lambda: daemon.tunnel.status is TunnelStatus.UNAUTHORIZED)
        assert "401" in (daemon.tunnel.reason or "")
        await trio.sleep(0.3)  # several backoff periods
        assert cloud.attempts == 1
        daemon.targets.tunnel.activate(TOKEN, cloud.url)
        await cloud.wait_connected()
        assert (await cloud.call("terminal", {"command": "echo ok"}))["output"] == "ok\n"
    # The new token's attempt does not carry the old token's refusal as its reason.
    history = daemon.tunnel.info()["history"]
    refused = max(i for i, h in enumerate(history) if h["status"] == "unauthorized")
    after = history[refused + 1 :]
    assert after and after[0]["status"] == "connecting" and after[0]["reason"] is None


@pytest.mark.parametrize("code", [4401, 1008])
async def test_unauthorized_close_code(edge: Daemon, cloud: FakeCloud, code: int) -> None:
    with trio.fail_after(10):
        cloud.close_code = code
        await cloud.drop()
        await until(lambda: edge.tunnel.status is TunnelStatus.UNAUTHORIZED)
        attempts = cloud.attempts
        await trio.sleep(0.3)
        assert cloud.attempts == attempts


async def test_handshake_timeouts(nursery: trio.Nursery, cloud: FakeCloud, workspace: Path) -> None:
    cloud.send_connected = False
    options = fast_tunnel(handshake_timeout=0.2)
    daemon = await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=options).run)
    with trio.fail_after(10):
        await until(lambda: "'connected'" in (daemon.tunnel.reason or ""))
        cloud.send_connected = True
        cloud.send_approval = False
        await until(lambda: "'approved_tools'" in (daemon.tunnel.reason or ""))
        assert daemon.tunnel.status is TunnelStatus.CONNECTING
        cloud.send_approval = True
        await until(lambda: daemon.tunnel.status is TunnelStatus.CONNECTED)


async def test_backoff_schedule_on_the_trio_clock(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, mock_clock: trio.testing.MockClock
) -> None:
    # Real loopback I/O, virtual time: the clock jumps only after 20 ms of real idleness.
    mock_clock.autojump_threshold = 0.02
    cloud.refuse_status = 503
    options = TunnelOptions(backoff=Backoff(first=1.0, cap=30.0, jitter=0.0))
    await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=options).run)
    # The first attempts come while the daemon still starts its other children, whose
    # timers the clock may jump to: the schedule is read from the first one after that.
    before = max(cloud.attempts, 1)
    with trio.fail_after(400):
        await cloud.wait_for(lambda: cloud.attempts >= before + 7)
    times = cloud.attempted_at[before - 1 : before + 7]
    gaps = [round(b - a, 1) for a, b in zip(times, times[1:], strict=False)]
    schedule = [1.0, 2.0, 4.0, 8.0, 16.0] + [30.0] * 10
    assert gaps == schedule[before - 1 : before + 6]


async def test_a_cloud_back_after_an_outage_is_tried_again_within_the_cap(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, mock_clock: trio.testing.MockClock
) -> None:
    # The default backoff, jitter included, on virtual time: attempts at 0, 1, 3, 7, 15 and
    # 25 s, then every 10 s (plus up to 10 %), so the cloud is found at most 11 s after it is back.
    mock_clock.autojump_threshold = 0.02
    cloud.refuse_status = 503
    await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=TunnelOptions()).run)
    with trio.fail_after(400):
        await cloud.wait_for(lambda: cloud.attempts >= 6)
        seen, back = cloud.attempts, trio.current_time()
        cloud.refuse_status = None
        await cloud.wait_for(lambda: cloud.attempts > seen)
        found = trio.current_time()
        await cloud.wait_connected()
    assert 10.0 <= found - back <= Backoff().worst_wait == 11.0


async def test_status_changes_are_logged_once(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cloud.refuse_status = 503
    daemon = await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=fast_tunnel()).run)
    with trio.fail_after(10):
        await cloud.wait_for(lambda: cloud.attempts >= 5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "HTTP 503" in w]) == 1
    assert daemon.tunnel.status is TunnelStatus.CONNECTING


async def test_each_failed_attempt_is_logged_with_the_next_one(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A warning for the first failure and for a new reason; a line at INFO for the others.
    caplog.set_level(logging.INFO, logger="edge.nurseries.tunnel")
    cloud.refuse_status = 503
    daemon = await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=fast_tunnel()).run)
    with trio.fail_after(CONNECT_WITHIN):
        await until(lambda: daemon.tunnel.attempts >= 4)
        cloud.refuse_status = 500
        await until(lambda: "HTTP 500" in (daemon.tunnel.reason or ""))
    lines = [r for r in caplog.records if r.name == "edge.nurseries.tunnel" and "HTTP 5" in r.getMessage()]
    warnings = [r.getMessage() for r in lines if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in lines if r.levelno == logging.INFO]
    assert [("HTTP 503" in w, "HTTP 500" in w) for w in warnings] == [(True, False), (False, True)]
    assert len(infos) >= 3
    assert any("HTTP 503 (3 failed attempts in a row); next attempt in 0.2 s, at " in i for i in infos)
    assert all("next attempt" in line for line in warnings + infos)


async def test_info_says_since_when_what_failed_and_when_the_next_attempt_goes(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path
) -> None:
    cloud.refuse_status = 503
    daemon = await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=fast_tunnel()).run)
    with trio.fail_after(CONNECT_WITHIN):
        await until(lambda: daemon.tunnel.attempts >= 3 and daemon.tunnel.retry_in is not None)
        info = daemon.tunnel.info()  # between two attempts: nothing ran since the check
        assert info["status"] == "connecting" and "HTTP 503" in info["reason"]
        assert info["attempts"] == cloud.attempts
        assert 0 <= info["retryIn"] <= 0.2  # fast_tunnel's cap, no jitter
        since = datetime.fromisoformat(info["since"])
        assert since.utcoffset() is not None
        assert datetime.fromisoformat(info["nextRetryAt"]) >= since
        assert [h["status"] for h in info["history"]] == ["disconnected", "connecting", "connecting"]
        assert info["history"][1]["at"] == info["since"]  # a new reason is no new status
        assert info["history"][-1]["reason"] == info["reason"]
        cloud.refuse_status = None
        await until(lambda: daemon.tunnel.status is TunnelStatus.CONNECTED)
    info = daemon.tunnel.info()
    assert info["attempts"] == 0
    assert info["retryIn"] is None and info["nextRetryAt"] is None
    assert datetime.fromisoformat(info["since"]) >= since
    assert info["history"][-1] == {"status": "connected", "reason": None, "at": info["since"]}


async def test_every_status_change_is_in_the_history_and_an_event(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path
) -> None:
    daemon = await nursery.start(Daemon(make_config(workspace), tunnel_options=fast_tunnel()).run)
    cycles = HISTORY // 3 + 1  # each: connecting, connected, disconnected
    with daemon.events.subscribe() as events, trio.fail_after(CONNECT_WITHIN):
        for _ in range(cycles):
            daemon.targets.tunnel.activate(TOKEN, cloud.url)
            await until(lambda: daemon.tunnel.status is TunnelStatus.CONNECTED)
            daemon.targets.tunnel.disconnect()
            await until(lambda: daemon.tunnel.status is TunnelStatus.DISCONNECTED)
        published = []
        while events.receive.statistics().current_buffer_used:
            published.append(events.receive.receive_nowait())
    changes = [e for e in published if e["type"] == "tunnel_status"]
    assert len(changes) == 3 * cycles
    assert changes[:3] == [
        {"type": "tunnel_status", "status": status, "reason": None, "at": changes[i]["at"]}
        for i, status in enumerate(["connecting", "connected", "disconnected"])
    ]
    history = daemon.tunnel.info()["history"]
    assert len(history) == HISTORY
    assert history == [{k: e[k] for k in ("status", "reason", "at")} for e in changes[-HISTORY:]]


async def test_the_token_never_reaches_the_log(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    daemon = await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=fast_tunnel()).run)
    with trio.fail_after(10):
        await cloud.wait_connected()
        await cloud.call("terminal", {"command": "echo hi"})
        await cloud.drop()
        await cloud.wait_connected(2)
    text = caplog.text + json.dumps(daemon.targets.tunnel.info()) + json.dumps(daemon.health())
    assert TOKEN not in text


async def test_busy_when_the_queue_is_full(nursery: trio.Nursery, cloud: FakeCloud, workspace: Path) -> None:
    cfg = make_config(workspace, cloud, max_calls=2, queue_size=1)
    daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(10):
        await cloud.wait_connected()
        ids = [await cloud.start_call("terminal", {"command": "sleep 0.3"}) for _ in range(3)]
        await until(lambda: daemon.workers.in_flight == 3)
        assert daemon.workers.running == 2
        busy = await cloud.call("terminal", {"command": "echo too many"})
        assert busy["busy"] is True and busy["error"].startswith("busy:")
        for call_id in ids:
            assert (await cloud.result(call_id)) == {"output": "", "exit_code": 0}


async def test_disconnect_and_shutdown_leave_nothing_behind(cloud: FakeCloud, workspace: Path) -> None:
    baseline = sorted(task_tree())
    children = set(child_processes())
    fds = open_fds()
    async with trio.open_nursery() as nursery:
        daemon = await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=fast_tunnel()).run)
        with trio.fail_after(10):
            await cloud.wait_connected()
            ids = [await cloud.start_call("terminal", {"command": f"echo $$ > g{i}; sleep 30"}) for i in range(3)]
            await until(lambda: all((workspace / f"g{i}").exists() for i in range(3)))
            await trio.sleep(0.05)
            assert len(set(child_processes()) - children) == 3
            daemon.targets.tunnel.disconnect()
            await cloud.wait_for(lambda: not cloud.connected)
            await until(lambda: daemon.workers.in_flight == 0)
            await until(lambda: daemon.tunnel.status is TunnelStatus.DISCONNECTED)
        assert set(child_processes()) - children == set()
        assert len(daemon.tunnel.outbox) == 3  # the cancelled calls' results wait for the cloud
        with trio.fail_after(2):
            await daemon.stop()
    for i in range(3):
        assert processes_in_group(int((workspace / f"g{i}").read_text())) == []
    assert sorted(task_tree()) == baseline
    with trio.fail_after(2):  # the cloud's side of the socket closes a moment later
        await until(lambda: open_fds() <= fds)
    assert set(child_processes()) - children == set()
    assert not set(ids) & set(cloud.results)


async def test_shutdown_cancels_calls_and_sends_their_results(cloud: FakeCloud, workspace: Path) -> None:
    baseline = sorted(task_tree())
    async with trio.open_nursery() as nursery:
        daemon = await nursery.start(Daemon(make_config(workspace, cloud), tunnel_options=fast_tunnel()).run)
        with trio.fail_after(10):
            await cloud.wait_connected()
            call = await cloud.start_call("terminal", {"command": "sleep 30"})
            await until(lambda: daemon.workers.running == 1)
        start = trio.current_time()
        await daemon.stop()
    assert trio.current_time() - start < 1.0
    with trio.fail_after(5):
        result = await cloud.result(call)
    assert result == {"error": "cancelled: edge is shutting down", "cancelled": True}
    assert sorted(task_tree()) == baseline


async def test_a_silent_connection_is_detected_by_the_heartbeat(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path
) -> None:
    from ..conftest import Proxy

    port = int(cloud.url.rsplit(":", 1)[1].split("/")[0])
    proxy = await nursery.start(Proxy(port).serve)
    cfg = make_config(workspace, cloud)
    cfg.cloud_url = f"ws://127.0.0.1:{proxy.port}/tunnel"
    options = fast_tunnel(heartbeat_interval=0.1, heartbeat_timeout=0.3)
    daemon = await nursery.start(Daemon(cfg, tunnel_options=options).run)
    with trio.fail_after(10):
        await cloud.wait_connected()
        await until(lambda: daemon.tunnel.status is TunnelStatus.CONNECTED)
        proxy.frozen = True  # the socket stays open, nothing comes back
        await until(lambda: "heartbeat unanswered" in (daemon.tunnel.reason or ""))
        proxy.frozen = False
        await cloud.wait_connected(2)
        await until(lambda: daemon.tunnel.status is TunnelStatus.CONNECTED)
        assert (await cloud.call("terminal", {"command": "echo fresh"}))["output"] == "fresh\n"


async def test_undelivered_results_survive_a_restart(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    cfg = make_config(workspace, cloud, state_dir=state)
    async with trio.open_nursery() as run:
        daemon = await run.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
        with trio.fail_after(10):
            await cloud.wait_connected()
            call = await cloud.start_call("terminal", {"command": "sleep 0.3; echo kept"})
            await until(lambda: daemon.workers.running == 1)
            cloud.refuse_status = 503
            await cloud.drop()
            await until(lambda: daemon.workers.in_flight == 0)
        await daemon.stop()
    saved = state / "edge.db"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert not (state / "outbox.jsonl").exists()
    assert call not in cloud.results
    cloud.refuse_status = None
    await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(10):
        assert (await cloud.result(call))["output"] == "kept\n"
