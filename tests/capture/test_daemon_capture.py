"""Captures through the daemon: control API, fake cloud ASR, a real PulseAudio server.

The duplex test plays 440 Hz into the default sink (what the machine plays,
captured as ``system``) and 660 Hz into the sink behind the default source
(``mic``), records both at once through edge's native backend, and checks in
the fake cloud's transcripts that each chat heard its own tone and never the
other's.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import pytest
import soundfile
import trio

from edge.capture.uplink import UplinkOptions
from edge.daemon import Daemon
from edge.dev.asr import describe_tones
from edge.dev.cloud import FakeCloud
from edge.net.backoff import Backoff

from ..conftest import CONNECT_WITHIN, fast_tunnel, make_config, open_fds, until
from .conftest import Player, audio_threads, non_trio_threads

FAST_UPLINK = UplinkOptions(backoff=Backoff(first=0.1, cap=0.3, jitter=0))
#: Seconds a whole scenario may take on a busy machine (a bound on failure, not a speed).
SCENARIO: Final = 90.0
#: Seconds for what follows a step at once (an event, a socket closing; a bound on failure).
SOON: Final = 30.0


@pytest.fixture
async def daemon(nursery: trio.Nursery, workspace: Path, cloud: FakeCloud) -> Daemon:
    cfg = make_config(workspace, cloud, control=("127.0.0.1", 0))
    d: Daemon = await nursery.start(
        Daemon(cfg, tunnel_options=fast_tunnel(), uplink_options=FAST_UPLINK).run
    )
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
    return d


@pytest.fixture
async def client(daemon: Daemon) -> Any:
    assert daemon.control_url is not None
    async with httpx.AsyncClient(base_url=daemon.control_url, timeout=SOON) as c:
        yield c


async def read_events(
    client: httpx.AsyncClient,
    into: list[dict[str, Any]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with client.stream("GET", "/record/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        task_status.started()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                into.append(json.loads(line[len("data: ") :]))


def only_near(text: str, hz: int) -> bool:
    """Whether ``text`` names tones, all nearer ``hz`` than the other source's tone.

    A player starved of CPU leaves a gap in its tone, which spreads it into
    neighbouring frequencies ("tones 650 Hz, 660 Hz, 670 Hz", on a loaded machine
    "tones 360 Hz, 400 Hz, ..., 530 Hz" around 440 Hz); the other source's tone,
    220 Hz away, is named at its own frequency and never passes.
    """
    named = [int(f) for f in re.findall(r"(\d+) Hz", text)]
    return bool(named) and all(abs(f - hz) < 220 / 2 for f in named)


def heard(cloud: FakeCloud, chat_id: str, text: str) -> int:
    """Seconds of ``chat_id`` the fake cloud's ASR transcribed as ``text``."""
    session = cloud.asr_session(chat_id)
    return 0 if session is None else session.texts().count(text)


async def test_duplex_each_chat_hears_its_own_source(
    pulse: str,
    player: Player,
    daemon: Daemon,
    client: httpx.AsyncClient,
    cloud: FakeCloud,
    nursery: trio.Nursery,
) -> None:
    report = cloud.report
    assert report is not None
    sources = {s["id"]: s for s in report["audioSources"]}
    assert sources["mic"]["available"] and sources["system"]["available"]
    assert sources["mic"]["backend"] == "pulseaudio"

    events: list[dict[str, Any]] = []
    await nursery.start(read_events, client, events)
    await player.play(440, "sys_out")
    await player.play(660, "mic_feed")
    assert (await client.get("/record/status")).json() == {"captures": []}  # keep-alive socket
    baseline_threads, baseline_fds = non_trio_threads(), open_fds()
    with trio.fail_after(SCENARIO):
        for chat, source in (("meet-sys", "system"), ("meet-mic", "mic")):
            response = await client.post("/record/start", json={"chatId": chat, "source": source})
            assert response.status_code == 201, response.text
            assert response.json()["state"] == "running"
        assert audio_threads().count("edge-audio") == 2
        status = (await client.get("/record/status")).json()["captures"]
        assert {c["chatId"] for c in status} == {"meet-sys", "meet-mic"}
        # A starved player may leave a second of silence: wait for three seconds of each tone.
        await cloud.wait_for(lambda: heard(cloud, "meet-sys", "tone 440 Hz") >= 3)
        await cloud.wait_for(lambda: heard(cloud, "meet-mic", "tone 660 Hz") >= 3)

        # Stopping one capture leaves the other running.
        response = await client.post("/record/stop", params={"chatId": "meet-sys"})
        assert response.status_code == 200
        [sys_summary] = response.json()["stopped"]
        frames = daemon.captures.get("meet-mic").frames
        await until(lambda: daemon.captures.get("meet-mic").frames > frames + 10)
        status = (await client.get("/record/status")).json()["captures"]
        assert [c["chatId"] for c in status] == ["meet-mic"]
        assert status[0]["level"]["peakDb"] > -12
        response = await client.post("/record/stop")
        [mic_summary] = response.json()["stopped"]

    for summary, hz in ((sys_summary, 440), (mic_summary, 660)):
        assert summary["droppedFrames"] == {"source": 0, "recording": 0}
        session = cloud.asr_session(summary["chatId"])
        assert session is not None and session.stopped
        texts = session.texts()
        assert texts.count(f"tone {hz} Hz") >= 3, texts
        # The first second may start before the sink delivers: silence, never the other tone.
        assert all(t == "silence" or only_near(t, hz) for t in texts), texts
        assert summary["asr"]["complete"]
        data, rate = soundfile.read(summary["file"], dtype="int16")
        assert rate == 16000 and len(data) == summary["frames"] * 320
        assert only_near(describe_tones(data[-16000:], rate), hz)

    # Events reached the web page's stream, labelled by chat.
    with trio.fail_after(SOON):
        while sum(e["type"] == "capture_ended" for e in events) < 2:
            await trio.sleep(0.01)
    transcribed = {e["chatId"] for e in events if e["type"] == "transcript"}
    assert transcribed == {"meet-sys", "meet-mic"}
    # Nothing left behind: no backend thread, no descriptor.
    assert audio_threads() == []
    assert non_trio_threads() == baseline_threads
    with trio.fail_after(SOON):  # the fake cloud's side of the ASR sockets closes just after
        await until(lambda: open_fds() == baseline_fds)


