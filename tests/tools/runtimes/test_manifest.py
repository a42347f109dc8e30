"""``tool.toml``: what loads, and for everything that does not, a message naming file and key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.tools.runtimes.manifest import DEFAULT_MEMORY_MB, Grant, load_manifest, parse_template

BASE = 'name = "greet"\ndescription = "Greet."\nruntime = "node"\nentry = "index.js"\n'


def tool(tmp_path: Path, text: str, name: str = "greet") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "tool.toml").write_text(text)
    return directory


def test_a_minimal_manifest(tmp_path: Path) -> None:
    directory = tool(tmp_path, BASE)
    m = load_manifest(directory)
    real = Path(os.path.realpath(directory))
    assert (m.name, m.description, m.runtime) == ("greet", "Greet.", "node")
    assert (m.entry, m.directory) == (real / "index.js", real)
    assert m.input_schema == {"type": "object"}
    assert (m.timeout, m.argv, m.grants, m.env, m.memory_mb) == (None, (), (), (), DEFAULT_MEMORY_MB)


def test_every_key(tmp_path: Path) -> None:
    native = tool(tmp_path, """\
name = "resize"
description = "Resize."
runtime = "native"
entry = "bin/resize"
timeout = 2
env = ["LANG_X", "OTHER", "LANG_X"]
argv = ["--width={width}", "{{literal}}", "-v"]

[args]
type = "object"
required = ["width"]
properties.width = { type = "integer" }
""", "resize")
    m = load_manifest(native)
    assert m.entry == Path(os.path.realpath(native)) / "bin" / "resize"
    assert m.timeout == 2.0
    assert isinstance(m.timeout, float)
    assert m.env == ("LANG_X", "OTHER")
    assert m.argv == ("--width={width}", "{{literal}}", "-v")
    assert m.input_schema["properties"] == {"width": {"type": "integer"}}

    wasm = tool(tmp_path, """\
name = "w"
description = "W."
runtime = "wasm"
entry = "m.wasm"
memory_mb = 128
schema = "args.schema.json"

[[grants.dirs]]
path = "~/notes"

