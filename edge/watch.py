"""A value tasks can wait on: ``await status.wait_for(lambda s: s is not CONNECTED)``.

Handles keep their state (a tunnel's status, a supervised child's) in a
``Watched``; whoever needs to wait for a state waits on it instead of polling.
Setting the value wakes exactly the waiters whose predicate now holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Watched(Generic[T]):
    """Holds one value; ``wait_for(predicate)`` returns once the value satisfies it."""

    def __init__(self, value: T) -> None:
        self._value = value
        self._waiters: dict[trio.Event, Callable[[T], bool]] = {}

    @property
    def value(self) -> T:
        return self._value

    @value.setter
    def value(self, value: T) -> None:
        self._value = value
        for event, predicate in list(self._waiters.items()):
            if predicate(value):
                del self._waiters[event]
                event.set()

    async def wait_for(self, predicate: Callable[[T], bool]) -> T:
        """Wait until ``predicate(value)`` holds (at once if it does now); returns the value.

        Wakes on every change that satisfies the predicate, even one undone before
        this task runs again: the value returned is the one that satisfied it.
        """
        if predicate(self._value):
            await trio.lowlevel.checkpoint()
            return self._value
        event = trio.Event()
        seen: list[T] = []

        def keep(value: T) -> bool:
            if predicate(value):
                seen.append(value)
                return True
            return False

        self._waiters[event] = keep
        try:
            await event.wait()
        finally:
            self._waiters.pop(event, None)
        return seen[0]

    async def wait_value(self, value: T) -> T:
        """Wait until the value equals ``value``."""
        return await self.wait_for(lambda v: v == value)
