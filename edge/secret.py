"""Secrets that cannot leak by accident, and a log filter that scrubs what looks like one.

A ``Secret`` prints as ``Secret('***')`` in every repr, f-string and log line;
the one way to the value is ``reveal()``, called only where the token goes on
the wire (the ``Authorization`` header).

``take_from_environment`` reads a secret handed over in an environment
variable and leaves no copy of it in the process's environment, where child
processes and ``/proc/<pid>/environ`` would find it.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Final, final

_JWT: Final = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER: Final = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")


@final
class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def take_from_environment(name: str) -> str | None:
    """The value of the environment variable ``name``, taken out of this process's environment.

    It leaves ``os.environ`` (so no child process inherits it) and its value is
    overwritten where the process's initial environment holds it
    (``blank_initial_environ``), so ``/proc/<pid>/environ`` no longer shows it.

    Returns:
        The value, or ``None`` when ``name`` is not set.
    """
    # Blank first: popping unsets the C variable too, and then its string can no
    # longer be found through ``environ``, though it is still in the initial block.
    blank_initial_environ(os.fsencode(name))
    return os.environ.pop(name, None)


def blank_initial_environ(name: bytes) -> None:
    """Overwrite ``name``'s value in the C environment's strings, where it still is.

    ``os.environ.pop`` takes a variable out of this process's environment, but
    the strings the process started with stay in memory, and
    ``/proc/<pid>/environ`` (readable by code running as the same user, and by
    ``ps e``) shows them. Each ``name=`` entry of the C ``environ`` array has its
    value overwritten with ``x`` in place, so its length is unchanged.
    """
    import ctypes

    try:
        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(ctypes.CDLL(None), "environ")
    except (OSError, ValueError):
        return  # not a C library that exports environ: nothing to do
    prefix = name + b"="
    index = 0
    while (address := environ[index]) is not None:
        entry = ctypes.string_at(address)
        if entry.startswith(prefix):
            ctypes.memset(address + len(prefix), ord("x"), len(entry) - len(prefix))
        index += 1


def scrub(text: str) -> str:
    """Replace JWTs and bearer tokens in ``text`` with ``***``."""
    return _BEARER.sub(r"\1***", _JWT.sub("***", text))


class ScrubFilter(logging.Filter):
    """A handler filter that scrubs every record's final text of tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True
