"""Where audio comes from: source specs, the audio format, and one handle per source.

Every source, native or not, gives the capture the same thing: ``receive()``
returns the next ``Chunk`` of whole frames (PCM16 little-endian, interleaved),
waiting without polling; ``counters()`` says how many frames the source made and
how many it had to drop; ``aclose()`` releases everything.

Source specs::

    mic | mic:DEVICE          the microphone (default input, or a named one)
    system | system:SINK      what the machine plays (the default output's monitor)
    pattern                   native test pattern: a running sample counter
    tone:FREQ                 a sine at FREQ Hz (pure Python, for tests and demos)
    file:PATH                 any file soundfile reads, paced in real time
"""

from __future__ import annotations

import abc
import math
import os
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from ..errors import CaptureError, SourceEnded
from ..threads import open_abandonable

if TYPE_CHECKING:
    import numpy as np

#: Sample rates every backend accepts.
SAMPLE_RATES: Final = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
#: Frames the native ring holds before the backend has to drop (at 20 ms: 2 s).
RING_FRAMES: Final = 100
#: Most frames handed over at once.
MAX_BATCH: Final = 50


@dataclass(frozen=True, slots=True)
class AudioFormat:
    sample_rate: int = 16000
    channels: int = 1
    frame_ms: int = 20

    def __post_init__(self) -> None:
        if self.sample_rate not in SAMPLE_RATES:
            rates = ", ".join(map(str, SAMPLE_RATES))
            raise CaptureError(f"unsupported sample rate {self.sample_rate} (use one of {rates})")
        if self.channels not in (1, 2):
            raise CaptureError(f"unsupported channel count {self.channels} (1 or 2)")
        if not 5 <= self.frame_ms <= 200 or (self.sample_rate * self.frame_ms) % 1000:
            raise CaptureError(f"unsupported frame length {self.frame_ms} ms")

    @property
    def frame_samples(self) -> int:
        """Sample frames (one sample per channel) in one frame."""
        return self.sample_rate * self.frame_ms // 1000

    @property
    def frame_bytes(self) -> int:
        return self.frame_samples * self.channels * 2

    def seconds(self, sample_frames: int) -> float:
        return sample_frames / self.sample_rate


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A parsed source spec: ``kind`` is mic, system, pattern, tone or file."""

    kind: str
    arg: str | None = None

    def __str__(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"

    @property
    def native(self) -> bool:
        return self.kind in ("mic", "system", "pattern")


KINDS: Final = ("mic", "system", "pattern", "tone", "file")


def parse_source(text: str) -> SourceSpec:
    """Parse a source spec; ``CaptureError`` names what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise CaptureError("a source is needed: mic, system, pattern, tone:FREQ or file:PATH")
    kind, sep, arg = text.strip().partition(":")
    if kind not in KINDS:
        raise CaptureError(
            f"unknown source {text!r}: use mic, system, mic:DEVICE, system:SINK, "
            "pattern, tone:FREQ or file:PATH"
        )
    if kind == "pattern" and sep:
        raise CaptureError("the pattern source takes no argument")
    if kind in ("tone", "file") and not arg:
        raise CaptureError(f"{kind}: needs an argument ({kind}:FREQ or {kind}:PATH)")
    if kind == "tone":
        try:
            freq = float(arg)
        except ValueError:
            raise CaptureError(f"tone:{arg}: the frequency must be a number of Hz") from None
        if not 0 < freq < 24000 or not math.isfinite(freq):
            raise CaptureError(f"tone:{arg}: the frequency must be between 0 and 24000 Hz")
    if kind in ("mic", "system") and sep and (not arg or len(arg) > 200 or "\0" in arg):
        raise CaptureError(f"{text!r}: the device name is empty or unusable")
    return SourceSpec(kind, arg if sep else None)


@dataclass(slots=True)
class Chunk:
    """Whole frames of PCM16; ``t_ready`` is when the first entered the ring (trio clock)."""

    pcm: bytes
    frames: int
    t_ready: float


class AudioSource(Protocol):
    spec: SourceSpec
    fmt: AudioFormat

    async def receive(self) -> Chunk:
        """The next frames; ``CaptureError`` when the source ends or fails."""

    def counters(self) -> tuple[int, int]:
        """(frames produced, frames dropped by the source)."""

    async def aclose(self) -> None:
        """Release the source (threads, descriptors, files)."""


# -- native: the C shim's ring, woken through its pipe --------------------------------


