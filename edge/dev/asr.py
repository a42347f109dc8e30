"""The fake cloud's speech-recognition endpoint: its "transcript" proves what audio arrived.

For every second of audio a chat's stream delivers, it names the tones in it
("tone 440 Hz", "tones 440 Hz, 660 Hz", or "silence"), so a test can show that
audio arrived intact, in order, without holes, and that two streams never
crossed. It speaks edge's ASR protocol (edge.protocol.asr, docs/protocol.md):
``ready`` with what it already holds of a chat (so a reconnecting edge resumes
exactly there), ``ack`` every half second of audio, transcripts, ``done``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import trio_websocket

#: A peak counts as a tone when its magnitude is at least this share of the largest.
TONE_SHARE: Final = 0.1
#: RMS (full scale = 1) below which a second is "silence".
SILENCE_RMS: Final = 1e-3


def describe_tones(samples: np.ndarray[Any, Any], sample_rate: int) -> str:
    """Name the tones in mono PCM16 ``samples``: "tone 440 Hz", "tones ...", "silence"."""
    x = samples.astype(np.float64) / 32768
    if len(x) == 0 or float(np.sqrt(np.mean(x * x))) < SILENCE_RMS:
        return "silence"
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / sample_rate)
    top = float(spectrum.max())
    peaks = [
        i
        for i in range(1, len(spectrum) - 1)
        if spectrum[i] >= TONE_SHARE * top
        and spectrum[i] >= spectrum[i - 1]
        and spectrum[i] >= spectrum[i + 1]
    ]
    names = sorted({int(round(freqs[i] / 10) * 10) for i in peaks})
    label = ", ".join(f"{f} Hz" for f in names)
    return f"tone {label}" if len(names) == 1 else f"tones {label}"


@dataclass
class AsrSession:
    """Everything the endpoint holds of one chat, across reconnections."""

    chat_id: str
    source: str = ""
    sample_rate: int = 16000
    channels: int = 1
    audio: bytearray = field(default_factory=bytearray)
    cursor: int = 0  # where the next binary message belongs, in sample frames
    backfill_until: int = -1  # audio before this arrived as backfill
    backfilled: set[int] = field(default_factory=set)  # seconds touched by backfill
    emitted_final: int = 0  # whole seconds transcribed
    emitted_partial: int = 0
    acked: int = 0
    connections: int = 0
    duplicates: int = 0  # frames sent twice (ignored)
    holes: int = 0  # frames skipped over by the sender
    gaps: list[tuple[int, int]] = field(default_factory=list)
    stopped: bool = False
    transcripts: list[dict[str, Any]] = field(default_factory=list)
    messages: list[Any] = field(default_factory=list)

    @property
    def frame_bytes(self) -> int:
        return 2 * self.channels

    @property
    def received(self) -> int:
        return len(self.audio) // self.frame_bytes

    def finals(self) -> list[dict[str, Any]]:
        return [t for t in self.transcripts if t["final"]]

    def texts(self) -> list[str]:
        return [t["text"] for t in self.finals()]

    def add_audio(self, data: bytes) -> None:
        frames = len(data) // self.frame_bytes
        if self.cursor < self.received:
            overlap = min(frames, self.received - self.cursor)
            self.duplicates += overlap
            data = data[overlap * self.frame_bytes :]
            self.cursor += overlap
            frames -= overlap
        if self.cursor > self.received:
            self.holes += self.cursor - self.received
            self.audio.extend(b"\0" * ((self.cursor - self.received) * self.frame_bytes))
        start = self.received
        self.audio.extend(data[: frames * self.frame_bytes])
        self.cursor += frames
        if start < self.backfill_until:
            for s in range(start // self.sample_rate, (self.cursor - 1) // self.sample_rate + 1):
                self.backfilled.add(s)

    def _mono(self, start: int, end: int) -> np.ndarray[Any, Any]:
        pcm = np.frombuffer(
            bytes(self.audio[start * self.frame_bytes : end * self.frame_bytes]), "<i2"
        )
        if self.channels == 2:
            pcm = pcm.reshape(-1, 2).mean(axis=1)
        return pcm

    def _event(self, start: int, end: int, final: bool) -> dict[str, Any]:
        second = start // self.sample_rate
        return {
            "type": "transcript",
            "text": describe_tones(self._mono(start, end), self.sample_rate),
            "final": final,
            "start": start / self.sample_rate,
            "end": end / self.sample_rate,
            "backfill": second in self.backfilled,
        }

    def pending_events(self, *, flush: bool = False) -> list[dict[str, Any]]:
        """Transcripts (and an ack) due for the audio received so far."""
        out = []
        rate = self.sample_rate
        while (self.emitted_final + 1) * rate <= self.received:
            s = self.emitted_final * rate
            out.append(self._event(s, s + rate, final=True))
            self.emitted_final += 1
        half = self.emitted_final * rate + rate // 2
        if self.received >= half and self.emitted_partial <= self.emitted_final and not flush:
            out.append(self._event(self.emitted_final * rate, half, final=False))
            self.emitted_partial = self.emitted_final + 1
        tail = self.received - self.emitted_final * rate
        if flush and tail >= rate // 10:
            out.append(self._event(self.emitted_final * rate, self.received, final=True))
            self.emitted_final += 1
        self.transcripts.extend(out)
        if self.received - self.acked >= rate // 2 or (flush and self.received > self.acked):
            self.acked = self.received
            out.append({"type": "ack", "received": self.received})
        return out


class FakeAsr:
    """Sessions by chat id; ``handle`` serves one accepted WebSocket."""

    def __init__(self) -> None:
        self.sessions: dict[str, AsrSession] = {}
        self.live: dict[str, trio_websocket.WebSocketConnection] = {}

    async def handle(self, ws: trio_websocket.WebSocketConnection, notify: Any) -> None:
        start = json.loads(await ws.get_message())
        if not isinstance(start, dict) or start.get("type") != "start":
            await ws.send_message(json.dumps({"type": "error", "message": "expected start"}))
            return
        chat_id = str(start.get("chatId"))
        session = self.sessions.setdefault(chat_id, AsrSession(chat_id))
        session.source = str(start.get("source"))
        session.sample_rate = int(start.get("sampleRate", 16000))
        session.channels = int(start.get("channels", 1))
        session.connections += 1
        session.stopped = False
        self.live[chat_id] = ws
        notify()
        try:
            await ws.send_message(json.dumps({"type": "ready", "received": session.received}))
            while True:
                message = await ws.get_message()
                if isinstance(message, bytes):
                    session.add_audio(message)
                    for event in session.pending_events():
                        await ws.send_message(json.dumps(event))
                    notify()
                    continue
                msg = json.loads(message)
                session.messages.append(msg)
                kind = msg.get("type")
                if kind == "backfill":
                    session.cursor = msg["offset"]
                    session.backfill_until = msg["offset"] + msg["frames"]
                elif kind == "live":
                    session.cursor = msg["offset"]
                elif kind == "gap":
                    session.gaps.append((msg["offset"], msg["frames"]))
                    session.cursor = msg["offset"] + msg["frames"]
                elif kind == "stop":
                    for event in session.pending_events(flush=True):
                        await ws.send_message(json.dumps(event))
                    session.stopped = True
                    await ws.send_message(
                        json.dumps({"type": "done", "received": session.received})
                    )
                    notify()
                    return
                notify()
        finally:
            if self.live.get(chat_id) is ws:
                del self.live[chat_id]
            notify()
