"""Secrets that cannot leak by accident, and a log filter that scrubs what looks like one.

A ``Secret`` prints as ``Secret('***')`` in every repr, f-string and log line;
the one way to the value is ``reveal()``, called only where the token goes on
the wire (the ``Authorization`` header).
"""

from __future__ import annotations

import logging
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
