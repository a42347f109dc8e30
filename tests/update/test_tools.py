"""``edge update`` of edge installed as a tool: a real pipx install (pipx from the test extra,
its own PIPX_HOME), and a uv tool when uv is on PATH. Their installers fetch edge's
dependencies from the package index, as they would for a user."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from .kit import NEW, OLD, Site, edge_update, run, version_of

pytestmark = pytest.mark.slow


def _manifest(site: Site, wheels: dict[str, Path]) -> dict[str, Any]:
    return {"latest": NEW, "minimum": OLD, "versions": {NEW: site.entry(wheels[NEW])}}


def _with_path(env: dict[str, str], folder: Path) -> dict[str, str]:
    return {**env, "PATH": f"{folder}{os.pathsep}{env.get('PATH', os.defpath)}"}


def _share_dependencies(home: Path, deps: Path) -> None:
    """Put edge's dependencies into pipx's shared libraries, which every pipx venv sees
    (``pipx_shared.pth``): the first install finds them there instead of downloading them.
    The update's ``pip install --force-reinstall`` installs its own copies into the venv
    (pip never removes what lies outside the environment)."""
    for shared in home.glob("shared/lib/python3*/site-packages"):
        for entry in deps.iterdir():
            if not (shared / entry.name).exists() and not entry.name.startswith("pip"):
                (shared / entry.name).symlink_to(entry.resolve())


def test_a_pipx_install_is_updated_with_pipx(
    site: Site, wheels: dict[str, Path], deps: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    home, bin_dir = tmp_path / "pipx", tmp_path / "bin"
    env = _with_path(user_env, Path(sys.executable).parent)  # where the test extra put pipx
    env.update(PIPX_HOME=str(home), PIPX_BIN_DIR=str(bin_dir), PIPX_MAN_DIR=str(tmp_path / "man"))
    assert shutil.which("pipx", path=env["PATH"]), "pipx is in the test extra"
    run([sys.executable, "-m", "pipx", "upgrade-shared"], env=env)
    _share_dependencies(home, deps)
    run([sys.executable, "-m", "pipx", "install", str(wheels[OLD])], env=env)
    edge = bin_dir / "edge"
    assert version_of(edge, env) == f"edge {OLD}"
    config = site.config(tmp_path / "config.toml", site.publish("pipx", _manifest(site, wheels)))

    check = edge_update([str(edge)], config, env, "--check")
    assert check.returncode == 1, check.stderr
    assert f"installed  edge {OLD} (pipx {home / 'venvs' / 'edge'}" in check.stdout
    assert "pipx install --force" in check.stdout

    done = edge_update([str(edge)], config, env)
    assert done.returncode == 0, done.stderr
    assert f"edge {NEW} installed (was {OLD})" in done.stdout
    assert version_of(edge, env) == f"edge {NEW}"
    # pipx's own record follows, and names the kept wheel (what `pipx reinstall` uses)
    metadata = json.loads((home / "venvs" / "edge" / "pipx_metadata.json").read_text())
    kept = Path(metadata["main_package"]["package_or_url"])
    assert metadata["main_package"]["package_version"] == NEW
    assert kept == Path(env["XDG_STATE_HOME"]) / "edge" / "updates" / wheels[NEW].name
    assert kept.is_file()


def test_a_uv_tool_is_updated_with_uv(
    site: Site, wheels: dict[str, Path], tmp_path: Path, user_env: dict[str, str]
) -> None:
    # uv comes with the test extra, beside this interpreter; edge finds it on PATH.
    here = Path(sys.executable).parent
    uv = shutil.which("uv", path=f"{here}{os.pathsep}{os.environ.get('PATH', '')}")
    if uv is None:
        pytest.skip("uv is not installed (it is in the test extra): the uv tool test needs it")
    tools, bin_dir = tmp_path / "uv-tools", tmp_path / "bin"
    env = dict(
        user_env, UV_TOOL_DIR=str(tools), UV_TOOL_BIN_DIR=str(bin_dir), UV_PYTHON=sys.executable,
        PATH=f"{Path(uv).parent}{os.pathsep}{user_env.get('PATH', '')}",
    )  # fmt: skip
    run([uv, "tool", "install", str(wheels[OLD])], env=env)
    edge = bin_dir / "edge"
    assert version_of(edge, env) == f"edge {OLD}"
    config = site.config(tmp_path / "config.toml", site.publish("uv", _manifest(site, wheels)))
    done = edge_update([str(edge)], config, env)
    assert done.returncode == 0, done.stderr
    assert "uv tool install --force" in done.stderr
    assert version_of(edge, env) == f"edge {NEW}"