async def test_bad_requests_get_clear_errors_and_disturb_nothing(
    pulse: str, daemon: Daemon, client: httpx.AsyncClient
) -> None:
    ok = await client.post("/record/start", json={"chatId": "keep", "source": "tone:300", "asr": False})
    assert ok.status_code == 201
    cases = [
        ({"chatId": "a", "source": "speaker"}, 400, "unknown source 'speaker'"),
        ({"chatId": "a", "source": "system:no_such_sink"}, 400, "cannot record from no_such_sink.monitor"),
        ({"chatId": "a", "source": "mic:no_such_source"}, 400, "cannot record from no_such_source"),
        ({"chatId": "a", "source": "tone:440", "sampleRate": 12345}, 400, "unsupported sample rate 12345"),
        ({"chatId": "a", "source": "tone:440", "channels": 3}, 400, "unsupported channel count 3"),
        ({"chatId": "a", "source": "tone:440", "format": "mp3"}, 400, "unknown recording format 'mp3'"),
        ({"chatId": "a", "source": "file:/no/such.wav"}, 400, "cannot read /no/such.wav"),
        ({"chatId": "a", "source": 5}, 400, '"source" is missing or not a string'),
        ({"chatId": "", "source": "tone:440"}, 400, "chatId must be"),
        ({"chatId": "a", "source": "tone:440", "asr": 7}, 400, '"asr" must be'),
        ({"chatId": "a", "source": "tone:440", "asr": "http://x"}, 400, '"asr" must be'),
        ({"chatId": "keep", "source": "tone:440"}, 409, "chat 'keep' is already recording"),
    ]
    for body, status, message in cases:
        response = await client.post("/record/start", json=body)
        assert response.status_code == status, (body, response.text)
        assert message in response.json()["error"], (body, response.text)
    response = await client.post("/record/start", content=b"{nope")
    assert response.status_code == 400
    response = await client.post("/record/stop", params={"chatId": "nobody"})
    assert response.status_code == 404
    assert response.json()["error"] == "no capture is recording chat 'nobody'"
    # The good capture ran on, and the daemon still serves.
    status = (await client.get("/record/status")).json()["captures"]
    assert [c["chatId"] for c in status] == ["keep"] and status[0]["error"] is None
    assert (await client.get("/health")).json()["captures"] == 1
    assert audio_threads() == []  # failed native opens left no thread behind

    async def keep_frames() -> int:
        return int((await client.get("/record/status")).json()["captures"][0]["frames"])

    with trio.fail_after(SOON):
        while await keep_frames() == 0:
            await trio.sleep(0.02)
    [summary] = (await client.post("/record/stop", params={"chatId": "keep"})).json()["stopped"]
    assert summary["frames"] > 0 and os.path.exists(summary["file"])


async def test_stopping_the_daemon_finishes_every_recording(
    pulse: str, nursery: trio.Nursery, workspace: Path, cloud: FakeCloud
) -> None:
    baseline_fds = open_fds()
    cfg = make_config(workspace, cloud)
    daemon: Daemon = await nursery.start(
        Daemon(cfg, tunnel_options=fast_tunnel(), uplink_options=FAST_UPLINK).run
    )
    with trio.fail_after(SCENARIO):
        await cloud.wait_connected()
        for i, source in enumerate(["system", "mic", "pattern", "tone:500"]):
            await daemon.targets.record.record_start(f"c{i}", source)
        await cloud.wait_transcribed("c3", 1)
        await until(lambda: all(daemon.captures.get(f"c{i}").frames > 25 for i in range(4)))
        await daemon.stop()
    files = sorted(cfg.recordings_dir.iterdir())
    assert [f.suffix for f in files] == [".flac"] * 4
    for f in files:
        assert soundfile.info(str(f)).duration > 0.5
    assert audio_threads() == []
    with trio.fail_after(SOON):  # the fake cloud's side of the ASR sockets closes just after
        await until(lambda: open_fds() == baseline_fds)
    assert np.isfinite(soundfile.read(str(files[0]))[0]).all()
