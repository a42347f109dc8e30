"""What the command modules share: options, config loading, logging, ``-q``/``-v``, the
control-API client, and the one mapping from errors to exit codes.

Only the standard library is imported at the top; everything else is imported where
it is used, so that building the parser (``edge --help``) stays fast.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ..config import Config

#: The control API's default address: the value of ``edge.config.DEFAULT_CONTROL``,
#: written out because importing ``edge.config`` would slow ``edge --help``.
DEFAULT_CONTROL: Final = "127.0.0.1:8660"

#: What every handler is: the parsed arguments in, the exit code out.
Handler = Callable[[argparse.Namespace], int]


def fail(message: str, code: int = 2) -> int:
    """Print ``edge: error: MESSAGE`` to stderr; return ``code`` for the handler to return."""
    print(f"edge: error: {message}", file=sys.stderr)
    return code


def call_handler(args: argparse.Namespace) -> int:
    """Run the chosen command's handler, turning the errors users cause into exit codes.

    A ``ConfigError`` is exit 2 with its message. An ``EdgeError`` that reaches here
    inside an exception group (as a start-up error escaping ``trio.run`` does, wrapped
    by the nurseries it crossed) is exit 2 with its first leaf's message; a group
    holding anything else propagates. Ctrl-C is exit 130; a closed stdout (``| head``)
    is exit 141, quietly. The command's ``-q``/``-v`` hold while it runs
    (``verbosity``), and an absent ``--control`` is the config's (``add_control_option``).
    """
    from ..errors import ConfigError, EdgeError, first_leaf

    handler: Handler = args.handler
    chosen = -1 if getattr(args, "quiet", False) else 1 if getattr(args, "verbose", False) else 0
    token = _VERBOSITY.set(chosen)
    try:
        if chosen > 0:
            setup_logging("DEBUG")  # also for a command that sets up no logging itself
        if getattr(args, "control_from_config", False) and args.control is None:
            args.control = configured_control(getattr(args, "config", None))
        code = handler(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is seen below
        return code
    except BrokenPipeError:
        # stdout's reader went away (``edge config show | head``): no traceback, and no
        # second error when the interpreter flushes stdout at exit.
        return _reader_gone()
    except ConfigError as exc:
        return fail(str(exc))
    except ControlUnreachable as exc:  # a daemon that cannot be reached: the op failed
        return fail(str(exc), code=1)
    except BaseExceptionGroup as group:
        pipe, others = group.split(BrokenPipeError)
        if pipe is not None and others is None:  # the same, from inside a nursery
            return _reader_gone()
        ours, rest = group.split(EdgeError)
        if ours is None or rest is not None:
            raise
        return fail(str(first_leaf(ours)))
    except KeyboardInterrupt:
        return 130
    finally:
        _VERBOSITY.reset(token)


def _reader_gone() -> int:
    """stdout's reader went away: point stdout at /dev/null (so the flush at exit cannot
    fail again) and answer 141, as a shell reports a command killed by SIGPIPE."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


# --- help text and wording -------------------------------------------------------------


