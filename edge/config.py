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
    on_disconnect = "keep"                  # or "stop": every capture when the tunnel drops

    [mcp]
    servers = "~/.config/edge/mcp.json"     # MCP servers ("mcpServers"); this is the default
    health_window = 20                      # a server's last requests its status looks at
    degraded_rate = 0.25                    # failed share of those for "degraded"
    error_rate = 0.75                       # failed share of those for "error"
    min_failures = 4                        # failed requests at least, for either

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

    [log]                                   # edge run's log
    level = "INFO"                          # DEBUG, INFO, WARNING, ERROR
    file = "~/.local/state/edge/log/edge.log"   # also log here (stderr: warnings only)
    format = "text"                         # or "json": one object a line

    [workers]
    max_calls = 64                          # 1 to 4096
    queue = 256                             # 0 to 65536
    timeout = 60                            # seconds, more than 0 and at most 3600

    [scheduler]
    cloud_tasks = true                      # false: refuse the tasks the cloud schedules

    [agents]
    name = "lab-box"                        # this edge's agent name (default: the host name)

The file is strict: every section and key is one of ``edge.settings.SETTINGS``
(which gives each key's type and range), and anything else, a typo included, is a
``ConfigError`` naming the file, the key and the closest valid name. A file
that does not load is never replaced by defaults: the command that read it
stops.

``load_config_traced`` is ``load_config`` with its working shown: the file it
read and, for every key (``section.key``) and the token, where the value came
from (``Origin``: the default, the file, the environment, a flag), for ``edge
config show`` and ``edge doctor``; ``load_config`` is its ``config``, nothing
more. ``check_config_file`` lists every problem of a file (``edge config
check``), and ``starter_config`` is the commented file ``edge config init``
writes, made from ``SETTINGS`` so that it cannot drift from it.

``EDGE_TOKEN``, once read, is taken out of the process's environment
(``edge.secret.take_from_environment``): tools, plugins and anything that can
read ``/proc/<pid>/environ`` never see it.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Literal

from .errors import ConfigError
from .settings import SETTINGS, check_flag, check_settings, parse_hostport as parse_hostport

# json, logging, tomllib, edge.logs and edge.secret are imported where they are used: a
# command that reads one address of config.toml (``edge status``) needs only tomllib.
if TYPE_CHECKING:
    from .mcp.metrics import HealthRule  # importing edge.mcp costs ~0.3 s: only when used
    from .secret import Secret

DEFAULT_CONTROL: Final = "127.0.0.1:8660"
#: Where ``--offline`` looks for a model server when ``[offline] url`` is not set (Ollama's).
DEFAULT_OFFLINE_URL: Final = "http://127.0.0.1:11434/v1"
TOKEN_ENV: Final = "EDGE_TOKEN"

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
    #: Where ``edge run`` also logs (``[log] file``; ``None``: stderr only), and how
    #: (``[log] format``: ``text`` or ``json``; ``edge.logs``).
    log_file: Path | None = None
    log_format: str = "text"
    state_dir: Path | None = None
    recordings: Path | None = None
    #: What captures do when the tunnel drops: ``"keep"`` recording or ``"stop"``.
    capture_on_disconnect: str = "keep"
    #: The MCP servers file (``edge.mcp.config``); ``None``: no MCP servers.
    mcp_file: Path | None = None
    #: How recent failures set an MCP server's status (``[mcp]``; ``None``: the defaults).
    mcp_health: HealthRule | None = None
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
    #: Take scheduled tasks from the cloud (``[scheduler] cloud_tasks``; ``edge.scheduler``).
    scheduler_cloud_tasks: bool = True
    #: This edge's name among agents (``[agents] name``; ``None``: the host name).
    agent_name: str | None = None

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
    from .secret import Secret

    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"the token file {path} is empty")
    if st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        import logging

        logging.getLogger(__name__).warning(
            "the token file %s is readable by other users; chmod 600 it", path
        )
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
    import tomllib

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
    return load_config_traced(
        config_file=config_file, cloud=cloud, token_file=token_file, control=control,
        no_control=no_control, force_bind=force_bind, workspace=workspace,
        allow_tools=allow_tools, roots=roots, max_calls=max_calls, log_level=log_level,
        recordings=recordings, mcp_file=mcp_file, plugin_dirs=plugin_dirs,
        tool_dirs=tool_dirs, environ=environ,
    ).config  # fmt: skip


