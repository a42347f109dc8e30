"""A server's status from its recent requests' failures: the rule, its configuration
(config.toml's ``[mcp]`` and an ``mcp.json`` entry's ``health``), and the transitions of a
real server: active → degraded → error, and back to active."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from edge.config import load_config
from edge.errors import ConfigError
from edge.mcp.config import parse_server
from edge.mcp.metrics import HealthRule
from edge.tools.registry import ToolRegistry

from .conftest import FAST, UP, behave, start_mcp

OK, FAILED = True, False


def test_the_rule() -> None:
    rule = HealthRule(window=4, degraded_rate=0.5, error_rate=0.75, min_failures=2)
    assert rule.judge([]) == "active"
    assert rule.judge([OK, OK, OK, FAILED]) == "active"  # one failure: under min_failures
    assert rule.judge([OK, OK, FAILED, FAILED]) == "degraded"
    assert rule.judge([OK, FAILED, FAILED, FAILED]) == "error"
    assert rule.judge([FAILED] * 3 + [OK] * 4) == "active"  # the window slides
    assert rule.describe([OK, FAILED, FAILED]) == "2 of the last 3 requests failed"
    assert HealthRule().judge([FAILED] * 4 + [OK] * 16) == "active"  # 20 % of the last 20
    assert HealthRule().judge([FAILED] * 5 + [OK] * 15) == "degraded"  # 25 %
    assert HealthRule().judge([FAILED] * 15 + [OK] * 5) == "error"


def test_an_entry_and_the_config_file_set_the_rule(tmp_path: Path) -> None:
    server = parse_server("s", {"command": "x", "health": {"window": 10, "errorRate": 0.9}})
    assert server.health == HealthRule(window=10, error_rate=0.9)
    assert parse_server("s", server.to_json()).health == server.health  # written back as read
    with pytest.raises(ConfigError, match='health: unknown field "windw"; did you mean "window"'):
        parse_server("s", {"command": "x", "health": {"windw": 10}})
    with pytest.raises(ConfigError, match="must not be below degraded_rate"):
        parse_server("s", {"command": "x", "health": {"degradedRate": 0.5, "errorRate": 0.4}})
    with pytest.raises(ConfigError, match="window must be a whole number"):
        parse_server("s", {"command": "x", "health": {"window": 0}})
    path = tmp_path / "config.toml"
    path.write_text("[mcp]\nhealth_window = 8\nerror_rate = 0.5\n")
    assert load_config(config_file=path).mcp_health == HealthRule(window=8, error_rate=0.5)
    path.write_text("[mcp]\ndegraded_rate = 0.9\n")
    with pytest.raises(ConfigError, match="must not be below degraded_rate"):
        load_config(config_file=path)
    path.write_text("")
    assert load_config(config_file=path).mcp_health is None


async def test_a_real_server_goes_degraded_then_error_and_back(nursery: trio.Nursery) -> None:
    events: list[dict] = []
    servers = await start_mcp(nursery, ToolRegistry(), events, FAST)
    health = {"window": 4, "minFailures": 2, "degradedRate": 0.5, "errorRate": 0.75}
    server = await servers.add(behave(timeout=0.3, health=health))
    with trio.fail_after(UP):
        while server.status != "active":
            await trio.sleep(0.02)

    async def ok() -> None:
        assert (await server.call_tool("add", {"a": 1, "b": 1}))["structuredContent"] == {"result": 2}

    async def times_out() -> None:
        # As the executor does: the call is cut off at the server's time limit.
        with trio.move_on_after(0.3):
            await server.call_tool("hang", {})

    with trio.fail_after(UP):
        for _ in range(4):
            await ok()
        seen = [server.status]
        for step in (times_out, times_out, times_out, ok, ok, ok):
            await step()
            seen.append(server.status)
    assert seen == ["active", "active", "degraded", "error", "error", "degraded", "active"]
    statuses = [e["status"] for e in events if e["type"] == "mcp_status" and e["server"] == "behave"]
    assert statuses[-4:] == ["degraded", "error", "degraded", "active"]  # each change, in order
    changes = [e for e in events if e["type"] == "mcp_status" and e["server"] == "behave"][-4:]
    assert [(e["oldStatus"], e["status"]) for e in changes] == [
        ("active", "degraded"), ("degraded", "error"), ("error", "degraded"), ("degraded", "active")
    ]
    assert changes[0]["reason"] == "2 of the last 4 requests failed"
    assert changes[1]["reason"] == "3 of the last 4 requests failed"
    assert changes[3]["reason"] == "connected, answering"
    assert all(e["at"] for e in changes)
    assert "no answer within 0.3 s" in (server.metrics.last_error or "")
    assert server.info()["toolMetrics"]["hang"]["failures"] == 3
