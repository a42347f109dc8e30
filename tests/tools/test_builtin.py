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
    assert result["error"].startswith('invalid args for code: "language":')


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
        ("terminal", {}, '"command" is required'),
        ("terminal", {"command": 5}, '"command": 5 is not of type \'string\''),
        ("terminal", {"command": "ls", "bogus": 1}, '"bogus" is not an argument of terminal (it takes "command"'),
        ("terminal", {"command": "ls", "timeout": -1}, '"timeout":'),
        ("file_read", {"path": "a", "offset": "x"}, '"offset": \'x\' is not of type \'integer\''),
        ("file_ops", {"op": "chmod", "path": "a"}, '"op": \'chmod\' is not one of'),
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


async def test_file_read_cuts_only_a_first_line_longer_than_the_limit(
    executor: Executor, workspace: Path
) -> None:
    (workspace / "long.txt").write_text("x" * 60_000 + "\nshort\n" + "y" * 60_000 + "\n")
    first = await call(executor, "file_read", path="long.txt")
    assert first["output"] == "x" * 50_000
    assert (first["lines"], first["truncated"], first["next_offset"]) == (1, True, 1)
    second = await call(executor, "file_read", path="long.txt", offset=1)
    # the long third line does not fit after "short": left whole for the next call
    assert second == {"output": "short\n", "lines": 1, "size": 120_008, "next_offset": 2}
    third = await call(executor, "file_read", path="long.txt", offset=2)
    assert third["output"] == "y" * 50_000
    assert third["truncated"] is True
    assert "next_offset" not in third


async def test_stat_move_and_delete_act_on_a_link_itself(
    executor: Executor, workspace: Path, tmp_path: Path
) -> None:
    # stat used to follow the link (and refuse one that leads out); now it describes the link
    os.symlink(tmp_path, workspace / "out")
    info = await call(executor, "file_ops", op="stat", path="out")
    assert (info["type"], info["target"]) == ("link", str(tmp_path))
    moved = await call(executor, "file_ops", op="move", path="out", dest="sub/out2")
    assert "error" not in moved, moved
    assert os.readlink(workspace / "sub" / "out2") == str(tmp_path)
    await call(executor, "file_ops", op="delete", path="sub")
    assert os.path.isdir(tmp_path)
    assert not os.path.exists(workspace / "sub")


async def test_copying_a_tree_keeps_links_as_links_and_skips_fifos(
    executor: Executor, workspace: Path
) -> None:
    tree = workspace / "t"
    (tree / "in").mkdir(parents=True)
    (tree / "in" / "f.txt").write_text("f")
    os.chmod(tree / "in" / "f.txt", 0o640)
    os.symlink("in/f.txt", tree / "link")
    os.symlink("/etc/passwd", tree / "abs")
    os.mkfifo(tree / "pipe")
    result = await call(executor, "file_ops", op="copy", path="t", dest="c")
    assert result["skipped"] == 1
    assert sorted(os.listdir(workspace / "c")) == ["abs", "in", "link"]
    assert os.readlink(workspace / "c" / "link") == "in/f.txt"
    assert os.readlink(workspace / "c" / "abs") == "/etc/passwd"
    assert (workspace / "c" / "in" / "f.txt").stat().st_mode & 0o777 == 0o640
    # the copied absolute link is text: reading through it is refused like any other
    assert "outside the allowed roots" in (await call(executor, "file_read", path="c/abs"))["error"]


async def test_file_write_refuses_a_directory(executor: Executor, workspace: Path) -> None:
    (workspace / "d").mkdir()
    assert (await call(executor, "file_write", path="d", content="x"))["error"].endswith(
        "is a directory"
    )
    assert (await call(executor, "file_write", path=".", content="x"))["error"].endswith(
        "is a directory"
    )


@pytest.mark.parametrize(
    ("pattern", "what"),
    [
        (r"(a)\1", "a backreference (\\1)"),
        (r"a(?=b)", "a lookahead"),
        (r"(?<!a)b", "a negative lookbehind"),
        (r"a*+", "a possessive quantifier"),
        (r"x\Z", "RE2 writes the end of the text as \\z"),
    ],
)
async def test_grep_names_what_re2_does_not_support(
    executor: Executor, pattern: str, what: str
) -> None:
    error = (await call(executor, "grep", pattern=pattern))["error"]
    assert error.startswith("pattern uses ")
    assert what in error
    assert error.endswith("which grep does not support: grep uses RE2 syntax, linear time")


def _sample_text() -> bytes:
    import random

    rng = random.Random(7)
    words = ["foo", "bar", "Foo", "é", "a b", "#", "\t", " ", "123", "ab", "x", "", "baz"]
    lines = []
    for _ in range(12_000):
        line = "".join(rng.choice(words) for _ in range(rng.randrange(0, 6)))
        lines.append(line + rng.choice(["\n", "\n", "\r\n"]))
    return "".join(lines).encode()


@pytest.mark.parametrize(
    "pattern",
    ["foo", "^foo", "foo$", "^$", r"\bbar\b", r"\s+$", "o+", r"[^a-z ]", "x*", "(?i)FOO",
     r"a\sb", r"\Afoo", r"bar\z", r"^\s*#", r"\d{3}", r"(?s)a.b", r"[\n]", "é", r"(?-m)^foo$",
     r"foo\r", r"\x62a"],
)
async def test_grep_finds_exactly_the_lines_a_line_by_line_search_finds(
    executor: Executor, workspace: Path, pattern: str
) -> None:
    import re2

    data = _sample_text()  # about 100 KiB: several chunks, lines across their edges
    (workspace / "s.txt").write_bytes(data)
    options = re2.Options()
    options.log_errors = False
    regex = re2.compile(pattern, options)
    expected = [
        n
        for n, line in enumerate(data.split(b"\n")[:-1], 1)
        if regex.search(line[:-1] if line.endswith(b"\r") else line) is not None
    ][:5000]
    result = await call(executor, "grep", pattern=pattern, path="s.txt", max_results=5000)
    assert [m["line"] for m in result["matches"]] == expected
