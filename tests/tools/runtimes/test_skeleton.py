"""``edge tools new``'s skeletons: each one loads, validates and answers right away."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from edge.daemon import child_environment
from edge.errors import ConfigError
from edge.tools.contain import Containment
from edge.tools.execute import Executor
from edge.tools.policy import Policy
from edge.tools.registry import ToolRegistry
from edge.tools.runtimes.load import build_runtimes, load_declared, tool_spec
from edge.tools.runtimes.skeleton import write_skeleton

pytestmark = pytest.mark.usefixtures("no_child_left")

ANSWERS = {
    "node": ({"name": "Ada Lovelace"}, {"output": "Hello, Ada Lovelace!", "words": 2}),
    "native": ({"name": 'Ada "the first" \\ L'}, {"output": 'Hello, Ada "the first" \\ L!'}),
    "wasm": ({}, {"output": "Hello from wasm! The call was 48 bytes long."}),
}


@pytest.fixture
def containment(tmp_path: Path) -> Iterator[Containment]:
    handle = Containment.create(tmp_path / "state")
    try:
        yield handle
    finally:
        handle.close()


@pytest.mark.parametrize("kind", ["node", "native", "wasm"])
async def test_a_skeleton_works_at_once(
    kind: str, tmp_path: Path, workspace: Path, containment: Containment
) -> None:
    if kind == "node" and shutil.which("node") is None:
        pytest.skip("node is not installed")
    tools = tmp_path / "tools" / "deeper"
    directory = write_skeleton(kind, f"hi_{kind}", tools)
    assert directory == tools / f"hi_{kind}"
    assert f"edge tools call hi_{kind}" in (directory / "README.md").read_text()
    policy = Policy.create(workspace)
    runtimes = build_runtimes()
    if kind not in runtimes:
        pytest.skip(f"no {kind} runtime in this edge")
    [tool] = load_declared([tools], policy, runtimes)
    assert (tool.name, tool.runtime, tool.problem) == (f"hi_{kind}", kind, None)
    registry = ToolRegistry()
    registry.add(tool_spec(tool, runtimes[kind]))
    executor = Executor(registry, policy, child_environment(), processes=containment)
    args, answer = ANSWERS[kind]
    with trio.fail_after(30):
        result = await executor.call(f"hi_{kind}", args, approved=None)
    assert result == answer
    bad = await executor.call(f"hi_{kind}", {"nme": "x"}, approved=None)
    assert ("error" in bad) is (kind != "wasm")  # the wasm skeleton takes any object


def test_the_native_skeleton_is_executable_and_its_c_twin_builds(tmp_path: Path) -> None:
    directory = write_skeleton("native", "hello", tmp_path)
    assert stat.S_IMODE((directory / "main.sh").stat().st_mode) == 0o755
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    built = subprocess.run(
        [gcc, "-O2", "-Wall", "-Werror", "-o", str(directory / "hello"), str(directory / "main.c")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert built.returncode == 0, built.stderr
    for program in (directory / "hello", directory / "main.sh"):
        out = subprocess.run(
            [str(program), 'A "q" \\'], capture_output=True, text=True, timeout=30, check=True,
            stdin=subprocess.DEVNULL,
        )
        assert out.stdout.strip() == '{"output": "Hello, A \\"q\\" \\\\!"}'


def test_an_existing_directory_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "greet").mkdir()
    (tmp_path / "greet" / "mine.js").write_text("keep me")
    with pytest.raises(ConfigError, match=r"greet exists already; choose another name or remove it"):
        write_skeleton("node", "greet", tmp_path)
    assert os.listdir(tmp_path / "greet") == ["mine.js"]
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="exists already"):
        write_skeleton("node", "link", tmp_path)


def test_bad_names_and_kinds(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'\.\./x' is no tool name"):
        write_skeleton("node", "../x", tmp_path)
    with pytest.raises(ConfigError, match=r"unknown runtime 'python'; valid: node, native, wasm"):
        write_skeleton("python", "x", tmp_path)
    assert list(tmp_path.iterdir()) == []