# --- where each value came from (edge config show) ------------------------------------

#: The row ``TracedConfig.origins`` and ``values`` give the token under: it is no key of
#: ``config.toml`` (the file names only ``tunnel.token_file``), and its value is never shown.
TOKEN_ROW: Final = "token"

#: The flag each ``load_config`` argument stands for, as ``Origin.where`` names it.
FLAGS: Final[Mapping[str, str]] = {
    "cloud": "--cloud", "token_file": "--token-file", "control": "--control",
    "no_control": "--no-control", "force_bind": "--force-bind", "workspace": "--workspace",
    "allow_tools": "--allow-tool", "roots": "--root", "max_calls": "--max-calls",
    "recordings": "--recordings", "mcp_file": "--mcp-file", "plugin_dirs": "--plugin-dir",
    "tool_dirs": "--tool-dir", "log_level": "--log-level", "log_file": "--log-file",
    "log_format": "--log-format",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one setting's effective value came from."""

    source: Literal["default", "file", "environment", "flag"]
    #: The file's path, the variable's or the flag's name; "" for a default.
    where: str = ""
    #: The file whose list a flag's values were added to (``--root`` on top of
    #: ``policy.roots``); "" when there is none.
    extends: str = ""

    def __str__(self) -> str:
        text = f"{self.source} {self.where}" if self.where else self.source
        return f"{text}, added to file {self.extends}" if self.extends else text

    def as_json(self) -> dict[str, str]:
        """``{"source", "path"|"variable"|"flag"?, "extends"?}``."""
        out: dict[str, str] = {"source": self.source}
        if self.where:
            name = {"file": "path", "environment": "variable", "flag": "flag"}[self.source]
            out[name] = self.where
        if self.extends:
            out["extends"] = self.extends
        return out


DEFAULT_ORIGIN: Final = Origin("default")


@dataclass(frozen=True, slots=True)
class TracedConfig:
    """A ``Config`` with what made it: the file read and the origin of every value."""

    config: Config
    #: The config file that was read (``None``: none, the defaults under the flags).
    file: Path | None
    #: ``"section.key"`` (every key of ``SETTINGS``) and ``TOKEN_ROW`` → its origin.
    origins: Mapping[str, Origin]
    #: The token file named (``--token-file`` or ``tunnel.token_file``), read or not.
    token_file: Path | None
    #: The file's own values (section → key → value), for keys ``Config`` does not hold.
    data: Mapping[str, Mapping[str, Any]]

    def values(self) -> dict[str, Any]:
        """``"section.key"`` → the effective value, as JSON (paths as strings, ``None``:
        not set), and ``TOKEN_ROW`` → ``"(set)"`` or ``None``: never the token itself."""
        cfg = self.config

        def paths(items: Iterable[Path]) -> list[str]:
            return [str(p) for p in items]

        from .mcp.metrics import HealthRule

        health = cfg.mcp_health or HealthRule()
        known: dict[str, Any] = {
            "tunnel.url": cfg.cloud_url,
            "tunnel.token_file": None if self.token_file is None else str(self.token_file),
            "control.listen": None if cfg.control is None else format_hostport(cfg.control),
            "control.allowed_origins": list(cfg.allowed_origins),
            "control.force_bind": cfg.force_bind,
            "policy.workspace": str(cfg.workspace),
            "policy.roots": paths(cfg.extra_roots),
            "policy.allow_tools": None if cfg.allow_tools is None else sorted(cfg.allow_tools),
            "capture.recordings": str(cfg.recordings_dir),
            "capture.on_disconnect": cfg.capture_on_disconnect,
            "mcp.servers": None if cfg.mcp_file is None else str(cfg.mcp_file),
            "mcp.health_window": health.window,
            "mcp.degraded_rate": health.degraded_rate,
            "mcp.error_rate": health.error_rate,
            "mcp.min_failures": health.min_failures,
            "plugins.dirs": paths(cfg.plugin_dirs),
            "plugins.shared_runner": cfg.shared_runner,
            "tools.dirs": paths(cfg.tool_dirs),
            "gateway.url": cfg.gateway_url,
            "gateway.model": cfg.gateway_model,
            "offline.url": cfg.offline_url,
            "offline.model": cfg.offline_model,
            "offline.api_key_env": cfg.offline_key_env,
            "update.manifest_url": cfg.update_manifest,
            "update.public_key": cfg.update_key,
            "update.auto": cfg.update_auto,
            "update.check": cfg.update_check,
            "workers.max_calls": cfg.max_calls,
            "workers.queue": cfg.queue_size,
            "workers.timeout": cfg.call_timeout,
            "scheduler.cloud_tasks": cfg.scheduler_cloud_tasks,
            "agents.name": cfg.agent_name,
            "log.level": cfg.log_level,
            "log.file": None if cfg.log_file is None else str(cfg.log_file),
            "log.format": cfg.log_format,
        }
        out: dict[str, Any] = {}
        for section, keys in SETTINGS.items():
            for key in keys:
                name = f"{section}.{key}"
                out[name] = known[name] if name in known else self.data.get(section, {}).get(key)
        if cfg.token is not None:
            out[TOKEN_ROW] = "(set)"
        elif self.token_file is not None:  # named, not read (``read_token=False``)
            out[TOKEN_ROW] = f"(in {self.token_file})"
        else:
            out[TOKEN_ROW] = None
        return out


def format_hostport(address: tuple[str, int]) -> str:
    """(host, port) → ``HOST:PORT`` (``[::1]:PORT`` for IPv6), as ``parse_hostport`` reads it."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def load_config_traced(
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
    log_file: Path | None = None,
    log_format: str | None = None,
    recordings: Path | None = None,
    mcp_file: Path | None = None,
    plugin_dirs: list[Path] | None = None,
    tool_dirs: list[Path] | None = None,
    environ: dict[str, str] | None = None,
    read_token: bool = True,
    use_file: bool = True,
) -> TracedConfig:
    """``load_config``, and where each value came from (``edge config show``, ``edge doctor``).

    The arguments are ``load_config``'s, ``log_file`` and ``log_format`` (``edge run``'s
    ``--log-file`` and ``--log-format``, which win over ``[log] file`` and ``format``),
    and two more for callers that look at a configuration rather than run it:

    Args:
        read_token: ``False``: the token file is named (``token_file``) but not
            read, so a missing or unreadable one is no error here; ``config.token``
            is then ``None`` unless ``EDGE_TOKEN`` holds it.
        use_file: ``False``: no config file is read at all, not even the default
            one (the defaults under the flags), for a caller that has already
            reported why the file does not load and goes on without it.

    Raises:
        ConfigError: as ``load_config``.
    """
    from .logs import parse_format, parse_level
    from .secret import take_from_environment

    env_token = take_from_environment(TOKEN_ENV) if environ is None else environ.get(TOKEN_ENV)
    default_file, default_ws, state_dir = default_paths()
    data: dict[str, dict[str, Any]] = {}
    path: Path | None = None
    if not use_file:
        pass
    elif config_file is not None:
        path = config_file
    elif default_file.exists():
        path = default_file
    if path is not None:
        data = load_file(path)
    tunnel, ctl, pol = data.get("tunnel", {}), data.get("control", {}), data.get("policy", {})
    work, cap, mcp = data.get("workers", {}), data.get("capture", {}), data.get("mcp", {})
    plugins, declared = data.get("plugins", {}), data.get("tools", {})
    gateway, offline = data.get("gateway", {}), data.get("offline", {})
    update, scheduler = data.get("update", {}), data.get("scheduler", {})
    logcfg = data.get("log", {})

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
    named_token = _token_path(token_file, tunnel.get("token_file"))
    config = Config(
        workspace=ws,
        cloud_url=cloud or tunnel.get("url"),
        token=_token(named_token, env_token) if read_token or named_token is None else None,
        control=listen,
        force_bind=force,
        allowed_origins=tuple(ctl.get("allowed_origins", ())),
        extra_roots=tuple(extra),
        allow_tools=None if tools is None else frozenset(tools),
        max_calls=work.get("max_calls", 64) if calls is None else calls,
        queue_size=work.get("queue", 256),
        call_timeout=float(work.get("timeout", 60.0)),
        log_level=_log_choice(parse_level, log_level, logcfg.get("level"), path, "INFO"),
        log_file=_path_or_none(log_file, "--log-file")
        or _path_or_none(logcfg.get("file"), "log.file"),
        log_format=_log_choice(parse_format, log_format, logcfg.get("format"), path, "text"),
        state_dir=state_dir,
        recordings=_path_or_none(recordings or cap.get("recordings"), "capture.recordings"),
        capture_on_disconnect=cap.get("on_disconnect", "keep"),
        mcp_file=_path_or_none(mcp_file or mcp.get("servers"), "mcp.servers")
        or default_mcp_file(),
        mcp_health=_mcp_health(mcp, path),
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
        scheduler_cloud_tasks=bool(scheduler.get("cloud_tasks", True)),
        agent_name=data.get("agents", {}).get("name") or None,
    )
    given = {
        "cloud": bool(cloud), "token_file": bool(token_file), "control": bool(control),
        "force_bind": force_bind, "workspace": workspace is not None,
        "allow_tools": bool(allow_tools), "max_calls": max_calls is not None,
        "recordings": bool(recordings), "mcp_file": bool(mcp_file),
        "plugin_dirs": bool(plugin_dirs), "tool_dirs": bool(tool_dirs),
        "log_level": bool(log_level), "log_file": bool(log_file),
        "log_format": bool(log_format),
    }  # fmt: skip
    #: Each key's flag (the ``load_config`` argument that overrides it), if it has one.
    overridden_by = {
        "tunnel.url": "cloud", "tunnel.token_file": "token_file", "control.listen": "control",
        "control.force_bind": "force_bind", "policy.workspace": "workspace",
        "policy.allow_tools": "allow_tools", "workers.max_calls": "max_calls",
        "capture.recordings": "recordings", "mcp.servers": "mcp_file",
        "plugins.dirs": "plugin_dirs", "tools.dirs": "tool_dirs", "log.level": "log_level",
        "log.file": "log_file", "log.format": "log_format",
    }  # fmt: skip
    in_file = Origin("file", str(path))
    origins: dict[str, Origin] = {}
    for section, keys in SETTINGS.items():
        for key in keys:
            name = f"{section}.{key}"
            flag = overridden_by.get(name)
            if flag is not None and given[flag]:
                origins[name] = Origin("flag", FLAGS[flag])
            elif key in data.get(section, {}):
                origins[name] = in_file
            else:
                origins[name] = DEFAULT_ORIGIN
    if no_control:
        origins["control.listen"] = Origin("flag", FLAGS["no_control"])
    if roots:
        origins["policy.roots"] = Origin(
            "flag", FLAGS["roots"], str(path) if "roots" in pol else ""
        )
    if token_file:
        origins[TOKEN_ROW] = Origin("flag", FLAGS["token_file"])
    elif named_token is not None:
        origins[TOKEN_ROW] = Origin("file", str(named_token))
    elif env_token:
        origins[TOKEN_ROW] = Origin("environment", TOKEN_ENV)
    else:
        origins[TOKEN_ROW] = DEFAULT_ORIGIN
    return TracedConfig(config, path, origins, named_token, data)


# --- checking a file, and a starter file (edge config check, edge config init) ---------


def check_config_file(path: Path) -> list[str]:
    """Every problem of the config file ``path``, each naming it; ``[]`` when it is valid.

    Strict as ``edge run`` is: the TOML, every key against ``SETTINGS`` (all of
    their problems, not just the first), then what ``load_config`` and ``edge run``
    make of the values (a non-loopback ``control.listen`` without
    ``control.force_bind``, a ``~user`` not known here, a ``tunnel.url`` that is
    not ``ws://`` or ``wss://``). The token file it names is not read: whether
    it is there and private is ``edge doctor``'s to say.
    """
    from .net.wsclient import parse_ws_url
    from .settings import settings_problems

    try:
        data = read_toml(path)
    except FileNotFoundError:
        return [f"{path}: no such file"]
    except ConfigError as exc:
        return [str(exc)]
    problems = settings_problems(data, str(path))
    if problems:
        return problems
    try:
        traced = load_config_traced(config_file=path, environ={}, read_token=False)
    except ConfigError as exc:
        text = str(exc)
        return [text if text.startswith(str(path)) else f"{path}: {text}"]
    url = traced.config.cloud_url
    if url:
        try:
            parse_ws_url(url)
        except ValueError as exc:
            return [f"{path}: `tunnel.url`: {exc}"]
    return []


def toml_value(value: Any) -> str:
    """``value`` (a string, boolean, number or list of them) as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else repr(value)
    if isinstance(value, str):
        import json

        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML's
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__}")


