"""The ASR protocol, the fake endpoint's tone naming, and the uplink: live, and across a
dropped link."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import numpy as np
import soundfile
import trio
from hypothesis import given, strategies as st

from edge.capture.capture import CaptureRequest, open_capture
from edge.capture.sources import AudioFormat, parse_source
from edge.capture.uplink import AsrTarget, AsrUplink, UplinkOptions
from edge.dev.asr import describe_tones
from edge.dev.cloud import FakeCloud
from edge.net.backoff import Backoff
from edge.protocol.asr import (
    Ack,
    AsrError,
    Done,
    Ready,
    Transcript,
    parse_asr_message,
)
from edge.secret import Secret

from ..conftest import TOKEN, until

#: Seconds one ASR scenario may take on a busy machine (a bound on failure, not a speed).
SCENARIO: Final = 90.0

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
message_shaped = st.fixed_dictionaries(
    {"type": st.sampled_from(["ready", "ack", "done", "transcript", "error", "other"])},
    optional={
        "received": json_values,
        "text": json_values,
        "start": json_values,
        "end": json_values,
        "final": json_values,
        "message": json_values,
    },
)


@given(st.one_of(json_values, message_shaped).map(json.dumps) | st.text() | st.binary())
def test_the_parser_never_raises_and_always_returns_a_message(data: Any) -> None:
    message = parse_asr_message(data)
    assert isinstance(message, Ready | Ack | Done | Transcript | AsrError)
    if isinstance(message, Ready | Ack | Done):
        assert isinstance(message.received, int) and message.received >= 0
    if isinstance(message, Transcript):
        assert 0 <= message.start <= message.end


def test_the_parser_reads_each_message() -> None:
    assert parse_asr_message('{"type":"ready","received":5}') == Ready(5)
    assert parse_asr_message('{"type":"ack","received":0}') == Ack(0)
    assert parse_asr_message('{"type":"done","received":9}') == Done(9)
    t = parse_asr_message('{"type":"transcript","text":"hi","final":false,"start":1,"end":2}')
    assert t == Transcript("hi", final=False, start=1.0, end=2.0)
    assert parse_asr_message('{"type":"ack","received":-1}') == AsrError(
        '"ack" needs "received": a count of frames'
    )
    assert parse_asr_message('{"type":"ack","received":true}').__class__ is AsrError
    assert parse_asr_message('{"type":"transcript","text":"x","start":2,"end":1}').__class__ is AsrError
    assert parse_asr_message("[]") == AsrError("the ASR endpoint sent JSON that is not an object")
    assert parse_asr_message(b"\x00") == AsrError("the ASR endpoint sent a binary message")


def tone(freq: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray[Any, Any]:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")


def test_describe_tones_names_what_is_there() -> None:
    assert describe_tones(tone(440), 16000) == "tone 440 Hz"
    assert describe_tones(tone(440) // 2 + tone(660) // 2, 16000) == "tones 440 Hz, 660 Hz"
    assert describe_tones(np.zeros(16000, "<i2"), 16000) == "silence"


async def test_a_dropped_asr_link_is_backfilled_without_a_hole(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    cloud: FakeCloud = await nursery.start(FakeCloud([TOKEN]).serve)
    request = CaptureRequest(
        "drop-1",
        parse_source("tone:440"),
        out_dir=tmp_path,
        asr=AsrTarget(cloud.asr_url, Secret(TOKEN)),
    )
    options = UplinkOptions(backoff=Backoff(first=0.1, cap=0.2, jitter=0))
    events: list[Any] = []
    with trio.fail_after(SCENARIO):
        async with open_capture(request, on_event=events.append, uplink_options=options) as cap:
            await cloud.wait_transcribed("drop-1", 1)
            cloud.asr_refuse_status = 503
            await cloud.drop_asr("drop-1")
            await trio.sleep(1.6)  # more than a second recorded with no link
            assert cap.uplink is not None and not cap.uplink.stats.connected
            cloud.asr_refuse_status = None
            await cloud.wait_transcribed("drop-1", 4)
            summary = await cap.stop()
    session = cloud.asr_session("drop-1")
    assert session is not None
    finals = session.finals()
    # Contiguous, in order, every second the tone, nothing heard twice, no hole.
    assert [(f["start"], f["end"]) for f in finals[:4]] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    # The last final ends where the recording does, unless less than a tenth of a second
    # followed the last whole one: the fake endpoint leaves so short a tail untranscribed.
    tail = summary["seconds"] - finals[-1]["end"]
    assert tail == 0 or 0 < tail < 0.1, (finals[-1], summary["seconds"])
    assert {f["text"] for f in finals} == {"tone 440 Hz"}
    assert session.holes == 0 and session.duplicates == 0 and session.gaps == []
    assert any(f["backfill"] for f in finals)
    assert session.received == round(summary["seconds"] * 16000)
    kinds = [m["type"] for m in session.messages]
    assert kinds[0] == "live" and "backfill" in kinds and kinds[-1] == "stop"
    asr = summary["asr"]
    assert asr["complete"] and asr["connections"] == 2 and asr["backfilledSeconds"] > 1
    assert asr["lostSeconds"] == 0
    # The caller saw the same transcript, and the local file holds all the audio.
    assert [e.transcript.to_json() for e in events if hasattr(e, "transcript") and e.transcript.final] == [
        {k: f[k] for k in ("text", "final", "start", "end", "backfill")} for f in finals
    ]
    data, rate = soundfile.read(summary["file"], dtype="int16")
    assert summary["file"].endswith(".flac")
    assert len(data) == session.received and rate == 16000
    assert np.array_equal(data, np.frombuffer(bytes(session.audio), "<i2"))


async def test_a_backlog_over_its_bound_is_reported_as_a_gap(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    cloud: FakeCloud = await nursery.start(FakeCloud([TOKEN]).serve)
    cloud.asr_refuse_status = 503
    request = CaptureRequest(
        "gap-1", parse_source("tone:440"), asr=AsrTarget(cloud.asr_url, Secret(TOKEN))
    )
    options = UplinkOptions(backoff=Backoff(first=0.1, cap=0.1, jitter=0), max_backlog_seconds=0.5)
    with trio.fail_after(SCENARIO):
        async with open_capture(request, uplink_options=options) as cap:
            await trio.sleep(1.5)
            cloud.asr_refuse_status = None
            await cloud.wait_for(lambda: (s := cloud.asr_session("gap-1")) is not None and s.gaps)
            summary = await cap.stop()
    session = cloud.asr_session("gap-1")
    assert session is not None
    offset, frames = session.gaps[0]
    assert offset == 0 and frames > 0
    # A slow machine may overflow the bound again while catching up: every gap is counted.
    lost = sum(frames for _, frames in session.gaps)
    assert summary["asr"]["lostSeconds"] == round(lost / 16000, 3)
    assert summary["asr"]["complete"]


async def test_live_audio_is_sent_by_feed_itself_in_order(nursery: trio.Nursery) -> None:
    cloud: FakeCloud = await nursery.start(FakeCloud([TOKEN]).serve)
    fmt = AudioFormat(16000, 1, 20)
    uplink = AsrUplink(
        AsrTarget(cloud.asr_url, Secret(TOKEN)),
        chat_id="fast-1",
        source="tone",
        fmt=fmt,
        on_transcript=lambda transcript: None,
    )
    frames = [i.to_bytes(2, "little") * fmt.frame_samples for i in range(60)]
    with trio.fail_after(SCENARIO):
        async with trio.open_nursery() as running:
            running.start_soon(uplink.run)
            uplink.feed(frames[0], 1, trio.current_time())  # sent once the link is up
            await until(lambda: uplink.stats.frames_sent == fmt.frame_samples)
            await trio.testing.wait_all_tasks_blocked()  # the connection task waits, live
            for i, pcm in enumerate(frames[1:], start=2):
                uplink.feed(pcm, 1, trio.current_time())
                # On the socket before feed returns: no task had to wake for it.
                assert uplink.stats.frames_sent == i * fmt.frame_samples
            assert len(uplink.stats.latencies) == len(frames)
            uplink.finish()
    assert uplink.stats.complete
    session = cloud.asr_session("fast-1")
    assert session is not None and session.holes == 0 and session.duplicates == 0
    assert bytes(session.audio) == b"".join(frames)
