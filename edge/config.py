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

    [plugins]
    dirs = ["~/.config/edge/plugins"]       # Python plugins, one directory each; the default
    shared_runner = false                   # true: one runner process for every plugin

    [tools]
    dirs = ["~/.config/edge/tools"]         # node, native and wasm tools (tool.toml); the default

    [gateway]
    url = "https://cloud.example/v1"         # default: the URL the cloud names on connect
    model = "default"                       # default: the gateway's own choice

    [offline]                               # edge ask/chat --offline
    url = "http://127.0.0.1:11434/v1"       # a local OpenAI-compatible server; the default
    model = "llama3.2"
    api_key_env = "OFFLINE_API_KEY"         # if the server wants a key

    [update]
    manifest_url = "https://cloud.example/edge/versions.json"
    public_key = "BASE64-ED25519-KEY"       # the manifest's signature must verify against it
    auto = false                            # true: a service installs updates by itself
    check = true                            # look for an update once a day

    [workers]
    max_calls = 64                          # 1 to 4096
    queue = 256                             # 0 to 65536
    timeout = 60                            # seconds, more than 0 and at most 3600

The file is strict: every section and key is one of ``edge.settings.SETTINGS``
(which gives each key's type and range), and anything else, a typo included, is a
``ConfigError`` naming the file, the key and the closest valid name. A file
that does not load is never replaced by defaults: the command that read it
stops.

``EDGE_TOKEN``, once read, is taken out of the process's environment
(``edge.secret.take_from_environment``): tools, plugins and anything that can
read ``/proc/<pid>/environ`` never see it.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from .errors import ConfigError
from .secret import Secret, take_from_environment
from .settings import check_flag, check_settings, parse_hostport as parse_hostport

DEFAULT_CONTROL: Final = "127.0.0.1:8660"
#: Where ``--offline`` looks for a model server when ``[offline] url`` is not set (Ollama's).
DEFAULT_OFFLINE_URL: Final = "http://127.0.0.1:11434/v1"
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
    #: Directories of Python plugins (``edge.plugins``); empty: none.
    plugin_dirs: tuple[Path, ...] = ()
    #: Run every plugin in one runner process instead of one each.
    shared_runner: bool = False
    #: Directories of declared node, native and wasm tools (``edge.tools.runtimes``).
    tool_dirs: tuple[Path, ...] = ()
    #: The cloud's model gateway (``[gateway] url``); ``None``: the URL named in ``connected``.
    gateway_url: str | None = None
    #: The model ``edge ask``/``chat`` ask for (``None``: the gateway's default).
    gateway_model: str | None = None
    #: The local model server for ``--offline`` (OpenAI-compatible, a ``/v1`` URL).
    offline_url: str = DEFAULT_OFFLINE_URL
    offline_model: str | None = None
    #: The environment variable holding the offline server's API key (``None``: no key).
    offline_key_env: str | None = None
    #: The versions manifest ``edge update`` reads (``None``: the URL the cloud names).
    update_manifest: str | None = None
    #: The Ed25519 public key (base64) the manifest's signature must verify against.
    update_key: str | None = None
    #: Install updates without asking when run as a service.
    update_auto: bool = False
    #: Check for an update once a day while running.
    update_check: bool = True

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


def default_plugin_dirs() -> tuple[Path, ...]:
    """Where ``edge plugins new`` writes and ``edge run`` looks for plugins by default."""
    import platformdirs

    return (platformdirs.user_config_path("edge") / "plugins",)


def default_tool_dirs() -> tuple[Path, ...]:
    """Where ``edge tools new`` writes and ``edge run`` looks for declared tools by default."""
    import platformdirs

    return (platformdirs.user_config_path("edge") / "tools",)


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


def read_toml(path: Path, *, regular: bool = False) -> dict[str, Any]:
    """``path`` parsed as TOML.

    Args:
        path: the file.
        regular: refuse anything but a regular file (a FIFO would block the
            reader forever); edge's own ``--config`` may be a pipe, as
            ``--config <(...)`` makes it, a plugin's or tool's files may not.

    Raises:
        FileNotFoundError: there is no ``path`` (what that means is the caller's to say).
        ConfigError: ``path`` cannot be read, is not a regular file (``regular``),
            is not UTF-8, is not TOML, or nests deeper than the parser can
            follow; the message names it.
    """
    try:
        with open_regular(path) if regular else open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not valid UTF-8 TOML: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path} is not valid TOML: its arrays or tables nest too deep") from None


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading, without blocking on a FIFO.

    Raises:
        OSError: it cannot be opened, or is not a regular file (``EINVAL``, with
            the reason as its ``strerror``).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def load_file(path: Path) -> dict[str, dict[str, Any]]:
    """``path`` parsed and checked (``check_settings``): section → key → value."""
    try:
        data = read_toml(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return check_settings(data, str(path))


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
    plugin_dirs: list[Path] | None = None,
    tool_dirs: list[Path] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Merge the config file, the environment and the flags (flags win).

    The token comes from the token file when one is named, else from
    ``EDGE_TOKEN`` in ``environ``. Without ``environ`` it is this process's
    environment, and ``EDGE_TOKEN`` is taken out of it whether it is used or not
    (``take_from_environment``): a second call in the same process finds no
    token there.

    Raises:
        ConfigError: the file cannot be read or breaks ``SETTINGS`` (an unknown
            key, a wrong type, a value out of range), a path names a ``~user``
            that is not known here, or a flag is out of range.
    """
    env_token = take_from_environment(TOKEN_ENV) if environ is None else environ.get(TOKEN_ENV)
    default_file, default_ws, state_dir = default_paths()
    data: dict[str, dict[str, Any]] = {}
    if config_file is not None:
        data = load_file(config_file)
    elif default_file.exists():
        data = load_file(default_file)
    tunnel, ctl, pol = data.get("tunnel", {}), data.get("control", {}), data.get("policy", {})
    work, cap, mcp = data.get("workers", {}), data.get("capture", {}), data.get("mcp", {})
    plugins, declared = data.get("plugins", {}), data.get("tools", {})
    gateway, offline = data.get("gateway", {}), data.get("offline", {})
    update = data.get("update", {})

    ws = (
        _path_or_none(workspace, "--workspace")
        or _path_or_none(pol.get("workspace"), "policy.workspace")
        or default_ws
    )
    extra = [_expand(p, "policy.roots") for p in pol.get("roots", [])]
    extra += [_expand(p, "--root") for p in roots or []]
    tools = allow_tools or pol.get("allow_tools")
    calls = check_flag("--max-calls", "workers", "max_calls", max_calls)
    listen, force = _listen(ctl, control, no_control, force_bind)
    return Config(
        workspace=ws,
        cloud_url=cloud or tunnel.get("url"),
        token=_token(token_file, tunnel.get("token_file"), env_token),
        control=listen,
        force_bind=force,
        allowed_origins=tuple(ctl.get("allowed_origins", ())),
        extra_roots=tuple(extra),
        allow_tools=None if tools is None else frozenset(tools),
        max_calls=work.get("max_calls", 64) if calls is None else calls,
        queue_size=work.get("queue", 256),
        call_timeout=float(work.get("timeout", 60.0)),
        log_level=(log_level or "INFO").upper(),
        state_dir=state_dir,
        recordings=_path_or_none(recordings or cap.get("recordings"), "capture.recordings"),
        mcp_file=_path_or_none(mcp_file or mcp.get("servers"), "mcp.servers")
        or default_mcp_file(),
        plugin_dirs=_paths(plugin_dirs, plugins.get("dirs"), "plugins.dirs")
        or default_plugin_dirs(),
        shared_runner=bool(plugins.get("shared_runner", False)),
        tool_dirs=_paths(tool_dirs, declared.get("dirs"), "tools.dirs") or default_tool_dirs(),
        gateway_url=gateway.get("url"),
        gateway_model=gateway.get("model"),
        offline_url=offline.get("url", DEFAULT_OFFLINE_URL),
        offline_model=offline.get("model"),
        offline_key_env=offline.get("api_key_env"),
        update_manifest=update.get("manifest_url"),
        update_key=update.get("public_key"),
        update_auto=bool(update.get("auto", False)),
        update_check=bool(update.get("check", True)),
    )


def _paths(flag: list[Path] | None, file: list[str] | None, key: str) -> tuple[Path, ...]:
    """The flag's directories, else the file's ``key`` (``~`` expanded); ``()`` when neither
    names any."""
    if flag:
        return tuple(_expand(p, key) for p in flag)
    return tuple(_expand(p, key) for p in file or ())


def _token(flag: Path | None, file: str | None, env_token: str | None) -> Secret | None:
    """The token from its file (``--token-file``, else ``tunnel.token_file``), else
    ``env_token`` (``EDGE_TOKEN``'s value)."""
    if flag:
        return read_token_file(_expand(flag, "--token-file"))
    if file:
        return read_token_file(_expand(file, "tunnel.token_file"))
    return Secret(env_token) if env_token else None


def _listen(
    ctl: dict[str, Any], control: str | None, no_control: bool, force_bind: bool
) -> tuple[tuple[str, int] | None, bool]:
    """Where the control API listens (``None``: nowhere) and whether a wide bind is forced.

    Raises:
        ConfigError: a non-loopback address without ``force_bind``.
    """
    force = force_bind or bool(ctl.get("force_bind", False))
    if no_control:
        return None, force
    listen = parse_hostport(control or ctl.get("listen") or DEFAULT_CONTROL)
    if not is_loopback(listen[0]) and not force:
        raise ConfigError(
            f"refusing to serve the control API on {listen[0]}, which is not a loopback "
            "address: anyone who can reach it could hand the daemon a token. "
            "Pass --force-bind if you really mean it."
        )
    return listen, force


def _path_or_none(value: str | Path | None, key: str) -> Path | None:
    """``value`` with ``~`` expanded, ``None`` when it is not given (``key``: for the error)."""
    return None if not value else _expand(value, key)


def _expand(value: str | Path, key: str) -> Path:
    """``value`` as a path with ``~`` expanded.

    Raises:
        ConfigError: ``value`` starts with a ``~user`` that is not known here (or
            ``~`` and there is no home directory); the message names ``key``.
    """
    try:
        return Path(value).expanduser()
    except RuntimeError:
        home = str(value).split("/", 1)[0]
        raise ConfigError(
            f"{key}: {str(value)!r}: cannot expand {home!r}: no such user, or no home directory"
        ) from None