#: What the starter shows for a key with neither a default nor an example, by kind.
_PLACEHOLDERS: Final[Mapping[str, Any]] = {
    "string": "TEXT", "path": "~/PATH", "address": "127.0.0.1:0", "boolean": False,
    "integer": 0, "number": 0, "strings": [], "paths": [],
}  # fmt: skip


def starter_config() -> str:
    """The commented starter ``config.toml`` (``edge config init``), made from ``SETTINGS``.

    Every section is there with each of its keys commented out at its default
    (the value ``edge run`` uses when the key is not set, the home directory
    written ``~``), or at its example when it has none, under a line saying what
    it sets: the file is valid as written and with every key uncommented.
    """
    defaults = load_config_traced(use_file=False, environ={}, read_token=False).values()
    home = str(Path.home())

    def tilde(value: Any) -> Any:
        if isinstance(value, str) and (value == home or value.startswith(home + os.sep)):
            return "~" + value[len(home) :]
        if isinstance(value, list):
            return [tilde(item) for item in value]
        return value

    lines = [
        "# edge's configuration. Every key is here at its default, commented out:",
        '# remove a "#" before a key to set it. Flags given to a command win over',
        "# this file. `edge config check` checks it; `edge config show` shows what",
        "# edge runs with and where each value came from.",
    ]
    for section, keys in SETTINGS.items():
        lines += ["", f"[{section}]"]
        for key, setting in keys.items():
            default = defaults.get(f"{section}.{key}")
            note = setting.help
            if setting.range_text():
                note += f" ({setting.range_text()})"
            if default is None:
                value = setting.example
                if value is None:
                    value = _PLACEHOLDERS[setting.kind]
                if "default" not in note:
                    note += "; not set by default"
            else:
                value = tilde(default)
            lines += [f"# {note}", f"#{key} = {toml_value(value)}"]
    return "\n".join(lines) + "\n"


