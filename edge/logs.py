"""Where edge's log goes and how its lines look: levels, the text and JSON formats, the file.

``configure(LogOptions(...))`` sets up the root logger for a command; every handler
it adds has the secret scrubber (``edge.secret.ScrubFilter``), and a new call
replaces the handlers an earlier one added (others, a test's say, are left).

- **Where.** stderr by default: the terminal when edge is run by hand, the journal
  when systemd runs it. With a log file (``--log-file PATH``, ``[log] file``) every
  line goes to the file, appended, and stderr gets only warnings and errors. The
  file is created with mode 0600 (its missing directories 0700, ``edge.fs``) and
  reopened when it is moved or removed, so logrotate can rotate it without a
  signal (``WatchedFileHandler``). ``default_log_file()`` is where a service logs:
  ``~/.local/state/edge/log/edge.log`` on Linux (under ``$XDG_STATE_HOME`` when it
  is set), ``~/Library/Logs/edge/edge.log`` on macOS.
- **Text** (the default): ``2026-12-01T20:45:12.345+01:00 INFO    call 17 terminal ok
  in 0.532 s, 1234 chars``: local time with its UTC offset, to the millisecond.
- **JSON** (``--log-format json``): one object a line, ``{"ts", "level", "logger",
  "msg"}`` and, for the line of a tool call (``edge.tools.execute``), its fields
  ``id``, ``tool``, ``seconds``, ``outcome``, ``chars`` (and ``error``); an exception
  comes as ``exc``.
- **Levels**: ``LEVELS``, any case. Below DEBUG the chatty libraries (websocket,
  HTTP client and server) are held at WARNING.
"""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, Literal

from .errors import ConfigError
from .fs import PRIVATE_MODE, make_private_dir
from .secret import ScrubFilter, scrub

__all__ = [
    "FORMATS",
    "LEVELS",
    "JsonFormatter",
    "LogOptions",
    "PrivateFileHandler",
    "TextFormatter",
    "configure",
    "default_log_file",
    "iso_time",
    "parse_format",
    "parse_level",
    "remove_handlers",
]

#: The levels ``--log-level`` and ``[log] level`` take (any case).
LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
#: The formats ``--log-format`` and ``[log] format`` take.
FORMATS: Final = ("text", "json")
#: Libraries whose INFO and DEBUG lines are only wanted at DEBUG.
NOISY: Final = ("trio-websocket", "hypercorn", "hpack", "httpx", "httpcore")
#: The record attribute that carries a tool call's fields (``edge.tools.execute``).
CALL_FIELDS: Final = "edge_call"

Format = Literal["text", "json"]


def parse_level(text: str, where: str = "log level") -> str:
    """``text`` as one of ``LEVELS`` (any case in, upper case out).

    Raises:
        ConfigError: it is none of them; the message names ``where``.
    """
    level = text.strip().upper()
    if level not in LEVELS:
        raise ConfigError(f"{where} must be one of {', '.join(LEVELS)} (any case), not {text!r}")
    return level


def parse_format(text: str, where: str = "log format") -> Format:
    """``text`` as one of ``FORMATS``.

    Raises:
        ConfigError: it is none of them; the message names ``where``.
    """
    value = text.strip().lower()
    if value == "text":
        return "text"
    if value == "json":
        return "json"
    raise ConfigError(f"{where} must be text or json, not {text!r}")


def default_log_file() -> Path:
    """Where edge logs when run as a service: ``edge.log`` in the user log directory
    (``~/.local/state/edge/log`` on Linux, ``~/Library/Logs/edge`` on macOS)."""
    import platformdirs

    return platformdirs.user_log_path("edge") / "edge.log"


def iso_time(epoch: float) -> str:
    """``epoch`` as local time with its UTC offset, to the millisecond
    (``2026-12-01T20:45:12.345+01:00``)."""
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class LogOptions:
    """How a command logs: the level, a file (``None``: stderr only), the format."""

    level: str = "INFO"
    file: Path | None = None
    format: Format = "text"


class TextFormatter(logging.Formatter):
    """``TIME LEVEL MESSAGE``, the time local with its UTC offset (``iso_time``)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts``, ``level``, ``logger``, ``msg``, a tool call's fields,
    ``exc`` for an exception. Every string is scrubbed of tokens."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),  # scrubbed by the handler's ScrubFilter
        }
        fields = getattr(record, CALL_FIELDS, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in entry:
                    entry[key] = scrub(value) if isinstance(value, str) else value
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(self.formatException(record.exc_info))
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class PrivateFileHandler(logging.handlers.WatchedFileHandler):
    """Appends to ``path``, which it creates with mode 0600 (its missing directories 0700),
    and opens again when the file there is no longer the one it writes (logrotate moved or
    removed it). A file that exists keeps its mode.

    Raises:
        OSError: the directory or the file cannot be made or opened.
    """

    def __init__(self, path: Path) -> None:
        make_private_dir(path.parent)
        super().__init__(path, mode="a", encoding="utf-8")

    def _open(self) -> io.TextIOWrapper:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.baseFilename, flags, PRIVATE_MODE)
        stream = os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)
        assert isinstance(stream, io.TextIOWrapper)
        return stream


def _formatter(kind: Format) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else TextFormatter()


def _ours(handler: logging.Handler) -> bool:
    return bool(getattr(handler, "_edge", False))


def remove_handlers() -> None:
    """Take the handlers ``configure`` added off the root logger, and close them."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if _ours(h)]:
        root.removeHandler(handler)
        handler.close()


def configure(options: LogOptions, *, stream: IO[str] | None = None) -> None:
    """Log as ``options`` say: to ``stream`` (default stderr), and to the file if one is named
    (then ``stream`` gets WARNING and up); every handler scrubs secrets.

    Raises:
        OSError: the log file (or its directory) cannot be made or opened; nothing changed.
    """
    level = parse_level(options.level)
    handlers: list[logging.Handler] = []
    if options.file is not None:
        handlers.append(PrivateFileHandler(options.file))
    console = logging.StreamHandler(sys.stderr if stream is None else stream)
    if options.file is not None:
        console.setLevel(logging.WARNING)
    handlers.append(console)
    remove_handlers()
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(_formatter(options.format))
        handler.addFilter(ScrubFilter())
        handler._edge = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.NOTSET if level == "DEBUG" else logging.WARNING)
