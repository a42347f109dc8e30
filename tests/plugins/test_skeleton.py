"""``edge plugins new``'s skeleton: its own tests pass, and the real runner loads it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import trio

from edge.plugins.skeleton import write_plugin_skeleton

from .conftest import STARTUP, open_runner, plugin_spec


def test_the_files_and_the_manifest(tmp_path: Path) -> None:
    directory = write_plugin_skeleton("hello-world", tmp_path / "plugins")
    assert directory == tmp_path / "plugins" / "hello-world"
    assert sorted(p.name for p in directory.iterdir()) == [
        "README.md", "main.py", "plugin.toml", "test_main.py",
    ]  # fmt: skip
    manifest = tomllib.loads((directory / "plugin.toml").read_text())
    assert manifest == {
        "id": "hello-world",
        "version": "0.1.0",
        "description": "hello-world: what it does (edit me)",
        "entry": "main",
        "sdk": ">=1.0,<2",
        "capabilities": ["log"],
        "env": [],
        "config": {"greeting": "Hello"},
    }


async def test_its_own_tests_pass(tmp_path: Path) -> None:
    directory = write_plugin_skeleton("greeter", tmp_path)
    with trio.fail_after(STARTUP):
        done = await trio.run_process(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_main.py"],
            cwd=directory, capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, output
    assert "3 passed" in output


async def test_the_runner_loads_it(tmp_path: Path) -> None:
    directory = write_plugin_skeleton("greeter", tmp_path / "plugins")
    spec = plugin_spec(directory, config={"greeting": "Hey"})
    async with open_runner(tmp_path, {"greeter": spec}) as host:
        tools = {tool["name"]: tool for tool in host.registered["greeter"]["tools"]}
        assert set(tools) == {"greet", "countdown"}
        assert tools["countdown"]["timeout"] == 120.0
        reply = await host.call("greeter", "greet", {"name": "Ada"})
        assert reply.payload == {"output": "Hey, Ada."}
        reply = await host.call("greeter", "countdown", {"seconds": 2, "step": 0})
        assert reply.payload == {"output": "liftoff", "seconds": 2}
    assert [e.payload["done"] for e in host.events if e.method == "progress"] == [0, 1, 2]


def test_names_and_existing_directories_are_refused(tmp_path: Path) -> None:
    for bad in ("", "Upper", "9lives", "has space", "a/b", "..", "x" * 65):
        with pytest.raises(ValueError, match="is not a plugin name"):
            write_plugin_skeleton(bad, tmp_path)
    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        write_plugin_skeleton("taken", tmp_path)
    assert list((tmp_path / "taken").iterdir()) == []
    assert write_plugin_skeleton("a" * 64, tmp_path).is_dir()


def test_the_generated_code_is_clean(tmp_path: Path) -> None:
    directory = write_plugin_skeleton("lint-me", tmp_path)
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed beside this interpreter")
    # Without the project's settings: the defaults a plugin author's own tools would have.
    command = [str(ruff), "check", "--no-cache", "--isolated", "--select", "E,F,W,B,UP"]
    done = subprocess.run([*command, str(directory)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