def native_module() -> Any:
    """The compiled shim, or ``CaptureError`` saying how to build it."""
    try:
        from . import _native  # type: ignore[attr-defined]
    except ImportError as exc:
        raise CaptureError(
            "edge's native audio module is not built (reinstall edge with a C compiler: "
            f"pip install -e .): {exc}"
        ) from None
    return _native


def native_backend() -> str:
    mod = native_module()
    return str(mod.ffi.string(mod.lib.edge_audio_backend()).decode())


#: What libpulse says (``pa_strerror``) when no sound server took the connection.
NO_SERVER: Final = "Connection refused"
#: How to get a PulseAudio server, said whenever none is reachable.
START_PULSE: Final = "is it running? start it with `pulseaudio --start`, or install pipewire-pulse"


def native_error(spec: SourceSpec, detail: str) -> CaptureError:
    """The error for a native source the shim could not open, its ``detail`` made plain.

    No sound server at all (libpulse's "Connection refused") is said as such, with
    where edge looked (``PULSE_SERVER``, when set) and how to start one.
    """
    if detail.endswith(f": {NO_SERVER}"):
        where = os.environ.get("PULSE_SERVER")
        at = f" at {where}, which PULSE_SERVER names" if where else ""
        return CaptureError(f"{spec}: no PulseAudio server reachable{at} ({START_PULSE})")
    return CaptureError(f"{spec}: {detail}")


def _native_args(mod: Any, spec: SourceSpec) -> tuple[int, Any]:
    """The shim's (source constant, device name or NULL) for ``spec``."""
    lib = mod.lib
    source = {"mic": lib.EDGE_SOURCE_MIC, "system": lib.EDGE_SOURCE_SYSTEM}.get(
        spec.kind, lib.EDGE_SOURCE_PATTERN
    )
    return source, mod.ffi.NULL if spec.arg is None else spec.arg.encode()


class NativeSource:
    """A capture through the C shim: a backend thread fills a ring and a pipe wakes trio."""

    def __init__(self, spec: SourceSpec, fmt: AudioFormat, handle: Any, mod: Any) -> None:
        self.spec = spec
        self.fmt = fmt
        self._mod = mod
        self._ffi = mod.ffi
        self._lib = mod.lib
        self._handle = handle
        self._fd = self._lib.edge_audio_fd(handle)
        self._buf = self._ffi.new("char[]", MAX_BATCH * fmt.frame_bytes)
        self._stamp = self._ffi.new("int64_t *")
        self._counters = self._ffi.new("edge_audio_counters *")
        self._frame_bytes = fmt.frame_bytes
        self._armed = False
        # trio's clock minus the OS monotonic clock the shim stamps with: a
        # constant, both being the same clock behind an offset.
        self._clock_offset = trio.current_time() - time.monotonic()
        self._closed = False

    @classmethod
    async def open(cls, spec: SourceSpec, fmt: AudioFormat) -> NativeSource:
        mod = native_module()
        ffi, lib = mod.ffi, mod.lib
        source, device = _native_args(mod, spec)
        err = ffi.new("char[512]")

        def open_blocking() -> Any:
            return lib.edge_audio_open(
                source,
                device,
                fmt.sample_rate,
                fmt.channels,
                fmt.frame_samples,
                RING_FRAMES,
                err,
                len(err),
            )

        # Connecting to the sound server blocks, for as long as a hung server
        # likes: the open is abandoned on cancel, and closes itself if it ever
        # returns, so a stuck sound server never holds up a stop.
        handle = await open_abandonable(open_blocking, lib.edge_audio_close, ffi.NULL)
        if handle == ffi.NULL:
            raise native_error(spec, ffi.string(err).decode(errors="replace"))
        return cls(spec, fmt, handle, mod)

    def tap(self) -> NativeSource:
        """Another source on this one's capture: its own ring, counters and descriptor,
        the same frames from now on, and no second connection to the sound server.

        The capture runs until its last source is closed. This one must be open.
        """
        assert not self._closed
        err = self._ffi.new("char[256]")
        handle = self._lib.edge_audio_open_tap(self._handle, RING_FRAMES, err, len(err))
        if handle == self._ffi.NULL:
            raise native_error(self.spec, self._ffi.string(err).decode(errors="replace"))
        return NativeSource(self.spec, self.fmt, handle, self._mod)

    @property
    def live(self) -> bool:
        """Open, and its capture has not ended."""
        if self._closed:
            return False
        self._lib.edge_audio_counters_get(self._handle, self._counters)
        return not self._counters.ended

    @property
    def fd(self) -> int:
        """The pipe that becomes readable when frames (or the end) are ready."""
        return int(self._fd)

    @property
    def armed(self) -> bool:
        """The last read emptied the ring: nothing more until the pipe is readable."""
        return self._armed

    def read_now(self) -> Chunk | None:
        """The frames ready now, or ``None`` (then ``armed``); ``CaptureError`` at the end."""
        n = self._lib.edge_audio_read(self._handle, self._buf, MAX_BATCH, self._stamp)
        if n > 0:
            self._armed = n < MAX_BATCH
            pcm = self._ffi.buffer(self._buf, n * self._frame_bytes)[:]
            # The shim stamps with the OS monotonic clock; trio's clock is offset from it.
            return Chunk(pcm, n, self._stamp[0] * 1e-9 + self._clock_offset)
        if n < 0:
            why = self._ffi.string(self._lib.edge_audio_last_error(self._handle)).decode()
            raise CaptureError(f"{self.spec}: {why or 'the backend stopped'}")
        self._armed = True
        return None

    async def receive(self) -> Chunk:
        if self._armed:
            # The last read emptied the ring and armed the handle: nothing to read
            # until the pipe says so (one read call per wake-up, not two).
            await trio.lowlevel.wait_readable(self._fd)
        while True:
            chunk = self.read_now()
            if chunk is not None:
                return chunk
            await trio.lowlevel.wait_readable(self._fd)

    def counters(self) -> tuple[int, int]:
        if not self._closed:  # after close the handle is freed: the last reading stands
            self._lib.edge_audio_counters_get(self._handle, self._counters)
        return int(self._counters.frames_captured), int(self._counters.frames_dropped)

    async def aclose(self) -> None:
        if self._closed:
            return
        self.counters()
        self._closed = True
        trio.lowlevel.notify_closing(self._fd)
        # Joining the backend thread takes up to one frame: do it off the loop,
        # and finish it even when the capture is being cancelled.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._lib.edge_audio_close, self._handle)


