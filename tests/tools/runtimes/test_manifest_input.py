"""Bad input in a ``tool.toml`` and the files it names: a ``ConfigError`` naming the file
and the key, and ``load_declared`` reporting it as the tool's problem, never raising."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.tools.policy import Policy
from edge.tools.runtimes.load import build_runtimes, load_declared
from edge.tools.runtimes.manifest import load_manifest

BASE = b'name = "t"\ndescription = "d"\nruntime = "node"\nentry = "x.js"\n'
WASM = b'name = "w"\ndescription = "d"\nruntime = "wasm"\nentry = "m.wasm"\n'


def tool(parent: Path, name: str, text: bytes, files: dict[str, str] | None = None) -> Path:
    directory = parent / name
    directory.mkdir(parents=True)
    (directory / "x.js").write_text("")
    (directory / "tool.toml").write_bytes(text)
    for filename, content in (files or {}).items():
        (directory / filename).write_text(content)
    return directory


def nested(depth: int) -> str:
    inner = '{"items": ' * depth + "{}" + "}" * depth
    return '{"type": "object", "properties": {"a": ' + inner + "}}"


def test_a_manifest_that_is_not_utf8(tmp_path: Path) -> None:
    directory = tool(tmp_path, "t", BASE + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"tool.toml is not valid UTF-8 TOML: ") as info:
        load_manifest(directory)
    assert str(Path(os.path.realpath(directory)) / "tool.toml") in str(info.value)


def test_a_grant_of_an_unknown_users_home(tmp_path: Path) -> None:
    directory = tool(tmp_path, "w", WASM + b'[[grants.dirs]]\npath = "~nosuchuser/notes"\n')
    with pytest.raises(ConfigError) as info:
        load_manifest(directory)
    message = str(info.value)
    assert "`grants.dirs[0].path` is '~nosuchuser/notes': cannot expand '~nosuchuser'" in message
    assert message.startswith(str(Path(os.path.realpath(directory)) / "tool.toml"))


@pytest.mark.parametrize(
    ("depth", "problem"),
    [
        (3000, "whose JSON nests deeper than edge reads"),  # json.loads: RecursionError
        (300, "nests too deep to be checked as a JSON Schema"),  # check_schema: RecursionError
    ],
)
def test_a_schema_file_nested_too_deep(tmp_path: Path, depth: int, problem: str) -> None:
    directory = tool(tmp_path, "t", BASE + b'schema = "s.json"\n', {"s.json": nested(depth)})
    with pytest.raises(ConfigError, match=f"`schema` .*{problem}"):
        load_manifest(directory)


def test_args_nested_too_deep(tmp_path: Path) -> None:
    deep = b"properties.a" + b".items" * 400 + b" = {}\n"
    directory = tool(tmp_path, "t", BASE + b'[args]\ntype = "object"\n' + deep)
    with pytest.raises(ConfigError, match=r"`\[args\]` nests too deep to be checked"):
        load_manifest(directory)


@pytest.mark.parametrize(
    ("value", "kind"), [("1979-05-27", "a date or time"), ("inf", "inf"), ("nan", "nan")]
)
def test_args_holding_what_json_cannot(tmp_path: Path, value: str, kind: str) -> None:
    text = BASE + f'[args]\ntype = "object"\nproperties.a = {{ default = {value} }}\n'.encode()
    directory = tool(tmp_path, "t", text)
    with pytest.raises(ConfigError) as info:
        load_manifest(directory)
    assert f"`[args]` holds {kind} at properties/a/default, which JSON cannot" in str(info.value)


def test_a_schema_file_that_is_a_fifo(tmp_path: Path) -> None:
    directory = tool(tmp_path, "t", BASE + b'schema = "s.json"\n')
    os.mkfifo(directory / "s.json")
    # In a child process: an edge that opened the FIFO would wait for a writer forever.
    code = (
        "import sys; from pathlib import Path\n"
        "from edge.errors import ConfigError\n"
        "from edge.tools.runtimes.manifest import load_manifest\n"
        "try:\n    load_manifest(Path(sys.argv[1]))\n"
        "except ConfigError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(directory)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "`schema` names" in done.stdout and "not a regular file" in done.stdout


def test_load_declared_reports_every_bad_tool_and_loads_the_good_one(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tool(tools, "a-latin1", BASE.replace(b'"t"', b'"a"') + b"# caf\xe9\n")
    tool(tools, "b-deep", BASE.replace(b'"t"', b'"b"') + b'schema = "s.json"\n',
         {"s.json": nested(3000)})  # fmt: skip
    grant = b'[[grants.dirs]]\npath = "~nosuchuser"\n'
    tool(tools, "c-grant", WASM.replace(b'"w"', b'"c"') + grant)
    tool(tools, "good", BASE.replace(b'"t"', b'"good"'))
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    found = load_declared(
        [tools, Path("~nosuchuser/tools"), tmp_path / "missing"],
        Policy.create(workspace),
        build_runtimes(),
    )
    by_dir = {t.directory.name: t for t in found}
    assert sorted(by_dir) == ["a-latin1", "b-deep", "c-grant", "good"]
    assert by_dir["good"].problem is None
    assert "not valid UTF-8 TOML" in str(by_dir["a-latin1"].problem)
    assert "nests deeper than edge reads" in str(by_dir["b-deep"].problem)
    assert "cannot expand '~nosuchuser'" in str(by_dir["c-grant"].problem)