class ParagraphFormatter(argparse.HelpFormatter):
    """The help formatter of every command: prose wrapped to the terminal, examples kept.

    In a description or an epilog, consecutive lines that start at the margin are
    prose: joined and wrapped to the width argparse takes from the terminal
    (``COLUMNS``). A line starting ``- `` or ``* `` starts a list entry, wrapped under
    its own text; a line ending in ``:`` (``examples:``) stands alone; an indented line
    (an example) and a blank line are kept as written. argparse's own formatters either
    wrap everything (examples lose their lines) or nothing
    (``RawDescriptionHelpFormatter``: long lines overflow).
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines: list[str] = []
        prose: list[str] = []
        hanging = ""  # the indent of a list entry's later lines

        def wrap_prose() -> None:
            if prose:
                lines.extend(
                    textwrap.wrap(
                        " ".join(prose),
                        max(width, 20),
                        initial_indent=indent,
                        subsequent_indent=indent + hanging,
                        break_long_words=False,
                        break_on_hyphens=False,
                    )
                )
                prose.clear()

        for line in text.strip("\n").splitlines():
            if line and not line[0].isspace():
                if line.startswith(("- ", "* ")):
                    wrap_prose()
                    hanging = "  "
                elif line.rstrip().endswith(":"):  # a heading: a paragraph of its own
                    wrap_prose()
                    hanging = ""
                    prose.append(line.strip())
                    wrap_prose()
                    continue
                elif not prose:
                    hanging = ""
                prose.append(line.strip())
                continue
            wrap_prose()
            hanging = ""
            lines.append(indent + line if line.strip() else "")
        wrap_prose()
        return "\n".join(lines)


def plural(n: int, word: str, words: str | None = None) -> str:
    """``n`` and its noun: ``plural(1, "tool")`` is "1 tool", ``plural(3, "tool")`` "3 tools";
    ``words`` is an irregular plural (``plural(n, "match", "matches")``)."""
    return f"{n} {word if n == 1 else words or word + 's'}"


# --- numeric and address flags --------------------------------------------------------
#
# argparse ``type=`` helpers: a value out of range is argparse's own error
# (``edge run: error: argument --max-calls: ...``, usage shown, exit 2).


def _number(text: str, *, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    return value


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """A ``type=`` for a whole number from ``low`` to ``high`` (no upper bound if ``None``)."""

    def parse(text: str) -> int:
        value = int(_number(text, integer=True))
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {value}")
        return value

    parse.__name__ = "int_range"
    return parse


#: ``type=`` for a TCP port (0: any free one).
port: Final = int_range(0, 65535)


def seconds(text: str) -> float:
    """``type=`` for a duration: a finite number of seconds above 0."""
    value = _number(text, integer=False)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text}")
    return value


def setting(section: str, key: str) -> Callable[[str], int]:
    """``type=`` for a flag that overrides the integer key ``[section] key`` of config.toml:
    the same range as the file (``edge.settings.SETTINGS``, looked up when the flag is given,
    so building the parser imports nothing)."""

    def parse(text: str) -> int:
        from ..settings import SETTINGS

        limits = SETTINGS[section][key]
        value = int(_number(text, integer=True))
        if not limits.in_range(value):
            raise argparse.ArgumentTypeError(f"must be {limits.range_text()}, not {value}")
        return value

    parse.__name__ = "setting"
    return parse


def address(text: str) -> str:
    """``type=`` for ``HOST:PORT`` (port 0 to 65535); the text itself, once it parses."""
    from ..errors import ConfigError

    try:
        parse_hostport(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# --- options ---------------------------------------------------------------------------


def add_config_option(
    parser: argparse.ArgumentParser,
    help: str = "TOML config (default: config.toml in the user config dir, if any)",
) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help=help)


def add_policy_options(parser: argparse.ArgumentParser) -> None:
    """``--config --workspace --allow-tool --root``: what ``load_config`` reads them as."""
    add_config_option(parser)
    parser.add_argument(
        "--workspace", type=Path, metavar="DIR", help="where tools work; relative paths start here"
    )
    parser.add_argument(
        "--allow-tool",
        action="append",
        metavar="NAME",
        dest="allow_tools",
        help="allow only these tools (repeatable; default: all)",
    )
    parser.add_argument(
        "--root",
        action="append",
        type=Path,
        metavar="DIR",
        dest="roots",
        help="another directory file tools may touch (repeatable)",
    )


#: The help of ``--control`` on the commands that talk to the running daemon.
CONTROL_HELP: Final = (
    f"the running daemon's control API (default: [control] listen of the config, "
    f"else {DEFAULT_CONTROL})"
)


def add_control_option(
    parser: argparse.ArgumentParser, help: str = CONTROL_HELP, default: str | None = DEFAULT_CONTROL
) -> None:
    """``--control HOST:PORT``: where the running daemon's control API is.

    With the default, an absent flag means the config's ``[control] listen``, else
    ``DEFAULT_CONTROL``: ``call_handler`` fills ``args.control`` in before the handler
    runs (``configured_control``), so a daemon that listens elsewhere by its config is
    found without the flag. ``edge run`` passes ``default=None``: it reads the config
    itself.
    """
    parser.add_argument("--control", type=address, metavar="HOST:PORT", default=None, help=help)
    if default is not None:
        parser.set_defaults(control_from_config=True)


def configured_control(config_file: Path | None) -> str:
    """The control API's ``HOST:PORT`` by the config: ``[control] listen`` of ``config_file``
    (else of the default config file, if it exists), else ``DEFAULT_CONTROL``.

    Only that file is read (not the token file, not the environment), so a command
    that just asks the daemon something does not fail on what it does not use.

    Raises:
        ConfigError: the file does not load, or ``listen`` is not ``HOST:PORT``.
    """
    from ..config import default_paths, load_file

    path = config_file
    if path is None:
        default_file = default_paths()[0]
        path = default_file if default_file.exists() else None
    if path is None:
        return DEFAULT_CONTROL
    listen = load_file(path.expanduser()).get("control", {}).get("listen")
    if not isinstance(listen, str):
        return DEFAULT_CONTROL
    return reachable(parse_hostport(listen))


def reachable(address: tuple[str, int] | None) -> str:
    """``HOST:PORT`` where this machine reaches a control API listening on ``address``: a
    wildcard address (``0.0.0.0``, ``::``) is reached on loopback; ``None`` (no control
    API configured) is ``DEFAULT_CONTROL``."""
    if address is None:
        return DEFAULT_CONTROL
    host, port = address
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- config and logging ----------------------------------------------------------------


def load(args: argparse.Namespace, **extra: Any) -> Config:
    """The config for ``args``: ``--config``, the policy options if the command has them,
    then ``extra`` (flags win over the file)."""
    from ..config import load_config

    return load_config(
        config_file=args.config,
        workspace=getattr(args, "workspace", None),
        allow_tools=getattr(args, "allow_tools", None),
        roots=getattr(args, "roots", None),
        **extra,
    )


def setup_logging(level: str, *, file: Path | None = None, format: str = "text") -> None:
    """Log at ``level`` (``-q``: at least WARNING; ``-v``: DEBUG) to stderr, and to ``file``
    if one is given (then stderr gets warnings and errors only), in ``format`` (``text``
    or ``json``), secrets scrubbed: ``edge.logs.configure``.

    Raises:
        OSError: ``file`` cannot be made or opened.
    """
    from ..logs import LogOptions, configure, parse_format

    configure(LogOptions(level=log_level(level), file=file, format=parse_format(format)))


# --- -q/--quiet and -v/--verbose ----------------------------------------------------------
#
# Every command that runs (each sub-parser without sub-commands of its own) takes
# ``-q/--quiet`` and ``-v/--verbose`` (``add_verbosity_options``, called once on the
# whole tree). ``call_handler`` holds the choice for the handler's run, and
# ``setup_logging`` and ``progress`` follow it: ``-q`` logs warnings and errors only and
# prints no progress lines; ``-v`` logs at DEBUG (even for a command that sets up no
# logging of its own). ``edge run``'s ``-q``/``-v`` win over ``--log-level`` and
# ``[log] level``. Results (what a command prints to stdout) and errors are never
# silenced.

#: The running command's choice: -1 ``--quiet``, 0 neither, 1 ``--verbose``.
_VERBOSITY: Final[ContextVar[int]] = ContextVar("edge_cli_verbosity", default=0)

#: The levels ``log_level`` orders (``edge.logs.LEVELS``, written out so that the parser
#: imports nothing).
_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_verbosity_options(parser: argparse.ArgumentParser) -> None:
    """Add ``-q/--quiet`` and ``-v/--verbose`` (one or the other) to every command of the
    tree under ``parser`` that runs: its sub-parsers without sub-commands of their own, and
    none that has either flag already."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases: once each
                _add_verbosity(child)


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if subcommands:
        add_verbosity_options(parser)
        return
    taken = parser._option_string_actions
    if any(flag in taken for flag in ("-q", "--quiet", "-v", "--verbose")):
        return
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors, no progress lines"
    )
    group.add_argument("-v", "--verbose", action="store_true", help="log debug lines too")


