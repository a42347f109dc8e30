"""The speech-recognition uplink's messages (edge ↔ the cloud's ASR WebSocket).

Plain code: builders for what edge sends and a parser for what the endpoint
answers. Positions are counted in sample frames (one sample per channel) from
the start of the capture, so a reconnect can say exactly where audio resumes.

edge → endpoint (text, JSON), then binary PCM16 little-endian frames::

    {"type":"start","chatId","source","sampleRate","channels","format":"s16le","frameMs"}
    {"type":"backfill","offset":N,"frames":M}   M frames recorded while disconnected follow
    {"type":"gap","offset":N,"frames":M}        M frames at N are lost (backlog overflowed)
    {"type":"live","offset":N}                  live audio from N follows
    {"type":"stop","frames":N}                  no more audio; N frames in all

endpoint → edge::

    {"type":"ready","received":N}     answer to start: N frames of this chat already held
    {"type":"ack","received":N}       everything before N is safely held
    {"type":"transcript","text","final","start","end","backfill"?}   seconds from the start
    {"type":"error","message"}
    {"type":"done","received":N}      answer to stop: the last transcript has been sent
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

#: Server messages larger than this are refused before parsing (characters).
MAX_ASR_MESSAGE: Final = 64 * 1024
#: The only sample format on the wire.
WIRE_FORMAT: Final = "s16le"


@dataclass(frozen=True, slots=True)
class Ready:
    received: int


@dataclass(frozen=True, slots=True)
class Ack:
    received: int


@dataclass(frozen=True, slots=True)
class Done:
    received: int


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    final: bool
    start: float
    end: float
    backfill: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "final": self.final,
            "start": self.start,
            "end": self.end,
            "backfill": self.backfill,
        }


@dataclass(frozen=True, slots=True)
class AsrError:
    """The endpoint reported an error, or sent something edge cannot read."""

    message: str


AsrMessage = Ready | Ack | Done | Transcript | AsrError


def start_message(chat_id: str, source: str, sample_rate: int, channels: int, frame_ms: int) -> str:
    return json.dumps(
        {
            "type": "start",
            "chatId": chat_id,
            "source": source,
            "sampleRate": sample_rate,
            "channels": channels,
            "format": WIRE_FORMAT,
            "frameMs": frame_ms,
        }
    )


def backfill_message(offset: int, frames: int) -> str:
    return json.dumps({"type": "backfill", "offset": offset, "frames": frames})


def gap_message(offset: int, frames: int) -> str:
    return json.dumps({"type": "gap", "offset": offset, "frames": frames})


def live_message(offset: int) -> str:
    return json.dumps({"type": "live", "offset": offset})


def stop_message(frames: int) -> str:
    return json.dumps({"type": "stop", "frames": frames})


def _count(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return float(value)


def parse_asr_message(data: str | bytes) -> AsrMessage:
    """One endpoint message; never raises (anything unreadable is an ``AsrError``)."""
    if isinstance(data, bytes):
        return AsrError("the ASR endpoint sent a binary message")
    if len(data) > MAX_ASR_MESSAGE:
        return AsrError(f"ASR message of {len(data)} characters is over the limit")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return AsrError("the ASR endpoint sent invalid JSON")
    if not isinstance(obj, dict):
        return AsrError("the ASR endpoint sent JSON that is not an object")
    kind = obj.get("type")
    if kind in ("ready", "ack", "done"):
        received = _count(obj, "received")
        if received is None:
            return AsrError(f'"{kind}" needs "received": a count of frames')
        if kind == "ready":
            return Ready(received)
        return Ack(received) if kind == "ack" else Done(received)
    if kind == "transcript":
        text = obj.get("text")
        start, end = _seconds(obj.get("start")), _seconds(obj.get("end"))
        if not isinstance(text, str) or start is None or end is None or end < start:
            return AsrError('"transcript" needs "text" and "start" <= "end" in seconds')
        return Transcript(
            text,
            final=obj.get("final") is not False,
            start=start,
            end=end,
            backfill=obj.get("backfill") is True,
        )
    if kind == "error":
        message = obj.get("message")
        return AsrError(str(message)[:500] if message is not None else "unspecified error")
    return AsrError(f"unknown ASR message type {str(kind)[:40]!r}")
