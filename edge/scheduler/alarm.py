"""The scheduler's clock: wall time, and a wait until a wall-clock deadline.

Deadlines are wall-clock instants (epoch seconds), but trio sleeps on a
monotonic clock, which on Linux stops while the machine is suspended and never
follows a clock step (NTP, a user setting the time). So ``SystemClock.wait``
races two things and returns on the first:

* ``trio.sleep_until(trio.current_time() + (deadline - wall()))``, the
  monotonic sleep (precise while nothing jumps);
* on Linux, a ``timerfd`` on ``CLOCK_REALTIME`` armed at the wall deadline with
  ``TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET`` (through ctypes on libc): it
  fires at the wall deadline even after a suspend, and when the clock is set
  its read fails with ``ECANCELED``, which wakes the waiter early.

Either way the caller compares wall and monotonic time on each wake and
recomputes its deadline: a wait may return early, never late by more than the
machine's scheduling delay. Where there is no timerfd (macOS), a wait is capped
at ``FALLBACK_MAX_WAIT`` so that a suspend or a clock step is noticed within
that time. ``VirtualClock`` is the tests' clock: trio's (autojump) clock plus an
offset that ``jump`` moves, waking the waiter as a clock-set would.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import math
import os
import sys
import time
from typing import Final, Protocol

import trio

log = logging.getLogger(__name__)

#: Longest single wait without a timerfd: how late a suspend or clock step can make a run.
FALLBACK_MAX_WAIT: Final = 300.0

_CLOCK_REALTIME: Final = 0
_TFD_CLOEXEC: Final = os.O_CLOEXEC
_TFD_NONBLOCK: Final = os.O_NONBLOCK
_TFD_TIMER_ABSTIME: Final = 1
_TFD_TIMER_CANCEL_ON_SET: Final = 2


class WallClock(Protocol):
    """What the scheduler needs of a clock."""

    #: ``"timerfd"``, ``"monotonic"`` (no timerfd) or ``"virtual"`` (tests).
    name: str

    def wall(self) -> float:
        """Now, in seconds since the epoch."""
        ...

    async def wait(self, deadline: float) -> None:
        """Return at the wall instant ``deadline``, or earlier if the clock was set.

        Several tasks may wait at once.
        """
        ...

    def close(self) -> None:
        """Release what the clock holds (idempotent)."""
        ...


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Timerfd:
    """A ``CLOCK_REALTIME`` timerfd, armed at absolute wall instants, cancelled on clock set."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: libc's
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p,
        ]  # fmt: skip
        self._settime.restype = ctypes.c_int
        create = libc.timerfd_create
        create.argtypes = [ctypes.c_int, ctypes.c_int]
        create.restype = ctypes.c_int
        fd = create(_CLOCK_REALTIME, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self.fd: int | None = fd

    def arm(self, deadline: float) -> None:
        """Fire at wall instant ``deadline`` (drains a pending expiry or cancel first)."""
        assert self.fd is not None
        self.drain()
        frac, whole = math.modf(max(deadline, 0.0))
        spec = _Itimerspec()
        spec.it_value.tv_sec = int(whole)
        spec.it_value.tv_nsec = min(int(frac * 1e9), 999_999_999)
        if spec.it_value.tv_sec == 0 and spec.it_value.tv_nsec == 0:
            spec.it_value.tv_nsec = 1  # all zero would disarm it
        flags = _TFD_TIMER_ABSTIME | _TFD_TIMER_CANCEL_ON_SET
        if self._settime(self.fd, flags, ctypes.byref(spec), None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def drain(self) -> bool:
        """Read the fd: ``True`` if it had fired or been cancelled by a clock set."""
        assert self.fd is not None
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno == errno.ECANCELED:
                return True
            raise
        return True

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                trio.lowlevel.notify_closing(fd)  # a waiter, if any, gets ClosedResourceError
            except RuntimeError:  # not in a trio run
                pass
            os.close(fd)


class SystemClock:
    """The real clock: ``time.time()``, and waits on a timerfd and trio's clock at once.

    Holds one file descriptor on Linux until ``close`` (and one more for each
    wait while another is going). ``timerfd=False`` waits on trio's clock alone, as
    where there is no timerfd.
    """

    def __init__(self, *, timerfd: bool = True) -> None:
        self._timerfd: _Timerfd | None = None
        self._busy = False
        if timerfd and sys.platform.startswith("linux"):
            try:
                self._timerfd = _Timerfd()
            except (OSError, AttributeError) as exc:
                log.warning("scheduler: no timerfd (%s); waiting on the monotonic clock", exc)
        self.name = "timerfd" if self._timerfd is not None else "monotonic"

    @property
    def fd(self) -> int | None:
        """The timerfd's descriptor, or ``None``."""
        return None if self._timerfd is None else self._timerfd.fd

    def wall(self) -> float:
        return time.time()

    async def wait(self, deadline: float) -> None:
        delay = deadline - time.time()
        if delay <= 0:
            await trio.lowlevel.checkpoint()
            return
        timerfd = self._timerfd
        if timerfd is None or timerfd.fd is None:
            await trio.sleep(min(delay, FALLBACK_MAX_WAIT))
            return
        if self._busy:  # another task waits on the clock's own: one for this wait alone
            try:
                spare = _Timerfd()
            except OSError:  # out of descriptors: trio's clock alone, for this wait
                await trio.sleep(min(delay, FALLBACK_MAX_WAIT))
                return
            try:
                await self._wait_on(spare, deadline, delay)
            finally:
                spare.close()
            return
        self._busy = True
        try:
            await self._wait_on(timerfd, deadline, delay)
        finally:
            self._busy = False

    @staticmethod
    async def _wait_on(timerfd: _Timerfd, deadline: float, delay: float) -> None:
        assert timerfd.fd is not None
        timerfd.arm(deadline)
        with trio.move_on_after(delay):
            await trio.lowlevel.wait_readable(timerfd.fd)
            timerfd.drain()

    def close(self) -> None:
        if self._timerfd is not None:
            self._timerfd.close()


class VirtualClock:
    """A clock for tests: wall = ``base`` + ``trio.current_time()`` + an offset.

    ``jump(seconds)`` moves the offset (a clock step, or a suspend's gap when
    forward) and wakes every waiter at once, as a timerfd's ``ECANCELED`` would.
    """

    name = "virtual"

    def __init__(self, base: float) -> None:
        self.base = base
        self.offset = 0.0
        self._jumped = trio.Event()  # set by the next jump (then replaced)

    def wall(self) -> float:
        return self.base + trio.current_time() + self.offset

    async def wait(self, deadline: float) -> None:
        delay = deadline - self.wall()
        if delay <= 0:
            await trio.lowlevel.checkpoint()
            return
        with trio.move_on_after(delay):
            await self._jumped.wait()

    def jump(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (either way) and wake every waiter."""
        self.offset += seconds
        self._jumped.set()
        self._jumped = trio.Event()

    def close(self) -> None:
        pass