def verbosity() -> int:
    """The running command's ``-q``/``-v``: -1 quiet, 0 neither, 1 verbose."""
    return _VERBOSITY.get()


def log_level(level: str) -> str:
    """``level`` as ``-q`` (at least WARNING) or ``-v`` (DEBUG) of the running command
    leave it (upper case)."""
    level = level.upper()
    v = verbosity()
    if v > 0:
        return "DEBUG"
    if v < 0 and (level not in _LEVELS or _LEVELS.index(level) < _LEVELS.index("WARNING")):
        return "WARNING"
    return level


def progress(message: str) -> None:
    """A progress line on stderr (``starting 2 plugin(s)...``), unless ``-q`` was given."""
    if verbosity() >= 0:
        print(message, file=sys.stderr, flush=True)


def check_ws_url(flag: str, url: str) -> None:
    """A ``ConfigError`` (so exit 2) naming ``flag`` unless ``url`` is ``ws://`` or ``wss://``."""
    from ..errors import ConfigError
    from ..net.wsclient import parse_ws_url

    try:
        parse_ws_url(url)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


# --- colour ----------------------------------------------------------------------------

#: SGR codes ``paint`` knows.
COLOURS: Final = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "dim": "2", "bold": "1"}


def colour_enabled(stream: Any) -> bool:
    """Whether to colour what goes to ``stream``: only a terminal, never with ``NO_COLOR``
    set (https://no-color.org, any value) or ``TERM=dumb``."""
    import os

    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def paint(text: str, colour: str, stream: Any) -> str:
    """``text`` in ``colour`` (a ``COLOURS`` name) when ``colour_enabled(stream)``, else as is."""
    if not colour_enabled(stream):
        return text
    return f"\x1b[{COLOURS[colour]}m{text}\x1b[0m"