# -- pure Python sources: tone and file, paced in real time ------------------------------


class _PacedSource(abc.ABC):
    """Produces one frame per frame period on trio's clock."""

    def __init__(self, spec: SourceSpec, fmt: AudioFormat) -> None:
        self.spec = spec
        self.fmt = fmt
        self._next: float | None = None
        self._produced = 0

    async def receive(self) -> Chunk:
        period = self.fmt.frame_ms / 1000
        if self._next is None:
            self._next = trio.current_time()
        self._next += period
        await trio.sleep_until(self._next)
        pcm = await self._frame()
        self._produced += 1
        return Chunk(pcm, 1, self._next)

    @abc.abstractmethod
    async def _frame(self) -> bytes:
        """The next frame's PCM."""

    def counters(self) -> tuple[int, int]:
        return self._produced, 0

    async def aclose(self) -> None:
        return None


class ToneSource(_PacedSource):
    """A sine at ``tone:FREQ`` Hz, amplitude 0.5."""

    def __init__(self, spec: SourceSpec, fmt: AudioFormat) -> None:
        super().__init__(spec, fmt)
        import numpy as np

        self._np = np
        self._freq = float(spec.arg or 0)
        self._phase = 0

    async def _frame(self) -> bytes:
        np = self._np
        n = self.fmt.frame_samples
        t = (np.arange(self._phase, self._phase + n) / self.fmt.sample_rate).reshape(-1, 1)
        self._phase += n
        wave = 0.5 * np.sin(2 * np.pi * self._freq * t)
        samples = np.repeat(wave, self.fmt.channels, axis=1)
        return bytes((samples * 32767).astype("<i2").tobytes())


