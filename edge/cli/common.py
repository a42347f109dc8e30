"""What the command modules share: options, config loading, logging, the control-API
client, and the one mapping from errors to exit codes.

Only the standard library is imported at the top; everything else is imported where
it is used, so that building the parser (``edge --help``) stays fast.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
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
    holding anything else propagates. Ctrl-C is exit 130.
    """
    from ..errors import ConfigError, EdgeError, first_leaf

    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        return fail(str(exc))
    except BaseExceptionGroup as group:
        ours, rest = group.split(EdgeError)
        if ours is None or rest is not None:
            raise
        return fail(str(first_leaf(ours)))
    except KeyboardInterrupt:
        return 130


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


def add_control_option(
    parser: argparse.ArgumentParser, help: str, default: str | None = DEFAULT_CONTROL
) -> None:
    """``--control HOST:PORT``; ``edge run`` passes ``default=None`` so the config can set it."""
    parser.add_argument("--control", type=address, metavar="HOST:PORT", default=default, help=help)


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


def setup_logging(level: str) -> None:
    """Log to stderr, secrets scrubbed; below DEBUG, quiet the chatty libraries."""
    import logging

    from ..secret import ScrubFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level.upper() != "DEBUG":
        for noisy in ("trio-websocket", "hypercorn", "hpack", "httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


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
    from ..config import parse_hostport

    return parse_hostport(control)


def control_url(control: str) -> str:
    """``HOST:PORT`` of a control API → its base URL."""
    host, port = parse_hostport(control)
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def control_get(control: str, *paths: str, timeout: float) -> list[Any]:
    """GET ``paths`` in turn from the control API at ``control`` (``HOST:PORT``), over one
    connection; their JSON bodies.

    A transport or HTTP error is a ``ControlUnreachable``; a body that is not JSON is
    the ``ValueError`` that decoding raises.
    """
    import httpx

    host, port = parse_hostport(control)
    try:
        with httpx.Client(base_url=control_url(control), timeout=timeout) as client:
            return [client.get(path).json() for path in paths]
    except httpx.HTTPError as exc:
        raise ControlUnreachable(
            f"no edge daemon answers on {host}:{port} ({exc.__class__.__name__})"
        ) from exc


def key_headers(control: str, state_dir: Path | None) -> dict[str, str]:
    """The local-key header (``edge.control.key``) for the daemon at ``control``, read from
    ``state_dir``; empty when there is no key there (the daemon then answers 403)."""
    from ..control.key import KEY_HEADER, read_key

    _, port = parse_hostport(control)
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
    import httpx

    host, port = parse_hostport(control)
    try:
        with httpx.Client(base_url=control_url(control), timeout=timeout) as client:
            reply = client.post(path, json=body if body is not None else {}, headers=headers)
    except httpx.HTTPError as exc:
        raise ControlUnreachable(
            f"no edge daemon answers on {host}:{port} ({exc.__class__.__name__})"
        ) from exc
    try:
        return reply.status_code, reply.json()
    except ValueError:
        return reply.status_code, {"error": reply.text[:500]}