[[grants.dirs]]
path = "out"
mode = "rw"
""", "w")
    (wasm / "args.schema.json").write_text('{"type": "object", "properties": {"q": {"type": "string"}}}')
    m = load_manifest(wasm)
    assert m.memory_mb == 128
    assert m.input_schema["properties"] == {"q": {"type": "string"}}
    assert m.grants == (Grant(Path("~/notes").expanduser(), False), Grant(Path("out"), True))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = ", "is not valid TOML"),
        (BASE + 'entyr = "x"\n', "unknown key `entyr`; did you mean `entry`?"),
        (BASE + 'zzz = 1\n', "unknown key `zzz`; valid: `name`"),
        (BASE.replace('name = "greet"\n', ""), "`name` is missing"),
        (BASE.replace('"greet"', "3"), "`name` must be a string, not an integer"),
        (BASE.replace('"greet"', '"9lives"'), "`name` must be a letter, then up to 63"),
        (BASE.replace('"greet"', '"a b"'), "`name` must be a letter"),
        (BASE.replace('"greet"', '"' + "a" * 65 + '"'), "`name` must be a letter"),
        (BASE.replace('"Greet."', '"  "'), "`description` must not be empty"),
        (BASE.replace('"node"', '"nod"'), "`runtime` must be one of node, native, wasm, not 'nod'; did you mean 'node'?"),
        (BASE.replace('"index.js"', '"../x.js"'), "`entry` must name a file inside"),
        (BASE.replace('"index.js"', '"/etc/passwd"'), "`entry` must name a file inside"),
        (BASE.replace('"index.js"', '"."'), "`entry` must name a file inside"),
        (BASE + "timeout = 0\n", "`timeout` must be more than 0 and at most 3600, not 0"),
        (BASE + "timeout = 3601\n", "`timeout` must be more than 0 and at most 3600"),
        (BASE + "timeout = nan\n", "`timeout` must be more than 0"),
        (BASE + 'timeout = "5"\n', "`timeout` must be a number of seconds, not a string"),
        (BASE + "timeout = true\n", "`timeout` must be a number of seconds, not a boolean"),
        (BASE + 'env = "HOME"\n', "`env` must be a list of strings, not a string"),
        (BASE + "env = [1]\n", "`env[0]` must be a string, not an integer"),
        (BASE + 'env = ["A-B"]\n', "`env[0]` is not an environment variable name: 'A-B'"),
        (BASE + 'env = ["EDGE_TOKEN"]\n', "`env[0]` names EDGE_TOKEN: edge never passes its token on"),
        (BASE + 'argv = ["{x}"]\n', "`argv` applies only to native tools, not node"),
        (BASE + "memory_mb = 8\n", "`memory_mb` applies only to wasm tools, not node"),
        (BASE + '[[grants.dirs]]\npath = "x"\n', "`grants` applies only to wasm tools, not node"),
        (BASE + '[args]\ntype = "string"\n', '`[args]` must describe an object ("type": "object"), not \'string\''),
        (BASE + '[args]\ntype = "objekt"\n', "`[args]` is not a valid JSON Schema at type: 'objekt' is not valid"),
        (BASE + '[args]\nrequired = "x"\n', "`[args]` is not a valid JSON Schema at required"),
        (BASE + 'schema = "s.json"\n[args]\ntype = "object"\n', "`schema` and `[args]` both give the schema"),
        (BASE + 'schema = "missing.json"\n', "`schema` names"),
        (BASE + 'schema = "../s.json"\n', "`schema` must name a file inside"),
        (BASE + "args = 3\n", "`args` must be a table (a JSON Schema), not an integer"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    directory = tool(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_manifest(directory)
    assert message in str(caught.value)
    assert str(Path(os.path.realpath(directory)) / "tool.toml") in str(caught.value)


WASM = 'name = "w"\ndescription = "W."\nruntime = "wasm"\nentry = "m.wasm"\n'
NATIVE = 'name = "n"\ndescription = "N."\nruntime = "native"\nentry = "n"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (WASM + "memory_mb = 0\n", "`memory_mb` must be from 1 to 4096, not 0"),
        (WASM + "memory_mb = 1.5\n", "`memory_mb` must be a whole number of MiB, not a float"),
        (WASM + "grants = 1\n", "`grants` must be a table (`[[grants.dirs]]`), not an integer"),
        (WASM + "[grants]\nfiles = []\n", "`grants.files` is unknown; the key is `grants.dirs`"),
        (WASM + "[[grants.dirs]]\nmode = 'ro'\n", "`grants.dirs[0].path` must be a path (a non-empty string), not nothing"),
        (WASM + "[[grants.dirs]]\npath = 'a'\nmode = 'w'\n", '`grants.dirs[0].mode` must be "ro" or "rw", not \'w\''),
        (WASM + "[[grants.dirs]]\npath = 'a'\nmdoe = 'ro'\n", "unknown key `grants.dirs[0].mdoe`; did you mean `mode`?"),
        (NATIVE + 'argv = ["{a.b}"]\n', "`argv[0]` is not a valid template ('{a.b}'): {a.b} is not a plain {arg} placeholder"),
        (NATIVE + 'argv = ["{a!r}"]\n', "{a!r} is not a plain {arg} placeholder"),
        (NATIVE + 'argv = ["{a"]\n', "`argv[0]` is not a valid template"),
        (NATIVE + 'argv = ["}"]\n', "`argv[0]` is not a valid template"),
        (NATIVE + 'argv = ["{}"]\n', "is not a plain {arg} placeholder"),
    ],
)
def test_runtime_specific_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_manifest(tool(tmp_path, text))
    assert message in str(caught.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"empty: no tool.toml in this directory"):
        load_manifest(empty)
    bad_schema = tool(tmp_path, BASE + 'schema = "s.json"\n', "bad")
    (bad_schema / "s.json").write_text("{nope")
    with pytest.raises(ConfigError, match=r"`schema` names .*s.json, which is not valid JSON"):
        load_manifest(bad_schema)
    (bad_schema / "s.json").write_text("[1]")
    with pytest.raises(ConfigError, match=r"which holds no JSON object"):
        load_manifest(bad_schema)


def test_an_entry_linked_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    directory = tool(tmp_path, BASE)
    (tmp_path / "outside.js").write_text("")
    (directory / "index.js").symlink_to(tmp_path / "outside.js")
    with pytest.raises(ConfigError, match="`entry` must name a file inside"):
        load_manifest(directory)


def test_templates() -> None:
    assert parse_template("--w={width}px") == [("--w=", "width"), ("px", None)]
    assert parse_template("{{x}}") == [("{", None), ("x}", None)]
    assert parse_template("plain") == [("plain", None)]
