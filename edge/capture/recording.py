"""The local recording: PCM in, a lossless file out, written off the event loop.

Recordings are private: each file is created with mode 0600, and a recordings
directory that does not exist yet is created with mode 0700 (``edge.fs``).
Audio is written as WAV while the capture runs, one block about every second,
each followed by a header update, so a crash or a kill leaves a readable file
up to the last second written. When the capture stops cleanly and FLAC was
asked for (the default), the WAV is encoded to FLAC beside it and removed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio

from ..errors import CaptureError
from ..fs import create_private, make_private_dir
from .sources import AudioFormat

log = logging.getLogger(__name__)

#: Seconds between writes (each followed by a header update).
FLUSH_SECONDS: Final = 1.0
#: Seconds of audio the recorder may fall behind before chunks are dropped (counted).
BUFFER_SECONDS: Final = 30
CONTAINERS: Final = ("flac", "wav")


@dataclass(slots=True)
class RecorderStats:
    frames_written: int = 0
    frames_dropped: int = 0


class Recorder:
    """Feed it chunks with ``feed`` (never blocks); ``run`` writes them until ``finish``."""

    def __init__(self, path: Path, fmt: AudioFormat, container: str = "flac") -> None:
        if container not in CONTAINERS:
            raise CaptureError(f"unknown recording format {container!r} (flac or wav)")
        self.fmt = fmt
        self.container = container
        self.final_path = path.with_suffix("." + container)
        self.path = (
            path.with_suffix(".wav") if container == "wav" else path.with_suffix(".partial.wav")
        )
        self.stats = RecorderStats()
        self._max_pending = max(1, int(BUFFER_SECONDS * 1000 / fmt.frame_ms))
        self._pending: list[bytes] = []
        self._pending_frames = 0
        self._finished = False
        self._finish = trio.Event()
        self._file: Any = None

    def feed(self, pcm: bytes, frames: int) -> None:
        """Queue a chunk; ``run`` writes the queue about once a second."""
        if self._finished:
            return
        if self._pending_frames + frames > self._max_pending:
            self.stats.frames_dropped += frames
            return
        self._pending.append(pcm)
        self._pending_frames += frames

    def finish(self) -> None:
        """No more audio: ``run`` writes what it has, closes the file and returns."""
        self._finished = True
        self._finish.set()

    def _take(self, *, whole_seconds: bool = False) -> bytes:
        """The queued audio; with ``whole_seconds``, only whole seconds (the rest stays queued)."""
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_frames = 0
        if whole_seconds:
            second = self.fmt.sample_rate * 2 * self.fmt.channels
            cut = len(data) // second * second
            data, rest = data[:cut], data[cut:]
            if rest:
                self._pending.append(rest)
                self._pending_frames = len(rest) // self.fmt.frame_bytes
        return data

    def open(self) -> None:
        """Create the file (mode 0600; its directory, if missing, 0700)."""
        directory = self.path.parent
        try:
            make_private_dir(directory)
        except OSError as exc:
            if isinstance(exc, FileExistsError | NotADirectoryError):
                blocker = Path(exc.filename) if exc.filename else directory
                why = f"{'it' if blocker == directory else blocker} is not a directory"
            else:
                why = exc.strerror or str(exc)
            message = f"cannot create the recordings directory {directory}: {why}"
            raise CaptureError(message) from None
        try:
            self._file = _open_private(self.path, self.fmt.sample_rate, self.fmt.channels, "WAV")
        except (OSError, RuntimeError) as exc:
            raise CaptureError(f"cannot record to {self.path}: {exc}") from None

    async def run(self) -> None:
        """Write until ``finish``; the file is closed (and encoded) when this returns."""
        if self._file is None:
            self.open()
        clean = False
        try:
            while not self._finished:
                # No wake-up per chunk: the queue is written on a timer. While a
                # write runs, chunks keep queueing (bounded by BUFFER_SECONDS).
                with trio.move_on_after(FLUSH_SECONDS):
                    await self._finish.wait()
                if self._pending and not self._finished:
                    # Whole seconds at a time: a killed capture leaves whole seconds.
                    data = self._take(whole_seconds=True)
                    if data:
                        await trio.to_thread.run_sync(self._write, data)
            clean = True
        finally:
            self._finished = True
            data = self._take()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._close, data, clean)

    def _write(self, data: bytes) -> None:
        self._file.buffer_write(data, dtype="int16")
        self._file.flush()  # rewrites the WAV header: the file is readable up to here
        self.stats.frames_written += len(data) // (2 * self.fmt.channels)

    def _close(self, data: bytes, encode: bool) -> None:
        if data:
            self._write(data)
        self._file.close()
        if self.container == "flac" and encode and self.stats.frames_written:
            self._encode_flac()
        elif self.container == "flac" and encode:
            # No audio at all: FLAC cannot hold an empty stream, an empty WAV can.
            empty = self.final_path.with_suffix(".wav")
            os.replace(self.path, empty)
            self.path = empty

    def _encode_flac(self) -> None:
        import soundfile

        tmp = self.final_path.with_suffix(".flac.tmp")
        try:
            with (
                soundfile.SoundFile(str(self.path)) as src,
                _open_private(tmp, src.samplerate, src.channels, "FLAC") as dst,
            ):
                while True:
                    block = src.buffer_read(src.samplerate * 10, dtype="int16")
                    if not block:
                        break
                    dst.buffer_write(block, dtype="int16")
            os.replace(tmp, self.final_path)
            self.path.unlink()
            self.path = self.final_path
        except (OSError, RuntimeError) as exc:
            log.error("kept %s as WAV: cannot encode FLAC: %s", self.path, exc)
            tmp.unlink(missing_ok=True)


def _open_private(path: Path, sample_rate: int, channels: int, container: str) -> Any:
    """A ``soundfile.SoundFile`` writing 16-bit ``container`` audio to a new file of mode 0600."""
    import soundfile

    # Made private first; libsndfile then opens it by name, truncating it and keeping
    # its mode (it closes a descriptor it was given itself on some failures, not others).
    os.close(create_private(path))
    return soundfile.SoundFile(
        str(path),
        "w",
        samplerate=sample_rate,
        channels=channels,
        subtype="PCM_16",
        format=container,
    )
