"""``plugin.toml``: what a plugin is, what it needs, and the check that it can run here.

::

    id = "weather"                  # [a-z][a-z0-9_-]*, unique among the plugins
    version = "0.1.0"               # the plugin's own version (PEP 440)
    description = "Forecasts"
    entry = "main"                  # the module in the plugin's directory that holds its Plugin
    sdk = ">=1.0,<2"                # the edge.plugin SDK versions it works with (PEP 440 range)
    capabilities = ["log", "config"]   # what it may ask the daemon for (CAPABILITIES)
    env = ["HOME"]                  # environment variables its runner gets (none by default)

    [config]                        # its config defaults; the user's values come from
    units = "metric"                # config.toml next to plugin.toml (`edge plugins config`)

``load_plugin`` reads one directory and raises ``ConfigError`` naming the file
and the key for anything wrong, an SDK range this edge is outside of included;
``discover`` reads every plugin directory under the configured directories and
never raises: a plugin that does not load is a ``Found`` with its problem.

Config values, the defaults and the user's alike, are what the RPC can carry
(``check_config_value``): strings, finite numbers, booleans, and lists and
tables of them. A TOML date or time is refused where the file is read.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ..config import read_toml
from ..errors import ConfigError
from ..plugin import SDK_VERSION

__all__ = [
    "CAPABILITIES",
    "Found",
    "PluginManifest",
    "check_config_value",
    "discover",
    "load_plugin",
    "toml_text",
    "user_config",
    "write_user_config",
]

MANIFEST: Final = "plugin.toml"
#: The user's values for a plugin's config, beside its manifest.
USER_CONFIG: Final = "config.toml"

#: What a plugin may declare, and what each lets it ask the daemon for.
CAPABILITIES: Final[Mapping[str, str]] = {
    "log": "write to edge's log",
    "config": "read its own config",
    "tools.call": "call another edge tool (through policy and the cloud's approval)",
    "events": "publish events on /events",
    "agents": "ask another agent for work through the cloud (the agent_ask tool)",
}
KEYS: Final = ("id", "version", "description", "entry", "sdk", "capabilities", "env", "config")
ID: Final = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
ENTRY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Never passed to a runner, whatever a manifest says.
NEVER_PASSED: Final = frozenset({"EDGE_TOKEN", "EDGE_RUNNER_TOKEN"})


@dataclass(frozen=True, slots=True)
class PluginManifest:
    id: str
    version: str
    description: str
    entry: str
    sdk: str
    directory: Path
    capabilities: frozenset[str] = frozenset()
    env: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def entry_file(self) -> Path:
        """The entry module's file (``pkg.mod`` → ``pkg/mod.py`` or ``pkg/mod/__init__.py``)."""
        base = self.directory.joinpath(*self.entry.split("."))
        plain = base.with_suffix(".py")
        return (
            plain if plain.exists() or not (base / "__init__.py").exists() else base / "__init__.py"
        )


@dataclass(frozen=True, slots=True)
class Found:
    """One plugin directory: its manifest, or why it has none usable."""

    directory: Path
    manifest: PluginManifest | None
    problem: str | None = None

    @property
    def id(self) -> str:
        return self.manifest.id if self.manifest is not None else self.directory.name


