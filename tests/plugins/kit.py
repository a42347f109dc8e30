"""Plugins written into temporary directories, and checks that nothing was left behind."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable
from pathlib import Path

HEADER = "import os, sys, time\nimport trio\nfrom edge.plugin import Context, Plugin\n\nplugin = Plugin()\n"


def write_plugin(
    parent: Path,
    plugin_id: str,
    code: str,
    *,
    capabilities: Iterable[str] = ("log",),
    config: dict[str, object] | None = None,
    sdk: str = ">=1.0,<2",
    env: Iterable[str] = (),
) -> Path:
    """A plugin directory ``parent/plugin_id`` whose ``main.py`` is HEADER + ``code``."""
    directory = parent / plugin_id
    directory.mkdir(parents=True, exist_ok=True)
    caps = ", ".join(f'"{c}"' for c in capabilities)
    envs = ", ".join(f'"{e}"' for e in env)
    lines = [
        f'id = "{plugin_id}"',
        'version = "0.1.0"',
        f'description = "test plugin {plugin_id}"',
        'entry = "main"',
        f'sdk = "{sdk}"',
        f"capabilities = [{caps}]",
        f"env = [{envs}]",
    ]
    if config:
        lines.append("[config]")
        lines.extend(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in config.items())
    (directory / "plugin.toml").write_text("\n".join(lines) + "\n")
    (directory / "main.py").write_text(HEADER + textwrap.dedent(code))
    return directory


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def runner_pids(parent: int) -> list[int]:
    """The children of ``parent`` that run edge.plugins.runner."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"edge.plugins.runner" in cmdline:
            found.append(int(entry))
    return found
