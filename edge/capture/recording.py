"""The local recording: PCM in, a lossless file out, written off the event loop.

Recordings are private: each file is created with mode 0600, and a recordings
directory that does not exist yet is created with mode 0700 (``edge.fs``).
Audio is written as WAV while the capture runs, one block about every second,
each followed by a header update, so a crash or a kill leaves a readable file
up to the last second written (edge writes the WAV itself: the 44-byte header,
the samples, the header's two sizes rewritten after each block; nothing is
forced to the disk, which a process that dies does not need). When the capture
stops cleanly and FLAC was asked for (the default), the WAV is encoded to FLAC
beside it and removed.
"""

from __future__ import annotations

import logging
import os
import struct
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
#: Bytes of a WAV file before its samples (RIFF, "fmt " and "data" headers).
WAV_HEADER_BYTES: Final = 44


def wav_header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    """The header of a 16-bit PCM WAV file whose samples take ``data_bytes``.

    The sizes saturate at what RIFF's 32 bits hold (a 4 GiB file).
    """
    block = 2 * channels
    data = min(data_bytes, 0xFFFFFFFF - (WAV_HEADER_BYTES - 8))
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        WAV_HEADER_BYTES - 8 + data,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        channels,
        sample_rate,
        sample_rate * block,
        block,
        16,
        b"data",
        data,
    )


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
        self._fd: int | None = None
        self._data_bytes = 0
        self._error: OSError | None = None  # a write of a ``RecordingWriter`` failed

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
            self._fd = create_private(self.path)
            _write_all(self._fd, wav_header(self.fmt.sample_rate, self.fmt.channels, 0))
        except OSError as exc:
            raise CaptureError(f"cannot record to {self.path}: {exc}") from None

    async def run(self, writer: RecordingWriter | None = None) -> None:
        """Write until ``finish``; the file is closed (and encoded) when this returns.

        With ``writer``, the queue is written by it (with every other recording
        it writes), not on a timer of this recording's own.
        """
        if self._fd is None:
            self.open()
        clean = False
        try:
            if writer is None:
                await self._write_every_second()
            else:
                await writer._serve(self)
            clean = True
        finally:
            self._finished = True
            data = self._take()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._close, data, clean)

    async def _write_every_second(self) -> None:
        while not self._finished:
            # No wake-up per chunk: the queue is written on a timer. While a
            # write runs, chunks keep queueing (bounded by BUFFER_SECONDS).
            with trio.move_on_after(FLUSH_SECONDS):
                await self._finish.wait()
            data = self._due()
            if data:
                await trio.to_thread.run_sync(self._write, data)

    def _due(self) -> bytes:
        """The whole seconds queued, while it runs (a killed capture leaves whole seconds)."""
        return self._take(whole_seconds=True) if self._pending and not self._finished else b""

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        _write_all(self._fd, data)
        self._data_bytes += len(data)
        # The header says how much is there: the file is readable up to here.
        header = wav_header(self.fmt.sample_rate, self.fmt.channels, self._data_bytes)
        os.pwrite(self._fd, header, 0)
        self.stats.frames_written += len(data) // (2 * self.fmt.channels)

    def _close(self, data: bytes, encode: bool) -> None:
        assert self._fd is not None
        try:
            if data:
                self._write(data)
        finally:
            os.close(self._fd)
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


class RecordingWriter:
    """Writes the queue of every recording it is given, all in one thread job a second.

    A recording on its own wakes once a second and hands its block to a worker
    thread: with many captures, that is as many timers, thread round trips and
    event-loop wake-ups every second, landing among the frames. The writer takes
    every recording's whole seconds at once and writes them in one job.
    ``serve_recording_writer`` runs it (``nursery.start`` gives the handle); a
    ``Recorder.run`` given the handle queues with it for as long as it runs.
    """

    def __init__(self) -> None:
        self._recorders: dict[Recorder, None] = {}
        self._writing: frozenset[Recorder] = frozenset()
        self._written = trio.Event()

    async def _serve(self, recorder: Recorder) -> None:
        """Write ``recorder``'s queue with the others' until it finishes."""
        self._recorders[recorder] = None
        try:
            await recorder._finish.wait()
        finally:
            del self._recorders[recorder]
            # Its file is closed after this: not while a job still writes to it.
            with trio.CancelScope(shield=True):
                while recorder in self._writing:
                    await self._written.wait()
        if recorder._error is not None:
            raise recorder._error

    async def _run(self) -> None:
        while True:
            await trio.sleep(FLUSH_SECONDS)
            batch = [(r, data) for r in self._recorders if (data := r._due())]
            if not batch:
                continue
            self._writing = frozenset(r for r, _ in batch)
            try:
                failed = await trio.to_thread.run_sync(_write_each, batch)
            finally:
                self._writing = frozenset()
                self._written.set()
                self._written = trio.Event()
            for recorder, exc in failed:
                recorder._error = exc
                recorder._finish.set()


async def serve_recording_writer(
    *, task_status: trio.TaskStatus[RecordingWriter] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a ``RecordingWriter`` until cancelled; ``nursery.start`` gives its handle."""
    writer = RecordingWriter()
    task_status.started(writer)
    await writer._run()


def _write_each(batch: list[tuple[Recorder, bytes]]) -> list[tuple[Recorder, OSError]]:
    """Write each recording's block (in a worker thread); the failures, each its own."""
    failed = []
    for recorder, data in batch:
        try:
            recorder._write(data)
        except OSError as exc:
            failed.append((recorder, exc))
    return failed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
