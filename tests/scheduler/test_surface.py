"""The scheduler in the daemon, through the control API's /schedule routes: real loopback
HTTP to an in-process daemon whose store is a real file."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio
from hypothesis import given, settings, strategies as st

from edge.control.key import KEY_REFUSED
from edge.daemon import Daemon
from edge.protocol.schedule import TASK_FIELDS, parse_task

from ..conftest import fast_tunnel, make_config

#: Seconds for anything here to happen on a loaded machine (a bound on failure only).
SOON: Final = 30.0


@pytest.fixture
async def daemon(nursery: trio.Nursery, workspace: Path, tmp_path: Path) -> Daemon:
    cfg = make_config(
        workspace,
        control=("127.0.0.1", 0),
        state_dir=tmp_path / "state",
        allow_tools=frozenset({"terminal", "file_read"}),
    )
    return await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    assert daemon.control_url is not None
    async with httpx.AsyncClient(
        base_url=daemon.control_url, timeout=SOON, headers=daemon.key.header()
    ) as c:
        yield c


async def add(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/schedule", json=body)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()["task"]
    return task


async def test_add_list_run_pause_resume_remove_history(
    client: httpx.AsyncClient, daemon: Daemon
) -> None:
    before = time.time()
    task = await add(client, every="1h", tool="terminal", args={"command": "echo hi"}, name="greet")
    assert task["id"].startswith("s-")
    assert task["name"] == "greet"
    assert task["kind"] == "interval"
    assert task["origin"] == "local"
    assert not task["paused"]
    assert before + 3600 <= task["nextRun"] <= time.time() + 3600
    assert (await client.get("/health")).json()["schedules"] == 1

    listing = (await client.get("/schedule")).json()
    assert [t["id"] for t in listing["tasks"]] == [task["id"]]
    assert listing["tasks"][0]["lastRun"] is None
    assert listing["info"]["tasks"] == 1

    with trio.fail_after(SOON):
        ran = await client.post("/schedule/greet/run")  # by name
    assert ran.status_code == 200, ran.text
    run = ran.json()["run"]
    assert (run["taskId"], run["status"], run["excerpt"]) == (task["id"], "ok", "hi\n")
    assert run["slot"] is None  # on demand: not one of its slots
    listing = (await client.get("/schedule")).json()
    assert listing["tasks"][0]["lastRun"]["seq"] == run["seq"]
    assert listing["tasks"][0]["nextRun"] == task["nextRun"]  # the slots stay as they were

    paused = (await client.post(f"/schedule/{task['id']}/pause")).json()["task"]
    assert paused["paused"] is True
    assert (await client.get("/schedule")).json()["tasks"][0]["paused"] is True
    resumed = (await client.post(f"/schedule/{task['id']}/resume")).json()["task"]
    assert resumed["paused"] is False
    assert resumed["nextRun"] is not None

    history = (await client.get("/schedule/history", params={"task": "greet"})).json()["runs"]
    assert [r["seq"] for r in history] == [run["seq"]]
    everything = (await client.get("/schedule/history", params={"limit": 5})).json()["runs"]
    assert [r["seq"] for r in everything] == [run["seq"]]

    removed = await client.post(f"/schedule/{task['id']}/remove")
    assert removed.json() == {"removed": task["id"]}
    assert (await client.get("/schedule")).json()["tasks"] == []
    assert (await client.post(f"/schedule/{task['id']}/run")).status_code == 404
    assert (await client.get("/health")).json()["schedules"] == 0


async def test_a_task_runs_on_its_own_and_its_events_reach_the_hub(
    client: httpx.AsyncClient, daemon: Daemon
) -> None:
    with daemon.events.subscribe() as sub:
        task = await add(client, every=1, tool="terminal", args={"command": "echo tick"})
        with trio.fail_after(SOON):
            seen: list[dict[str, Any]] = []
            while not any(e.get("status") == "ok" for e in seen):
                event = await sub.receive.receive()
                if event.get("type") == "schedule_run":
                    seen.append(event)
    started = next(e for e in seen if e["status"] == "started")
    ended = next(e for e in seen if e["status"] == "ok")
    assert started["task"] == ended["task"] == task["id"]
    assert started["seq"] == ended["seq"]
    assert ended["excerpt"] == "tick\n"
    assert ended["slot"] >= task["nextRun"]  # its first slot, never before it was due
    runs = (await client.get("/schedule/history", params={"task": task["id"]})).json()["runs"]
    assert runs[-1]["status"] == "ok"
    assert runs[-1]["slot"] == task["nextRun"]


async def test_state_changes_need_the_local_key(client: httpx.AsyncClient) -> None:
    task = await add(client, every="1h", tool="terminal", args={"command": "true"})
    bare = httpx.AsyncClient(base_url=str(client.base_url), timeout=SOON)
    async with bare:
        refused = await bare.post("/schedule", json={"every": "1h", "tool": "terminal"})
        assert refused.status_code == 403
        assert refused.json()["error"] == KEY_REFUSED
        for action in ("run", "pause", "resume", "remove"):
            answer = await bare.post(f"/schedule/{task['id']}/{action}")
            assert answer.status_code == 403, action
        wrong = await bare.post(
            f"/schedule/{task['id']}/remove", headers={"x-edge-key": "not-the-key"}
        )
        assert wrong.status_code == 403
        assert (await bare.get("/schedule")).status_code == 200  # reading needs no key
    assert [t["id"] for t in (await client.get("/schedule")).json()["tasks"]] == [task["id"]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tool": "terminal"}, 'exactly one of "at", "every" and "cron"'),
        ({"every": "5m", "cron": "* * * * *", "tool": "terminal"}, "exactly one of"),
        ({"every": "soon", "tool": "terminal"}, "not a duration"),
        ({"every": 0.5, "tool": "terminal"}, "from 1 second"),
        ({"cron": "61 * * * *", "tool": "terminal"}, "cron"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus", "tool": "terminal"}, "Mars/Olympus"),
        ({"at": "2001-01-01T00:00Z", "tool": "terminal"}, "in the past"),
        ({"at": "tomorrow-ish", "tool": "terminal"}, "not a date-time"),
        ({"every": "5m"}, '"tool"'),
        ({"every": "5m", "tool": "terminal", "args": [1]}, '"args" must be a JSON object'),
        ({"every": "5m", "tool": "terminal", "missed": "all"}, '"missed"'),
        ({"every": "5m", "tool": "terminal", "grace": -1}, '"grace"'),
        ({"every": "5m", "tool": "terminal", "colour": "red"}, "unknown field 'colour'"),
        ({"every": "5m", "tool": "termnal"}, "did you mean 'terminal'"),
        ({"every": "5m", "tool": "grep"}, "not allowed by the local policy"),
        ({"every": "5m", "tool": "terminal", "name": "s-123abc"}, "look like a task id"),
        ({"at": 1e12, "tool": "terminal"}, "more than 100 years ahead"),
        ({"at": 1e20, "tool": "terminal"}, "more than 100 years ahead"),
        ({"at": "9999-12-31T23:59:59-05:00", "tool": "terminal"}, "more than 100 years ahead"),
        ({"at": "9999-12-31T23:59", "tz": "Etc/GMT+12", "tool": "terminal"}, "years"),
    ],
)
async def test_bad_input_is_a_400_with_the_message(
    client: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    response = await client.post("/schedule", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert (await client.get("/schedule")).json()["tasks"] == []


async def test_unknown_ids_are_404_and_a_bad_limit_400(client: httpx.AsyncClient) -> None:
    for action in ("run", "pause", "resume", "remove"):
        answer = await client.post(f"/schedule/s-000000/{action}")
        assert answer.status_code == 404, action
        assert "no scheduled task 's-000000'" in answer.json()["error"]
    task = await add(client, every="1h", tool="terminal", args={"command": "true"})
    assert (await client.post(f"/schedule/{task['id']}/explode")).status_code == 404
    missing = await client.get("/schedule/history", params={"task": "nope"})
    assert missing.status_code == 404
    for limit in ("0", "1001", "x"):
        bad = await client.get("/schedule/history", params={"limit": limit})
        assert bad.status_code == 400
        assert "limit" in bad.json()["error"]
    taken = await client.post("/schedule", json={"every": "1h", "tool": "terminal", "name": "n"})
    assert taken.status_code == 201
    again = await client.post("/schedule", json={"every": "2h", "tool": "terminal", "name": "n"})
    assert again.status_code == 400
    assert "exists already" in again.json()["error"]


def test_parse_task_reads_each_kind() -> None:
    now = 1_800_000_000.0
    interval = parse_task({"every": "1h30m", "tool": "t"}, now=now)
    assert interval.timetable.kind == "interval"
    assert interval.timetable.every == 5400
    assert interval.timetable.next_slot(now) == now + 5400
    at = parse_task({"at": now + 60, "tool": "t", "args": {"a": 1}, "missed": "skip"}, now=now)
    assert at.timetable.kind == "once"
    assert at.timetable.next_slot(now) == now + 60
    assert (at.args, at.missed, at.name, at.grace) == ({"a": 1}, "skip", None, None)
    iso = parse_task({"at": "2027-03-01T09:00", "tz": "Europe/Berlin", "tool": "t"}, now=now)
    assert iso.timetable.next_slot(now) == 1803888000.0  # 08:00 UTC
    daily = parse_task({"cron": "30 1 * * *", "tz": "America/New_York", "tool": "t"}, now=now)
    assert daily.timetable.tz == "America/New_York"
    with pytest.raises(ValueError, match="does not exist"):
        parse_task({"at": "2027-03-28T02:30", "tz": "Europe/Berlin", "tool": "t"}, now=now)
    with pytest.raises(ValueError, match='"tz" goes with'):
        parse_task({"every": 60, "tz": "UTC", "tool": "t"}, now=now)
    with pytest.raises(ValueError, match='"every"'):
        parse_task({"every": True, "tool": "t"}, now=now)


_json = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=24)
_values = (
    _json | st.lists(_json, max_size=2) | st.dictionaries(st.text(max_size=6), _json, max_size=2)
)
_texts = st.sampled_from(
    ["5m", "1h30m", "0", "1", "-3", "30 1 * * *", "*/5 * * * *", "61 * * * *", "09:00", "25:00",
     "2027-03-28T02:30", "2027-01-16T09:00", "2027-01-16T09:00Z", "Europe/Berlin", "UTC",
     "Mars/Olympus", "../../etc/passwd", "", " ", "\x00", "terminal"]
)  # fmt: skip


@given(st.dictionaries(st.sampled_from([*TASK_FIELDS, "colour"]), _values | _texts, max_size=6))
@settings(max_examples=150)
def test_parse_task_takes_anything_and_refuses_with_a_value_error(params: dict[str, Any]) -> None:
    now = 1_800_000_000.0
    refusal = ""
    try:
        spec = parse_task(params, now=now)
    except ValueError as exc:
        refusal = str(exc) or "(no message)"
        spec = None
    if spec is None:
        assert refusal != "(no message)"
        return
    first = spec.timetable.next_slot(now)
    assert first is None or first > now
    assert isinstance(spec.tool, str)
    assert spec.tool
    assert isinstance(spec.args, dict)
    assert spec.missed in ("run-once", "skip")
