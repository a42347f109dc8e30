"""Where edge's log goes and how its lines look: levels, the text and JSON formats, the file.

``configure(LogOptions(...))`` sets up the root logger for a command; every handler
it adds has the secret scrubber (``edge.secret.ScrubFilter``), and a new call
replaces the handlers an earlier one added (others, a test's say, are left).

- **Where.** stderr by default: the terminal when edge is run by hand, the journal
  when systemd runs it without a log file. With a log file (``--log-file PATH``,
  ``[log] file``) every line goes to the file, appended, and stderr gets only
  warnings and errors (``PrivateFileHandler``): the file is made 0600 (its missing
  directories 0700, ``edge.fs``), also one that was there; it is opened again
  when it is moved or removed, so logrotate can rotate it without a signal, and
  edge rotates it itself at ``MAX_BYTES`` (10 MiB) to ``edge.log.1`` ...
  ``edge.log.3`` (``KEEP``). A line that cannot be written (the disk is full, the
  directory cannot be made again) is lost with one note on stderr, never an error
  for the code that logged. ``default_log_file()`` is where a service logs:
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
    "KEEP",
    "LEVELS",
    "MAX_BYTES",
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
#: The size at which a log file is rotated (bytes, about: characters are counted).
MAX_BYTES: Final = 10 * 1024 * 1024
#: How many rotated log files are kept (``edge.log.1`` to ``edge.log.3``).
KEEP: Final = 3

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
    """How a command logs: the level, a file (``None``: stderr only), the format, and the
    file's size cap and rotated files kept (``PrivateFileHandler``)."""

    level: str = "INFO"
    file: Path | None = None
    format: Format = "text"
    max_bytes: int = MAX_BYTES
    keep: int = KEEP


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


