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
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ..errors import ConfigError
from ..plugin import SDK_VERSION

__all__ = [
    "CAPABILITIES",
    "Found",
    "PluginManifest",
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
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{directory} has no {MANIFEST}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
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
        ConfigError: the user's file is not valid TOML, or sets a key the
            plugin has no default for (the closest one named).
    """
    config = dict(manifest.defaults)
    path = manifest.directory / USER_CONFIG
    try:
        with open(path, "rb") as f:
            user = tomllib.load(f)
    except FileNotFoundError:
        return config
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    for key, value in user.items():
        if manifest.defaults and key not in manifest.defaults:
            close = difflib.get_close_matches(key, list(manifest.defaults), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            raise ConfigError(f"{path}: plugin {manifest.id} has no config key `{key}`{hint}")
        config[key] = value
    return config


def discover(dirs: Iterable[Path], sdk_version: str = SDK_VERSION) -> list[Found]:
    """Every plugin directory (a directory with a ``plugin.toml``) under ``dirs``.

    Never raises: a manifest that does not load, and a second plugin with an id
    already taken, are ``Found`` with their problem.
    """
    found: list[Found] = []
    seen: dict[str, Path] = {}
    for parent in dirs:
        try:
            children = sorted(p for p in parent.iterdir() if (p / MANIFEST).is_file())
        except OSError:
            continue  # a configured directory that is not there holds no plugins
        for directory in children:
            try:
                manifest = load_plugin(directory, sdk_version)
            except ConfigError as exc:
                found.append(Found(directory, None, str(exc)))
                continue
            if manifest.id in seen:
                problem = f"plugin id {manifest.id!r} is taken by {seen[manifest.id]}"
                found.append(Found(directory, None, problem))
                continue
            seen[manifest.id] = directory
            found.append(Found(directory, manifest))
    return found


def write_user_config(manifest: PluginManifest, values: Mapping[str, Any]) -> Path:
    """Merge ``values`` into the plugin's ``config.toml`` (written atomically, 0600).

    Raises:
        ConfigError: a key the plugin has no default for, or a value TOML cannot hold.
    """
    from ..fs import write_private

    for key in values:
        if manifest.defaults and key not in manifest.defaults:
            raise ConfigError(
                f"plugin {manifest.id} has no config key `{key}`; its keys: "
                + ", ".join(sorted(manifest.defaults))
            )
    path = manifest.directory / USER_CONFIG
    current: dict[str, Any] = {}
    if path.exists():
        import tomllib

        try:
            current = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
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