# --- the control API -------------------------------------------------------------------


class ControlUnreachable(Exception):
    """No control API gave an HTTP answer; the message says where and why, in brief."""


def parse_hostport(control: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port); a ``ConfigError`` if not."""
    from ..settings import parse_hostport  # edge.config's, without its imports

    return parse_hostport(control)


def control_url(control: str) -> str:
    """``HOST:PORT`` of a control API → its base URL."""
    host, port = parse_hostport(control)
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


class ControlClient:
    """One keep-alive HTTP connection to the control API at ``HOST:PORT``, on the standard
    library's ``http.client``: a CLI command that only asks the daemon something does not
    pay for importing httpx (and trio under it), most of such a command's start-up.

    Use as a context manager; ``request`` answers ``(status, body)``. A connection or
    protocol failure is a ``ControlUnreachable`` naming the address.
    """

    def __init__(self, control: str, *, timeout: float) -> None:
        import http.client

        self.host, self.port = parse_hostport(control)
        self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Send one request (``body``, if not ``None``, as JSON); the status and the body."""
        import http.client
        import json

        sent = {"accept": "application/json", **(headers or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["content-type"] = "application/json"
        try:
            self._conn.request(method, path, body=payload, headers=sent)
            reply = self._conn.getresponse()
            return reply.status, reply.read()
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            raise ControlUnreachable(
                f"no edge daemon answers on {self.host}:{self.port} ({exc.__class__.__name__})"
            ) from exc

    def get_json(self, path: str) -> Any:
        """GET ``path``'s JSON body (a body that is not JSON: the ``ValueError``)."""
        import json

        return json.loads(self.request("GET", path)[1])


def control_get(control: str, *paths: str, timeout: float) -> list[Any]:
    """GET ``paths`` in turn from the control API at ``control`` (``HOST:PORT``), over one
    connection; their JSON bodies.

    A transport or HTTP error is a ``ControlUnreachable``; a body that is not JSON is
    the ``ValueError`` that decoding raises.
    """
    with ControlClient(control, timeout=timeout) as client:
        return [client.get_json(path) for path in paths]


def key_headers(control: str, state_dir: Path | None) -> dict[str, str]:
    """The local-key header (``edge.control.key``) for the daemon at ``control``, read from
    ``state_dir``; empty when there is no key there (the daemon then answers 403) or
    ``control`` is not a loopback address (the key is never sent off this machine)."""
    from ..config import is_loopback
    from ..control.key import KEY_HEADER, read_key

    host, port = parse_hostport(control)
    if not is_loopback(host):  # the key travels in clear: only to this machine
        return {}
    key = read_key(state_dir, port)
    return {} if key is None else {KEY_HEADER: key}


def control_post(
    control: str,
    path: str,
    body: Any = None,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST ``body`` (JSON) to ``path`` on the control API at ``control``: (status, JSON answer).

    ``headers`` go with it (``key_headers`` for the routes that need the local key).
    A transport error is a ``ControlUnreachable``; an HTTP error status is returned,
    not raised, so the caller can print the daemon's message.
    """
    import json

    with ControlClient(control, timeout=timeout) as client:
        status, raw = client.request("POST", path, body if body is not None else {}, headers)
    try:
        return status, json.loads(raw)
    except ValueError:  # an HTML error page, say: not edge's answer, not worth printing
        return status, {"error": f"what answers on {control} is not an edge daemon "
                                 f"(HTTP {status}, an answer that is not JSON)"}  # fmt: skip
