"""Every built-in tool through ``Executor.call``, the path tunnel calls take too."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.daemon import build_executor, child_environment
from edge.tools.execute import Executor

from ..conftest import make_config


@pytest.fixture
def executor(workspace: Path) -> Executor:
    return build_executor(make_config(workspace))


async def call(executor: Executor, tool: str, **args: Any) -> dict[str, Any]:
    with trio.fail_after(20):
        return await executor.call(tool, args, approved=None)


async def test_terminal_runs_in_the_workspace(executor: Executor, workspace: Path) -> None:
    result = await call(executor, "terminal", command="pwd; echo oops >&2; exit 4")
    assert result == {"output": f"{workspace.resolve()}\noops\n", "exit_code": 4}


async def test_terminal_cwd_must_stay_inside(executor: Executor, workspace: Path) -> None:
    (workspace / "sub").mkdir()
    assert (await call(executor, "terminal", command="pwd", cwd="sub"))["output"].endswith("sub\n")
    assert "outside the allowed roots" in (await call(executor, "terminal", command="pwd", cwd="/"))["error"]


async def test_terminal_timeout_kills_the_group(executor: Executor, workspace: Path) -> None:
    from ..conftest import processes_in_group

    result = await call(
        executor, "terminal", command="echo $$ > pgid; sleep 30 & sleep 30", timeout=0.5
    )
    assert result == {"error": "terminal timed out after 0.5 s", "timed_out": True}
    pgid = int((workspace / "pgid").read_text())
    assert processes_in_group(pgid) == []


async def test_terminal_background_child_does_not_hold_the_call(
    executor: Executor, workspace: Path
) -> None:
    from ..conftest import processes_in_group

    with trio.fail_after(5):
        result = await call(executor, "terminal", command="echo $$ > pgid; sleep 60 & echo started")
    assert result["output"] == "started\n"
    assert processes_in_group(int((workspace / "pgid").read_text())) == []


async def test_terminal_does_not_see_the_token(executor: Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_TOKEN", "very-secret")
    env_executor = Executor(executor.registry, executor.policy, child_environment())
    result = await call(env_executor, "terminal", command="echo \"[${EDGE_TOKEN:-unset}]\"")
    assert result["output"] == "[unset]\n"


async def test_huge_output_is_truncated(executor: Executor) -> None:
    result = await call(executor, "terminal", command="head -c 200000 /dev/zero | tr '\\0' x")
    assert result["truncated"] is True
    assert result["original_length"] == 200_000
    assert len(result["output"]) == 50_000


async def test_code_python_and_bash(executor: Executor) -> None:
    result = await call(executor, "code", language="python", source="import sys\nprint(sys.argv[0].endswith('.py'), 6*7)")
    assert result == {"output": "True 42\n", "exit_code": 0}
    result = await call(executor, "code", language="bash", source="echo $((2+3)); exit 1")
    assert result == {"output": "5\n", "exit_code": 1}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed on this machine")
async def test_code_node(executor: Executor) -> None:
    result = await call(executor, "code", language="node", source="console.log(1+1)")
    assert result == {"output": "2\n", "exit_code": 0}


async def test_code_rejects_unknown_language(executor: Executor) -> None:
    result = await call(executor, "code", language="cobol", source="x")
    assert result["error"].startswith("invalid args for code: language:")


async def test_file_write_then_read(executor: Executor, workspace: Path) -> None:
    result = await call(executor, "file_write", path="notes/a.txt", content="one\ntwo\nthree\n")
    assert result["bytes"] == 14
    assert (workspace / "notes" / "a.txt").read_text() == "one\ntwo\nthree\n"
    await call(executor, "file_write", path="notes/a.txt", content="four\n", append=True)
    result = await call(executor, "file_read", path="notes/a.txt", offset=1, limit=2)
    assert result == {"output": "two\nthree\n", "lines": 2, "size": 19, "next_offset": 3}
    result = await call(executor, "file_read", path="notes/a.txt")
    assert result["output"] == "one\ntwo\nthree\nfour\n"
    assert "next_offset" not in result


async def test_file_read_refuses_binary_and_directories(executor: Executor, workspace: Path) -> None:
    (workspace / "bin").write_bytes(b"\x7fELF\x00\x00")
    assert "binary file" in (await call(executor, "file_read", path="bin"))["error"]
    assert "is a directory" in (await call(executor, "file_read", path="."))["error"]
    result = await call(executor, "file_read", path="missing.txt")
    assert result["error"].startswith("No such file or directory")


async def test_file_tools_refuse_escapes(executor: Executor, workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    os.symlink(tmp_path / "outside.txt", workspace / "link.txt")
    for tool, args in [
        ("file_read", {"path": "../outside.txt"}),
        ("file_read", {"path": "link.txt"}),
        ("file_read", {"path": str(tmp_path / "outside.txt")}),
        ("file_write", {"path": "../evil.txt", "content": "x"}),
        ("file_write", {"path": "link.txt", "content": "x"}),
        ("file_ops", {"op": "copy", "path": "link.txt", "dest": "copy.txt"}),
        ("file_ops", {"op": "move", "path": "../outside.txt", "dest": "in.txt"}),
        ("file_ops", {"op": "copy", "path": ".", "dest": "../out"}),
        ("grep", {"pattern": "secret", "path": ".."}),
    ]:
        result = await call(executor, tool, **args)
        assert "outside the allowed roots" in result.get("error", ""), (tool, args, result)
    assert (tmp_path / "outside.txt").read_text() == "secret"
    assert not (tmp_path / "evil.txt").exists()


async def test_file_ops(executor: Executor, workspace: Path, tmp_path: Path) -> None:
    await call(executor, "file_ops", op="mkdir", path="d/e")
    (workspace / "d" / "f.txt").write_text("hello")
    listing = await call(executor, "file_ops", op="list", path="d")
    assert listing["output"] == "e/\nf.txt"
    assert listing["count"] == 2
    info = await call(executor, "file_ops", op="stat", path="d/f.txt")
    assert info["type"] == "file" and info["size"] == 5
    await call(executor, "file_ops", op="copy", path="d", dest="d2")
    assert (workspace / "d2" / "f.txt").read_text() == "hello"
    moved = await call(executor, "file_ops", op="move", path="d2/f.txt", dest="g.txt")
    assert moved["dest"] == str(workspace.resolve() / "g.txt")
    exists = await call(executor, "file_ops", op="copy", path="g.txt", dest="d/f.txt")
    assert "already exists" in exists["error"]
    await call(executor, "file_ops", op="delete", path="d")
    assert not (workspace / "d").exists()
    refused = await call(executor, "file_ops", op="delete", path=".")
    assert "refusing to delete the root" in refused["error"]
    assert "needs dest" in (await call(executor, "file_ops", op="move", path="g.txt"))["error"]
    # deleting a link removes the link, never what it points to
    (tmp_path / "keep").mkdir()
    os.symlink(tmp_path / "keep", workspace / "keeplink")
    await call(executor, "file_ops", op="delete", path="keeplink")
    assert (tmp_path / "keep").is_dir() and not (workspace / "keeplink").exists()


async def test_grep(executor: Executor, workspace: Path) -> None:
    (workspace / "src").mkdir()
    (workspace / "src" / "a.py").write_text("import os\nx = 1\n# TODO here\n")
    (workspace / "src" / "b.txt").write_text("TODO there\n")
    (workspace / "blob").write_bytes(b"TODO\x00\x00")
    (workspace / ".git").mkdir()
    (workspace / ".git" / "c").write_text("TODO hidden\n")
    result = await call(executor, "grep", pattern="TODO")
    assert result["output"] == "src/a.py:3:# TODO here\nsrc/b.txt:1:TODO there"
    assert result["count"] == 2
    only_py = await call(executor, "grep", pattern="TODO", glob="*.py")
    assert only_py["output"] == "src/a.py:3:# TODO here"
    limited = await call(executor, "grep", pattern=".", path="src", max_results=1)
    assert limited["count"] == 1 and limited["limited"] is True
    assert "invalid pattern" in (await call(executor, "grep", pattern="("))["error"]


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("terminal", {}, "'command' is a required property"),
        ("terminal", {"command": 5}, "command: 5 is not of type 'string'"),
        ("terminal", {"command": "ls", "bogus": 1}, "Additional properties are not allowed"),
        ("terminal", {"command": "ls", "timeout": -1}, "timeout:"),
        ("file_read", {"path": "a", "offset": "x"}, "offset: 'x' is not of type 'integer'"),
        ("file_ops", {"op": "chmod", "path": "a"}, "op: 'chmod' is not one of"),
    ],
)
async def test_bad_args_name_the_problem(executor: Executor, tool: str, args: dict[str, Any], message: str) -> None:
    result = await call(executor, tool, **args)
    assert result["error"].startswith(f"invalid args for {tool}")
    assert message in result["error"]


async def test_unknown_and_disallowed_and_unapproved(workspace: Path) -> None:
    executor = build_executor(make_config(workspace, allow_tools=frozenset({"grep", "file_read"})))
    assert (await call(executor, "nope"))["error"] == "unknown tool 'nope'"
    assert "not allowed by the local policy" in (await call(executor, "terminal", command="ls"))["error"]
    result = await executor.call("file_read", {"path": "x"}, approved=frozenset({"grep"}))
    assert result["error"] == "tool 'file_read' is not approved by the cloud"
