"""Configuration: a TOML file, then flags and the environment on top.

The file (``--config``, else ``config.toml`` in the user config directory if it
exists)::

    [tunnel]
    url = "wss://cloud.example/edge/tunnel"
    token_file = "~/.config/edge/token"     # or the EDGE_TOKEN environment variable

    [control]
    listen = "127.0.0.1:8660"
    allowed_origins = ["https://app.example"]
    force_bind = false                      # true to allow a non-loopback address

    [policy]
    workspace = "~/edge-workspace"
    roots = ["~/projects"]                  # extra directories file tools may touch
    allow_tools = ["file_read", "grep"]     # omit to allow every tool

    [capture]
    recordings = "~/edge-recordings"        # default: "recordings" in the workspace

    [mcp]
    servers = "~/.config/edge/mcp.json"     # MCP servers ("mcpServers"); this is the default

    [workers]
    max_calls = 64
    queue = 256
    timeout = 60
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .errors import ConfigError
from .secret import Secret

DEFAULT_CONTROL: Final = "127.0.0.1:8660"
TOKEN_ENV: Final = "EDGE_TOKEN"
log = logging.getLogger(__name__)

LOOPBACK_NAMES: Final = frozenset({"localhost", "ip6-localhost"})


@dataclass
class Config:
    """Everything ``edge run`` needs; built by ``load_config`` or directly in tests."""

    workspace: Path
    cloud_url: str | None = None
    token: Secret | None = None
    control: tuple[str, int] | None = ("127.0.0.1", 8660)
    force_bind: bool = False
    allowed_origins: tuple[str, ...] = ()
    extra_roots: tuple[Path, ...] = ()
    allow_tools: frozenset[str] | None = None
    max_calls: int = 64
    queue_size: int = 256
    call_timeout: float = 60.0
    log_level: str = "INFO"
    state_dir: Path | None = None
    recordings: Path | None = None
    #: The MCP servers file (``edge.mcp.config``); ``None``: no MCP servers.
    mcp_file: Path | None = None

    @property
    def recordings_dir(self) -> Path:
        """Where captures are recorded (the workspace's ``recordings`` by default)."""
        return self.recordings or self.workspace / "recordings"


def default_paths() -> tuple[Path, Path, Path]:
    """(config file, default workspace, state directory) for this user."""
    import platformdirs

    config_file = platformdirs.user_config_path("edge") / "config.toml"
    workspace = platformdirs.user_data_path("edge") / "workspace"
    state = platformdirs.user_state_path("edge")
    return config_file, workspace, state


def default_mcp_file() -> Path:
    """Where ``edge mcp add`` writes and ``edge run`` reads MCP servers by default."""
    import platformdirs

    return platformdirs.user_config_path("edge") / "mcp.json"


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{text!r} is not HOST:PORT")
    host = host.removeprefix("[").removesuffix("]")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"port {port!r} in {text!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"port {number} is out of range")
    return host, number


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token_file(path: Path) -> Secret:
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"the token file {path} is empty")
    if st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("the token file %s is readable by other users; chmod 600 it", path)
    return Secret(text)


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _typed(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = table.get(key)
    if value is not None and not isinstance(value, kind):
        raise ConfigError(f"{where}.{key} has the wrong type ({type(value).__name__})")
    return value


def load_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def load_config(
    *,
    config_file: Path | None = None,
    cloud: str | None = None,
    token_file: Path | None = None,
    control: str | None = None,
    no_control: bool = False,
    force_bind: bool = False,
    workspace: Path | None = None,
    allow_tools: list[str] | None = None,
    roots: list[Path] | None = None,
    max_calls: int | None = None,
    log_level: str | None = None,
    recordings: Path | None = None,
    mcp_file: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Merge the config file, the environment and the flags (flags win)."""
    env = dict(os.environ) if environ is None else environ
    default_file, default_ws, state_dir = default_paths()
    data: dict[str, Any] = {}
    if config_file is not None:
        data = load_file(config_file)
    elif default_file.exists():
        data = load_file(default_file)
    tunnel = _table(data, "tunnel")
    ctl = _table(data, "control")
    pol = _table(data, "policy")
    work = _table(data, "workers")
    cap = _table(data, "capture")
    mcp = _table(data, "mcp")

    ws_text = workspace or _typed(pol, "workspace", str, "policy")
    ws = Path(ws_text).expanduser() if ws_text else default_ws
    extra = [Path(p).expanduser() for p in (_typed(pol, "roots", list, "policy") or [])]
    extra += roots or []
    tools = allow_tools or _typed(pol, "allow_tools", list, "policy")

    token = _token(token_file or _typed(tunnel, "token_file", str, "tunnel"), env)
    listen, force = _listen(ctl, control, no_control, force_bind)
    origins = tuple(_typed(ctl, "allowed_origins", list, "control") or ())
    calls = max_calls or _typed(work, "max_calls", int, "workers") or 64
    if calls < 1:
        raise ConfigError("max_calls must be at least 1")
    return Config(
        workspace=ws,
        cloud_url=cloud or _typed(tunnel, "url", str, "tunnel"),
        token=token,
        control=listen,
        force_bind=force,
        allowed_origins=origins,
        extra_roots=tuple(extra),
        allow_tools=None if tools is None else frozenset(tools),
        max_calls=calls,
        queue_size=_typed(work, "queue", int, "workers") or 256,
        call_timeout=float(_typed(work, "timeout", (int, float), "workers") or 60.0),
        log_level=(log_level or "INFO").upper(),
        state_dir=state_dir,
        recordings=_path_or_none(recordings or _typed(cap, "recordings", str, "capture")),
        mcp_file=_path_or_none(mcp_file or _typed(mcp, "servers", str, "mcp"))
        or default_mcp_file(),
    )


def _token(token_file: str | Path | None, env: dict[str, str]) -> Secret | None:
    """The token from its file (when one is named), else from the environment."""
    if token_file:
        return read_token_file(Path(token_file).expanduser())
    return Secret(env[TOKEN_ENV]) if env.get(TOKEN_ENV) else None


def _listen(
    ctl: dict[str, Any], control: str | None, no_control: bool, force_bind: bool
) -> tuple[tuple[str, int] | None, bool]:
    """Where the control API listens (``None``: nowhere) and whether a wide bind is forced.

    Raises:
        ConfigError: a non-loopback address without ``force_bind``.
    """
    force = force_bind or bool(_typed(ctl, "force_bind", bool, "control"))
    if no_control:
        return None, force
    listen = parse_hostport(control or _typed(ctl, "listen", str, "control") or DEFAULT_CONTROL)
    if not is_loopback(listen[0]) and not force:
        raise ConfigError(
            f"refusing to serve the control API on {listen[0]}, which is not a loopback "
            "address: anyone who can reach it could hand the daemon a token. "
            "Pass --force-bind if you really mean it."
        )
    return listen, force


def _path_or_none(value: str | Path | None) -> Path | None:
    return None if not value else Path(value).expanduser()
