"""One task that reads every native capture's ring, and one connection per device.

A capture on its own waits on its source's pipe in its own task. Many captures
of one sound server's device are woken at the same instant every frame, and a
task per capture means as many wake-ups, re-registrations and schedule points
per frame as there are captures, each frame's processing queued behind the
others'. The pump is one task that waits on one selector holding every
source's pipe (level-triggered, registered once), and on each wake-up reads
every ready ring and hands its chunk to its capture, without yielding in
between; a capture's sinks never block (the uplink sends synchronously when
it can), so the burst is processed in one go, in the order it arrived.

Captures of one device in one format share the device's capture in the shim
(``NativeSource.tap``): one connection to the sound server and one backend
thread fill every capture's ring, instead of one of each per capture woken at
the same instant. ``FramePump.open_source`` opens a source that way.

``serve_frame_pump`` runs it (``nursery.start`` gives the handle); a capture
given the handle opens its source with ``FramePump.open_source`` and calls
``FramePump.drive`` instead of reading it itself. The pump owns nothing of a
capture's: the capture closes its source, and ``drive`` registers it for
exactly as long as it runs.
"""

from __future__ import annotations

import selectors
from collections.abc import Callable
from typing import Final

import trio

from .sources import AudioFormat, AudioSource, Chunk, NativeSource, SourceSpec, open_source

#: Sources whose device a capture shares with the others of the same format (the
#: test pattern keeps a thread per capture, as a pipeline check should).
SHARED_KINDS: Final = ("mic", "system")


class _Driven:
    """One source on the pump: what reads it, what takes its chunks, how it ended."""

    __slots__ = ("done", "error", "source", "take")

    def __init__(self, source: NativeSource, take: Callable[[Chunk], None]) -> None:
        self.source = source
        self.take = take
        self.done = trio.Event()
        self.error: Exception | None = None

    def pump(self) -> bool:
        """Read what is ready and hand it on; False once the source has ended or failed."""
        source, take = self.source, self.take
        try:
            while True:
                chunk = source.read_now()
                if chunk is None:
                    return True
                take(chunk)
                if source.armed:
                    return True
        except Exception as exc:  # the end, a failure, or a sink's error: this capture's alone
            self.error = exc
            self.done.set()
            return False


class FramePump:
    """Handle on the pump task (see the module's docstring); made by ``serve_frame_pump``."""

    def __init__(self, selector: selectors.DefaultSelector) -> None:
        self._selector = selector
        self._closed = False
        self._driven: dict[int, _Driven] = {}
        # While only one source is driven, the pump waits on its pipe itself: no
        # selector call per frame for a capture on its own.
        self._single: tuple[int, _Driven] | None = None
        self._waiting = trio.CancelScope()  # cancelled when the sources change
        # The open sources of each shared device and format, and the opens under way.
        self._open: dict[tuple[SourceSpec, AudioFormat], list[NativeSource]] = {}
        self._opening: dict[tuple[SourceSpec, AudioFormat], trio.Event] = {}

    async def open_source(self, spec: SourceSpec, fmt: AudioFormat) -> AudioSource:
        """Open ``spec`` like ``sources.open_source``, sharing a device already open here.

        Captures of a device starting together wait for the first one's open and
        share it; if it fails, the next one tries for itself.
        """
        if spec.kind not in SHARED_KINDS:
            return await open_source(spec, fmt)
        key = (spec, fmt)
        while (opening := self._opening.get(key)) is not None:
            await opening.wait()
        for other, sources in list(self._open.items()):
            sources[:] = [s for s in sources if s.live]
            if not sources:
                del self._open[other]
        shared = self._open.get(key)
        if shared:
            source = shared[0].tap()
        else:
            self._opening[key] = opened = trio.Event()
            try:
                first = await open_source(spec, fmt)
            finally:
                del self._opening[key]
                opened.set()
            assert isinstance(first, NativeSource)
            source = first
        self._open.setdefault(key, []).append(source)
        return source

    async def drive(self, source: NativeSource, take: Callable[[Chunk], None]) -> None:
        """Hand ``source``'s chunks to ``take`` (in the pump's task) until the source ends.

        Raises what ended it (``CaptureError`` from the source, or whatever
        ``take`` raised); returns only by cancellation otherwise.
        """
        if self._closed:
            raise trio.ClosedResourceError("the frame pump has stopped")
        fd = source.fd
        driven = _Driven(source, take)
        self._selector.register(fd, selectors.EVENT_READ, driven)
        self._driven[fd] = driven
        self._changed()
        try:
            await driven.done.wait()
        finally:
            # Still driven unless it ended (the pump let go of it then) or the
            # pump has stopped (its selector is closed).
            if driven.error is None and not self._closed:
                self._drop(fd)
        assert driven.error is not None
        raise driven.error

    def _drop(self, fd: int) -> None:
        self._selector.unregister(fd)
        del self._driven[fd]
        self._changed()

    def _changed(self) -> None:
        self._single = next(iter(self._driven.items())) if len(self._driven) == 1 else None
        self._waiting.cancel()

    async def _run(self) -> None:
        selector = self._selector
        while True:
            with trio.CancelScope() as self._waiting:
                while True:
                    single = self._single
                    if single is not None:
                        fd, driven = single
                        try:
                            await trio.lowlevel.wait_readable(fd)
                        except trio.ClosedResourceError:  # closing: about to be dropped
                            await trio.sleep_forever()
                        if not driven.pump():
                            self._drop(fd)
                    else:
                        await trio.lowlevel.wait_readable(selector)
                        for key, _ in selector.select(0):
                            driven = key.data
                            if not driven.pump():
                                self._drop(key.fd)


async def serve_frame_pump(
    *, task_status: trio.TaskStatus[FramePump] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the pump until cancelled; ``nursery.start`` gives its handle."""
    selector = selectors.DefaultSelector()
    pump = FramePump(selector)
    try:
        task_status.started(pump)
        await pump._run()
    finally:
        pump._closed = True
        trio.lowlevel.notify_closing(selector)
        selector.close()