def write_starter(path: Path) -> None:
    """Write ``starter_config()`` to the new file ``path``, mode 0600 (missing parent
    directories made 0700).

    Raises:
        FileExistsError: ``path`` is there already (a dangling symlink included):
            it is never overwritten.
        OSError: it cannot be written.
    """
    from .fs import PRIVATE_MODE, make_private_dir

    make_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            f.write(starter_config())
    except BaseException:
        if fd >= 0:
            os.close(fd)
        path.unlink(missing_ok=True)
        raise


def _log_choice(
    parse: Callable[[str, str], str], flag: str | None, file: str | None, path: Path | None,
    default: str,
) -> str:
    """``[log] level`` or ``format`` (``flag`` wins over ``file``), checked by ``parse``
    (``edge.logs.parse_level`` or ``parse_format``; a ``ConfigError`` names the key)."""
    from .logs import parse_level

    what = "level" if parse is parse_level else "format"
    if flag:
        return parse(flag, f"--log-{what}")
    if file:
        return parse(file, f"{path}: `log.{what}`")
    return default


def _paths(flag: list[Path] | None, file: list[str] | None, key: str) -> tuple[Path, ...]:
    """The flag's directories, else the file's ``key`` (``~`` expanded); ``()`` when neither
    names any."""
    if flag:
        return tuple(_expand(p, key) for p in flag)
    return tuple(_expand(p, key) for p in file or ())