def _get(data: Mapping[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    if key not in data:
        if default is None:
            raise ConfigError(f"{where}: `{key}` is missing")
        return default
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ConfigError(f"{where}: `{key}` must be a {kind.__name__}, not {value!r}")
    return value


def load_plugin(directory: Path, sdk_version: str = SDK_VERSION) -> PluginManifest:
    """The manifest of the plugin in ``directory``.

    Raises:
        ConfigError: no manifest, bad TOML, an unknown key (with the closest
            valid one), a wrong type, a bad id, entry, range or capability, an
            entry module that is not there, or an SDK range without ``sdk_version``.
    """
    path = directory / MANIFEST
    where = str(path)
    try:
        data = read_toml(path, regular=True)
    except FileNotFoundError:
        raise ConfigError(f"{directory} has no {MANIFEST}") from None
    for key in data:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"; did you mean `{close[0]}`?" if close else "; valid: " + ", ".join(KEYS)
            raise ConfigError(f"{where}: unknown key `{key}`{hint}")
    plugin_id = _get(data, "id", str, where)
    if not ID.match(plugin_id):
        raise ConfigError(
            f"{where}: `id` {plugin_id!r} must be lower-case letters, digits, '-' or '_', "
            "starting with a letter"
        )
    version = _get(data, "version", str, where)
    try:
        Version(version)
    except InvalidVersion:
        raise ConfigError(f"{where}: `version` {version!r} is not a version (e.g. 0.1.0)") from None
    entry = _get(data, "entry", str, where)
    if not ENTRY.match(entry):
        raise ConfigError(f"{where}: `entry` {entry!r} is not a module name (e.g. main)")
    sdk = _get(data, "sdk", str, where)
    if not sdk.strip():  # an empty range would admit every SDK, future ones included
        raise ConfigError(f"{where}: `sdk` must name a version range (e.g. >=1.0,<2)")
    try:
        spec = SpecifierSet(sdk)
    except InvalidSpecifier:
        raise ConfigError(
            f"{where}: `sdk` {sdk!r} is not a version range (e.g. >=1.0,<2)"
        ) from None
    if Version(sdk_version) not in spec:
        raise ConfigError(
            f"{where}: the plugin needs SDK {sdk}, and this edge provides SDK {sdk_version}"
        )
    capabilities = _strings(data, "capabilities", where)
    for name in capabilities:
        if name not in CAPABILITIES:
            close = difflib.get_close_matches(name, list(CAPABILITIES), n=1)
            hint = (
                f"; did you mean {close[0]!r}?" if close else "; valid: " + ", ".join(CAPABILITIES)
            )
            raise ConfigError(f"{where}: unknown capability {name!r}{hint}")
    env = _strings(data, "env", where)
    for name in env:
        if not ENV_NAME.match(name):
            raise ConfigError(f"{where}: `env` entry {name!r} is not a variable name")
        if name in NEVER_PASSED:
            raise ConfigError(f"{where}: `env` may not name {name}: edge never passes it on")
    defaults = _get(data, "config", dict, where, {})
    for key, value in defaults.items():
        try:
            check_config_value(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{where}: [config] {exc}") from None
    manifest = PluginManifest(
        id=plugin_id,
        version=version,
        description=_get(data, "description", str, where, ""),
        entry=entry,
        sdk=sdk,
        directory=directory.resolve(),
        capabilities=frozenset(capabilities),
        env=tuple(env),
        defaults=defaults,
    )
    if not manifest.entry_file.is_file():
        raise ConfigError(f"{where}: the entry module {entry!r} is not in {directory}")
    return manifest


def _strings(data: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of strings")
    return value


def user_config(manifest: PluginManifest) -> dict[str, Any]:
    """The plugin's config: its defaults, then the user's ``config.toml`` beside the manifest.

    Raises:
        ConfigError: the user's file cannot be read, is not UTF-8 TOML, sets a
            key the plugin has no default for (the closest one named), or holds a
            value config cannot (``check_config_value``).
    """
    config = dict(manifest.defaults)
    path = manifest.directory / USER_CONFIG
    try:
        user = read_toml(path, regular=True)
    except FileNotFoundError:
        return config
    for key, value in user.items():
        if manifest.defaults and key not in manifest.defaults:
            close = difflib.get_close_matches(key, list(manifest.defaults), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            raise ConfigError(f"{path}: plugin {manifest.id} has no config key `{key}`{hint}")
        try:
            check_config_value(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        config[key] = value
    return config


#: What every config value must be, said once for the errors.
CONFIG_VALUES: Final = "config values must be strings, numbers, booleans, lists or tables"


def check_config_value(key: str, value: Any) -> None:
    """Check that ``value`` is what a plugin's config may hold: a string, a finite
    number, a boolean, or a list or table of those, at any depth.

    Raises:
        ConfigError: anything else (a TOML date or time, ``inf``, ``nan``, a null),
            naming ``key`` and the place inside it, e.g.
            "`greeting` is a date; config values must be ...".
    """
    # Iterative, so that a value nested deeper than the interpreter's stack is an
    # answer, not a RecursionError.
    stack: list[tuple[str, Any]] = [(f"`{key}`", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, bool | int | str):
            continue
        if isinstance(item, float):
            if math.isfinite(item):
                continue
            raise ConfigError(f"{where} is {item!r}, not a finite number; {CONFIG_VALUES}")
        if isinstance(item, list):
            stack.extend((f"{where[:-1]}[{i}]`", v) for i, v in enumerate(item))
        elif isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, str):
                    raise ConfigError(f"{where} has the key {k!r}, not a string; {CONFIG_VALUES}")
                stack.append((f"{where[:-1]}.{k}`", v))
        else:
            raise ConfigError(f"{where} is {_kind(item)}; {CONFIG_VALUES}")


def _kind(value: object) -> str:
    """What ``value`` is, with its article, for the errors of ``check_config_value``."""
    if isinstance(value, datetime.datetime):
        return "a date-time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def discover(dirs: Iterable[Path], sdk_version: str = SDK_VERSION) -> list[Found]:
    """Every plugin directory (a directory with a ``plugin.toml``) under ``dirs``.

    Never raises: a manifest that does not load, and a second plugin with an id
    already taken, are ``Found`` with their problem.
    """
    found: list[Found] = []
    seen: dict[str, Path] = {}
    for parent in dirs:
        for directory in _plugin_dirs(parent):
            try:
                manifest = load_plugin(directory, sdk_version)
            except ConfigError as exc:
                found.append(Found(directory, None, str(exc)))
                continue
            except Exception as exc:  # whatever one directory holds, the others still load
                problem = f"cannot read its manifest: {type(exc).__name__}: {exc}"
                found.append(Found(directory, None, problem))
                continue
            if manifest.id in seen:
                problem = f"plugin id {manifest.id!r} is taken by {seen[manifest.id]}"
                found.append(Found(directory, None, problem))
                continue
            seen[manifest.id] = directory
            found.append(Found(directory, manifest))
    return found


def _plugin_dirs(parent: Path) -> list[Path]:
    """The subdirectories of ``parent`` holding a ``plugin.toml``, sorted; none if unreadable."""
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return []  # a configured directory that is not there holds no plugins
    found = []
    for entry in entries:
        try:
            if (entry / MANIFEST).is_file():
                found.append(entry)
        except OSError:
            continue
    return found


def write_user_config(manifest: PluginManifest, values: Mapping[str, Any]) -> Path:
    """Merge ``values`` into the plugin's ``config.toml`` (written atomically, 0600).

    Raises:
        ConfigError: a key the plugin has no default for, a value config cannot
            hold (``check_config_value``) or TOML cannot, or a file there already
            that does not read.
    """
    from ..fs import write_private

    for key, value in values.items():
        if manifest.defaults and key not in manifest.defaults:
            raise ConfigError(
                f"plugin {manifest.id} has no config key `{key}`; its keys: "
                + ", ".join(sorted(manifest.defaults))
            )
        check_config_value(key, value)
    path = manifest.directory / USER_CONFIG
    current: dict[str, Any] = {}
    try:
        current = read_toml(path, regular=True)
    except FileNotFoundError:
        pass
    except ConfigError as exc:
        raise ConfigError(f"cannot update {path}: {exc}") from None
    current.update(values)
    write_private(path, toml_text(current))
    return path


def toml_text(table: Mapping[str, Any]) -> str:
    """A flat TOML table of strings, numbers, booleans and lists of them."""
    import json

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, str):
            return json.dumps(item, ensure_ascii=False)  # a TOML basic string
        if isinstance(item, list):
            return "[" + ", ".join(value(v) for v in item) + "]"
        raise ConfigError(f"a config value must be a string, number, boolean or list, not {item!r}")

    lines = []
    for key, item in table.items():
        if not key.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"config key {key!r} must be letters, digits, '-' or '_'")
        lines.append(f"{key} = {value(item)}")
    return "\n".join(lines) + "\n"