class PrivateFileHandler(logging.FileHandler):
    """Appends to ``path``: a private file (0600, its missing directories 0700), opened again
    when it is moved or removed, capped in size, and never an error for the code that logs.

    - **Private.** Opening it makes it 0600 even when it was there already (a file that
      launchd or an older edge made with a looser mode holds call lines now), and makes
      its missing directories 0700 (``edge.fs``), also when they were removed while edge
      ran.
    - **Moved or removed** (logrotate, ``rm``): every line first checks the path (one
      ``stat``); a file there that is not the one open, or none, means the next line goes
      to a new file at the path. No signal is needed.
    - **Capped.** A line that would take the file past ``max_bytes`` (about: characters
      are counted) first rotates it: ``edge.log.2`` becomes ``edge.log.3`` (the oldest of
      ``keep`` is dropped), ``edge.log.1`` ``edge.log.2``, ``edge.log`` ``edge.log.1``,
      and a new ``edge.log`` is begun. The old files keep their 0600. ``max_bytes`` 0: no
      cap.
    - **Never raises into the code that logged.** A line that cannot be written (the
      directory cannot be made again, EMFILE, ENOSPC) is lost, with one note on stderr
      for the whole outage rather than a traceback a line; every later line tries
      again, and the first that gets through is preceded by a WARNING line in the file
      saying how many were lost (and stderr is told too). A line that cannot be
      formatted (a wrong ``%`` argument) is the logging module's usual error report.
    - Text that cannot be encoded (a lone surrogate from a file name, say) is written
      backslash-escaped, not dropped.

    Raises:
        OSError: at construction, the directory or the file cannot be made or opened.
    """

    def __init__(self, path: Path, *, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
        self.max_bytes = max_bytes
        self.keep = keep
        #: The open file's (device, inode), to see that the path now names another file.
        self._ident: tuple[int, int] | None = None
        #: Why the last line could not be written (``None``: it was), and lines lost since.
        self._failing: str | None = None
        self._lost = 0
        super().__init__(path, mode="a", encoding="utf-8", errors="backslashreplace")

    def _open(self) -> io.TextIOWrapper:
        path = Path(self.baseFilename)
        make_private_dir(path.parent)  # removed while edge ran: made again
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(path, flags, PRIVATE_MODE)
        try:
            os.fchmod(fd, PRIVATE_MODE)  # a file that was there keeps its mode otherwise
            st = os.fstat(fd)
            stream = os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(fd)
            raise
        assert isinstance(stream, io.TextIOWrapper)
        self._ident = (st.st_dev, st.st_ino)
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + self.terminator
        except RecursionError:
            raise
        except Exception:
            logging.Handler.handleError(self, record)  # the line's own fault: the usual report
            return
        try:
            stream = self._ready(len(text))
            if self._failing is not None:
                stream.write(self._gap_line(record) + self.terminator)
            stream.write(text)
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self._drop()  # what it had buffered is lost with the line; the next line reopens
            self.handleError(record)
            return
        if self._failing is not None:
            _note(f"edge: writing the log file {self.baseFilename} again "
                  f"({self._lost} {'line' if self._lost == 1 else 'lines'} lost)")  # fmt: skip
            self._failing, self._lost = None, 0

    def handleError(self, record: logging.LogRecord) -> None:
        """A line that could not be written: counted, and noted on stderr once per outage."""
        exc = sys.exc_info()[1]
        self._lost += 1
        if self._failing is None:
            self._failing = _reason(exc, self.baseFilename)
            _note(f"edge: cannot write the log file {self.baseFilename}: {self._failing}; "
                  "lines are lost until it can be written again (tried at each line)")  # fmt: skip

    def _ready(self, size: int) -> io.TextIOWrapper:
        """The stream to write ``size`` more characters to: the file now at the path, rotated
        first if they would take it past ``max_bytes``."""
        try:
            st: os.stat_result | None = os.stat(self.baseFilename)
        except OSError:
            st = None  # removed, or its directory (or a file is in its way): _open tries
        if self.stream is not None and (st is None or (st.st_dev, st.st_ino) != self._ident):
            self._drop()  # moved or removed: the file at the path from now on
        full = st is not None and st.st_size > 0 and st.st_size + size > self.max_bytes
        if full and self.max_bytes > 0:
            self._rotate()
        if self.stream is None:
            self.stream = self._open()
        return self.stream

    def _rotate(self) -> None:
        """``edge.log.N`` → ``edge.log.N+1`` for the ``keep`` kept (the oldest dropped),
        ``edge.log`` → ``edge.log.1``; the next ``_open`` begins a new file."""
        self._drop()
        base = self.baseFilename
        if self.keep < 1:
            os.unlink(base)
            return
        for n in range(self.keep - 1, 0, -1):
            if os.path.lexists(f"{base}.{n}"):
                os.replace(f"{base}.{n}", f"{base}.{n + 1}")
        os.replace(base, f"{base}.1")

    def _drop(self) -> None:
        """Close the stream (a close that fails, as on a full disk, still lets the file go)."""
        stream, self.stream = self.stream, None
        self._ident = None
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass

    def _gap_line(self, record: logging.LogRecord) -> str:
        """The WARNING line, in this handler's format, that says lines were lost and why."""
        lost = self._lost
        gap = logging.makeLogRecord({
            "name": __name__, "levelno": logging.WARNING, "levelname": "WARNING",
            "created": record.created, "msecs": record.msecs,
            "msg": "%d log %s could not be written to this file: %s",
            "args": (lost, "line" if lost == 1 else "lines", self._failing),
        })  # fmt: skip
        return self.format(gap)


def _reason(exc: BaseException | None, path: str) -> str:
    """Why a line could not be written, in a few words (the path only when it is another)."""
    if isinstance(exc, FileExistsError) and exc.filename is not None:
        return f"{exc.filename} is not a directory"  # mkdir met a file in the way
    if isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
        if exc.filename is not None and str(exc.filename) != path:
            reason = f"{reason}: {exc.filename}"
        return reason
    return f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"


def _note(text: str) -> None:
    """``text`` on stderr, as the logging module reports its own trouble (never raises)."""
    try:
        if sys.stderr is not None:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
    except Exception:
        pass


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
        handlers.append(
            PrivateFileHandler(options.file, max_bytes=options.max_bytes, keep=options.keep)
        )
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
