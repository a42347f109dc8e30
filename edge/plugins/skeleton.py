"""A new plugin's starting files, for ``edge plugins new NAME``.

``write_plugin_skeleton`` makes ``<parent>/<name>/`` with a ``plugin.toml``, a
``main.py`` holding one sync and one async tool, a ``test_main.py`` that runs
with plain ``python -m pytest`` in that directory, and a ``README.md``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Final

from ..fs import make_private_dir
from ..plugin import SDK_VERSION

__all__ = ["NAME", "write_plugin_skeleton"]

#: What a plugin name (its id) looks like.
NAME: Final = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
#: The SDK range a new plugin asks for: this major version.
SDK_RANGE: Final = f">={SDK_VERSION},<{int(SDK_VERSION.split('.')[0]) + 1}"

MANIFEST: Final = """\
# The manifest edge reads: docs/plugins.md in edge describes each key.
id = "{name}"
version = "0.1.0"
description = "{name}: what it does (edit me)"
entry = "main"
sdk = "{sdk}"
# What the plugin may ask of edge: any of "log", "config", "tools.call", "events", "agents".
capabilities = ["log"]
# Names of environment variables passed on to the plugin's runner.
env = []

# The plugin's config and its defaults (ctx.config in a tool).
[config]
greeting = "Hello"
"""

MAIN: Final = '''\
"""{name}: an edge plugin."""

from __future__ import annotations

import trio

from edge.plugin import Context, Plugin

plugin = Plugin()


@plugin.tool
def greet(ctx: Context, name: str, excited: bool = False) -> dict:
    """Greet someone by name."""
    # A plain function: edge runs it in a worker thread, so it may block.
    greeting = ctx.config.get("greeting", "Hello")
    ctx.log(f"greeting {{name}}")
    return {{"output": f"{{greeting}}, {{name}}{{'!' if excited else '.'}}"}}


@plugin.tool(timeout=120)
async def countdown(ctx: Context, seconds: int = 3, step: float = 1.0) -> dict:
    """Count down from ``seconds``, reporting progress at each step."""
    # An async function: it runs on trio and is cancelled at its next await.
    for done in range(seconds):
        ctx.progress(done, seconds, f"{{seconds - done}} left")
        await trio.sleep(step)
    ctx.progress(seconds, seconds, "done")
    return {{"output": "liftoff", "seconds": seconds}}
'''

TEST: Final = '''\
"""Tests that call {name}'s tools directly: ``python -m pytest`` in this directory."""

from __future__ import annotations

import trio

import main
from edge.plugin import Context


def test_greet_uses_the_config() -> None:
    ctx = Context.detached({{"greeting": "Hi"}})
    assert main.greet(ctx, "Ada") == {{"output": "Hi, Ada."}}
    assert main.greet(ctx, "Ada", excited=True) == {{"output": "Hi, Ada!"}}
    assert ctx.sent is not None
    assert ("log", {{"level": "info", "message": "greeting Ada"}}) in ctx.sent


def test_countdown_reports_progress() -> None:
    ctx = Context.detached()
    assert trio.run(main.countdown, ctx, 2, 0.0) == {{"output": "liftoff", "seconds": 2}}
    assert ctx.sent is not None
    progress = [payload for method, payload in ctx.sent if method == "progress"]
    assert [payload["done"] for payload in progress] == [0, 1, 2]


def test_the_schemas() -> None:
    greet = main.plugin.tools["greet"].input_schema
    assert greet["required"] == ["name"]
    assert set(greet["properties"]) == {{"name", "excited"}}  # ctx is not an argument
    countdown = main.plugin.tools["countdown"].input_schema
    assert countdown["properties"]["seconds"] == {{"type": "integer", "default": 3}}
'''

README: Final = """\
# {name}

An edge plugin. edge runs it in a runner process of its own and offers its
tools to the cloud.

- `plugin.toml`: the manifest (id, version, entry module, SDK range,
  capabilities, environment, config defaults).
- `main.py`: the tools. A tool's arguments come from its type hints; a
  parameter annotated `Context` gets the call's context (config, progress, log).
- `test_main.py`: tests that call the tools directly: `python -m pytest`.

See docs/plugins.md in edge for the manifest keys and the SDK.
"""


def write_plugin_skeleton(name: str, parent: Path) -> Path:
    """Write a new plugin called ``name`` in ``parent`` (made if missing); its directory.

    Raises:
        ValueError: ``name`` is not a plugin name, or ``parent/name`` already exists.
        OSError: the files cannot be written (nothing is left behind).
    """
    if not NAME.match(name):
        raise ValueError(
            f"{name!r} is not a plugin name: lowercase letters, digits, '_' and '-', "
            "starting with a letter, at most 64 characters"
        )
    directory = parent / name
    if directory.exists() or directory.is_symlink():
        raise ValueError(f"{directory} already exists: choose another name or remove it")
    make_private_dir(parent)
    try:
        directory.mkdir()
    except FileExistsError:
        raise ValueError(f"{directory} already exists: choose another name or remove it") from None
    files = {"plugin.toml": MANIFEST, "main.py": MAIN, "test_main.py": TEST, "README.md": README}
    try:
        for filename, template in files.items():
            (directory / filename).write_text(
                template.format(name=name, sdk=SDK_RANGE), encoding="utf-8"
            )
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory
