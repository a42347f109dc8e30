from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.errors import PolicyError
from edge.tools.policy import Policy


def test_relative_paths_start_in_the_workspace(workspace: Path) -> None:
    policy = Policy.create(workspace)
    assert policy.resolve("a/b.txt") == workspace.resolve() / "a" / "b.txt"
    assert policy.resolve(".") == workspace.resolve()


@pytest.mark.parametrize("path", ["..", "../x", "/etc/passwd", "a/../../x", "~/x"])
def test_escapes_are_refused(workspace: Path, path: str) -> None:
    with pytest.raises(PolicyError, match="outside the allowed roots"):
        Policy.create(workspace).resolve(path)


def test_symlinks_are_followed_before_the_check(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key").write_text("k")
    os.symlink(outside, workspace / "door")
    os.symlink(outside / "key", workspace / "keylink")
    policy = Policy.create(workspace)
    for path in ("door/key", "keylink", "door"):
        with pytest.raises(PolicyError):
            policy.resolve(path)


def test_extra_roots_are_allowed(workspace: Path, tmp_path: Path) -> None:
    extra = tmp_path / "projects"
    extra.mkdir()
    policy = Policy.create(workspace, [extra])
    assert policy.resolve(str(extra / "p")) == extra.resolve() / "p"


def test_nul_and_empty_paths(workspace: Path) -> None:
    policy = Policy.create(workspace)
    with pytest.raises(PolicyError, match="NUL"):
        policy.resolve("a\x00b")
    with pytest.raises(PolicyError, match="empty"):
        policy.resolve("")


def test_tool_allow_list(workspace: Path) -> None:
    assert Policy.create(workspace).allows_tool("terminal")
    narrow = Policy.create(workspace, allowed_tools=["grep"])
    assert narrow.allows_tool("grep")
    assert not narrow.allows_tool("terminal")


def test_root_for_is_lexical_and_names_the_rest(workspace: Path, tmp_path: Path) -> None:
    extra = tmp_path / "projects"
    extra.mkdir()
    os.symlink(tmp_path, workspace / "door")  # never followed by root_for
    policy = Policy.create(workspace, [extra])
    ws = workspace.resolve()
    assert policy.root_for(".") == (ws, "")
    assert policy.root_for("a//b/./c/") == (ws, "a/b/c")
    assert policy.root_for("a/../b") == (ws, "b")
    assert policy.root_for("door/secret") == (ws, "door/secret")
    assert policy.root_for(str(extra / "p" / "q")) == (extra.resolve(), "p/q")
    assert policy.root_for("caf\udce9") == (ws, "caf\udce9")


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "/etc/passwd", "~/x", "/"])
def test_root_for_refuses_what_is_lexically_outside(workspace: Path, path: str) -> None:
    with pytest.raises(PolicyError, match="outside the allowed roots"):
        Policy.create(workspace).root_for(path)


def test_root_for_picks_the_innermost_root(workspace: Path) -> None:
    (workspace / "inner").mkdir()
    policy = Policy.create(workspace, [workspace / "inner"])
    assert policy.root_for("inner/x") == (workspace.resolve() / "inner", "x")
    assert policy.root_for("inner") == (workspace.resolve() / "inner", "")
    assert policy.root_for("innerx") == (workspace.resolve(), "innerx")


def test_root_for_with_the_whole_file_system_as_a_root(workspace: Path) -> None:
    policy = Policy.create(workspace, ["/"])
    assert policy.root_for("/") == (Path("/"), "")
    assert policy.root_for("/etc/hostname") == (Path("/"), "etc/hostname")
    assert policy.root_for("x") == (workspace.resolve(), "x")