def _token_path(flag: Path | None, file: str | None) -> Path | None:
    """The token file named: ``--token-file``, else ``tunnel.token_file`` (``~`` expanded)."""
    if flag:
        return _expand(flag, "--token-file")
    if file:
        return _expand(file, "tunnel.token_file")
    return None


def _token(path: Path | None, env_token: str | None) -> Secret | None:
    """The token from its file (``_token_path``), else ``env_token`` (``EDGE_TOKEN``'s value)."""
    from .secret import Secret

    if path is not None:
        return read_token_file(path)
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


def _mcp_health(mcp: Mapping[str, Any], path: Path | None) -> HealthRule | None:
    """``[mcp]``'s health keys as a rule (``None`` when the file sets none of them).

    Raises:
        ConfigError: ``error_rate`` below ``degraded_rate``.
    """
    keys = ("health_window", "degraded_rate", "error_rate", "min_failures")
    given = {k: mcp[k] for k in keys if k in mcp}
    if not given:
        return None
    from .mcp.config import health_rule  # importing edge.mcp costs ~0.2 s: only when set

    names = {"health_window": "window"}
    try:
        return health_rule(**{names.get(k, k): v for k, v in given.items()})
    except ValueError as exc:
        raise ConfigError(f"{path or 'config.toml'}: [mcp] {exc}") from None