class FileSource(_PacedSource):
    """Any file soundfile reads, converted to the capture's format, paced in real time."""

    BLOCK_SECONDS: Final = 1

    def __init__(self, spec: SourceSpec, fmt: AudioFormat, handle: Any) -> None:
        super().__init__(spec, fmt)
        import numpy as np

        self._np = np
        self._file = handle
        self._pending = b""
        self._eof = False

    @classmethod
    async def open(cls, spec: SourceSpec, fmt: AudioFormat) -> FileSource:
        import soundfile

        path = spec.arg or ""
        try:
            handle = await trio.to_thread.run_sync(
                lambda: soundfile.SoundFile(os.path.expanduser(path))
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise CaptureError(f"{spec}: cannot read {path}: {exc}") from None
        return cls(spec, fmt, handle)

    def _convert(self, block: np.ndarray[Any, Any]) -> bytes:
        np = self._np
        rate_in = self._file.samplerate
        if block.shape[1] != self.fmt.channels:
            mono = block.mean(axis=1, keepdims=True)
            block = np.repeat(mono, self.fmt.channels, axis=1)
        if rate_in != self.fmt.sample_rate and len(block):
            n_out = round(len(block) * self.fmt.sample_rate / rate_in)
            x_in = np.arange(len(block)) / rate_in
            x_out = np.arange(n_out) / self.fmt.sample_rate
            block = np.stack(
                [np.interp(x_out, x_in, block[:, c]) for c in range(block.shape[1])], 1
            )
        return bytes((np.clip(block, -1, 1) * 32767).astype("<i2").tobytes())

    async def _frame(self) -> bytes:
        size = self.fmt.frame_bytes
        while len(self._pending) < size and not self._eof:
            frames = self._file.samplerate * self.BLOCK_SECONDS
            read = partial(self._file.read, frames, dtype="float64", always_2d=True)
            # Not abandoned: aclose would free the file under a running read.
            block = await trio.to_thread.run_sync(read)
            self._eof = len(block) < frames
            self._pending += self._convert(block)
        if not self._pending:
            raise SourceEnded(f"{self.spec}: end of file")
        frame, self._pending = self._pending[:size], self._pending[size:]
        return frame.ljust(size, b"\0")

    async def aclose(self) -> None:
        self._file.close()


async def open_source(spec: SourceSpec, fmt: AudioFormat) -> AudioSource:
    """Open ``spec``; ``CaptureError`` with a clear message when it cannot be."""
    if spec.native:
        return await NativeSource.open(spec, fmt)
    if spec.kind == "tone":
        return ToneSource(spec, fmt)
    return await FileSource.open(spec, fmt)


def silence_may_mean_no_permission(spec: SourceSpec, platform: str = sys.platform) -> bool:
    """Whether only zeros from ``spec`` may mean a missing permission (macOS's mic and system).

    On macOS a missing permission yields silence, not an error; elsewhere exact
    digital zeros are a legitimate quiet output and say nothing.
    """
    return platform == "darwin" and spec.kind in ("mic", "system")


def zero_audio_warning(
    spec: SourceSpec, zero_seconds: float, platform: str = sys.platform
) -> str | None:
    """What to tell the user when a live native source has sent only zeros for a while
    (see ``silence_may_mean_no_permission``)."""
    if not silence_may_mean_no_permission(spec, platform) or zero_seconds < 3:
        return None
    setting = "Microphone" if spec.kind == "mic" else "Screen & System Audio Recording"
    return (
        f"{spec}: only silence for {zero_seconds:.0f} s: probably no permission; allow "
        f"this terminal under System Settings → Privacy & Security → {setting}"
    )


async def probe_native(spec: SourceSpec, fmt: AudioFormat) -> None:
    """``CaptureError`` unless a capture of ``spec`` could be opened now (none is started)."""
    mod = native_module()
    ffi, lib = mod.ffi, mod.lib
    source, device = _native_args(mod, spec)
    err = ffi.new("char[512]")
    # The probe opens and closes by itself: safe to abandon when a sound server hangs.
    rc = await trio.to_thread.run_sync(
        partial(lib.edge_audio_probe, source, device, fmt.sample_rate, fmt.channels, err, len(err)),
        abandon_on_cancel=True,
    )
    if rc != 0:
        raise native_error(spec, ffi.string(err).decode(errors="replace"))


async def probe_sources(fmt: AudioFormat | None = None) -> list[dict[str, Any]]:
    """The audio sources this machine offers, for the capability report.

    ``mic`` and ``system`` are opened and closed once each to see whether the
    sound server (and permission) is there; the rest are always available.
    """
    fmt = fmt or AudioFormat()
    found: list[dict[str, Any]] = []
    for kind, what in (("mic", "microphone"), ("system", "system audio")):
        entry: dict[str, Any] = {"id": kind, "kind": what, "available": True}
        try:
            entry["backend"] = native_backend()
            await probe_native(SourceSpec(kind), fmt)
        except CaptureError as exc:
            entry["available"] = False
            entry["detail"] = str(exc)
        found.append(entry)
    found += [
        {"id": "pattern", "kind": "test pattern", "available": "backend" in found[0]},
        {"id": "tone:FREQ", "kind": "test tone", "available": True},
        {"id": "file:PATH", "kind": "audio file", "available": True},
    ]
    return found
