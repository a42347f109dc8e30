"""Bad input in a plugin's files, and at ``edge plugins``: a ``ConfigError`` (or a clear
exit) naming the file and the key, never an exception from deeper down."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.plugins.manifest import (
    check_config_value,
    discover,
    load_plugin,
    user_config,
    write_user_config,
)

from ..conftest import edge_cmd
from .kit import write_plugin

BASE = b'id = "p"\nversion = "0.1.0"\nentry = "main"\nsdk = ">=1.0,<2"\n'
SUFFIX = "config values must be strings, numbers, booleans, lists or tables"


def plugin(tmp_path: Path, manifest: bytes, user: bytes | None = None, name: str = "p") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "main.py").write_text("")
    (directory / "plugin.toml").write_bytes(manifest)
    if user is not None:
        (directory / "config.toml").write_bytes(user)
    return directory


def test_a_manifest_that_is_not_utf8(tmp_path: Path) -> None:
    directory = plugin(tmp_path, BASE + b'description = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"plugin.toml is not valid UTF-8 TOML: ") as info:
        load_plugin(directory)
    assert str(directory / "plugin.toml") in str(info.value)
    (found,) = discover([tmp_path])
    assert found.manifest is None and "is not valid UTF-8 TOML" in str(found.problem)


def test_a_user_config_that_is_not_utf8(tmp_path: Path) -> None:
    directory = plugin(tmp_path, BASE + b'[config]\nx = "a"\n', b'x = "caf\xe9"\n')
    manifest = load_plugin(directory)
    with pytest.raises(ConfigError, match=r"config.toml is not valid UTF-8 TOML: ") as info:
        user_config(manifest)
    assert str(directory / "config.toml") in str(info.value)
    with pytest.raises(ConfigError, match=r"cannot update .*not valid UTF-8 TOML"):
        write_user_config(manifest, {"x": "b"})


def test_a_manifest_nested_deeper_than_the_parser_goes(tmp_path: Path) -> None:
    directory = plugin(tmp_path, BASE + b"[config]\nx = " + b"[" * 3000 + b"]" * 3000 + b"\n")
    with pytest.raises(ConfigError, match=r"plugin.toml is not valid TOML: .*nest too deep"):
        load_plugin(directory)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1979-05-27", "`greeting` is a date; " + SUFFIX),
        ("1979-05-27T07:32:00Z", "`greeting` is a date-time; " + SUFFIX),
        ("07:32:00", "`greeting` is a time; " + SUFFIX),
        ("inf", "`greeting` is inf, not a finite number; " + SUFFIX),
        ("nan", "`greeting` is nan, not a finite number; " + SUFFIX),
        ('["a", 1979-05-27]', "`greeting[1]` is a date; " + SUFFIX),
        ("{ a = { b = [07:32:00] } }", "`greeting.a.b[0]` is a time; " + SUFFIX),
    ],
)
def test_config_defaults_that_the_rpc_cannot_carry(
    tmp_path: Path, value: str, message: str
) -> None:
    directory = plugin(tmp_path, BASE + f"[config]\ngreeting = {value}\n".encode())
    with pytest.raises(ConfigError) as info:
        load_plugin(directory)
    assert str(info.value) == f"{directory / 'plugin.toml'}: [config] {message}"
    (found,) = discover([tmp_path])
    assert found.manifest is None and found.problem == str(info.value)


def test_a_user_config_value_that_the_rpc_cannot_carry(tmp_path: Path) -> None:
    directory = plugin(
        tmp_path, BASE + b'[config]\ngreeting = "hi"\n', b"greeting = 1979-05-27\n"
    )
    manifest = load_plugin(directory)
    with pytest.raises(ConfigError) as info:
        user_config(manifest)
    assert str(info.value) == f"{directory / 'config.toml'}: `greeting` is a date; {SUFFIX}"


def test_plain_values_pass() -> None:
    check_config_value("k", {"a": [1, 2.5, "s", True, {"b": []}], "c": -0.0})
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    check_config_value("deep", deep)  # no RecursionError, however deep
    with pytest.raises(ConfigError, match=r"`k` is null"):
        check_config_value("k", None)


def test_write_user_config_refuses_what_user_config_would(tmp_path: Path) -> None:
    directory = plugin(tmp_path, BASE + b"[config]\nratio = 1.0\n")
    manifest = load_plugin(directory)
    with pytest.raises(ConfigError, match=r"`ratio` is inf, not a finite number"):
        write_user_config(manifest, {"ratio": float("inf")})
    assert not (directory / "config.toml").exists()
    write_user_config(manifest, {"ratio": 2.5})
    assert user_config(manifest) == {"ratio": 2.5}


def test_a_user_config_that_is_a_fifo(tmp_path: Path) -> None:
    directory = plugin(tmp_path, BASE + b'[config]\nx = "a"\n')
    os.mkfifo(directory / "config.toml")
    # In a child process: an edge that opened the FIFO would wait for a writer forever.
    code = (
        "import sys; from pathlib import Path\n"
        "from edge.plugins.manifest import load_plugin, user_config\n"
        "from edge.errors import ConfigError\n"
        "try:\n    user_config(load_plugin(Path(sys.argv[1])))\n"
        "except ConfigError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(directory)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"cannot read {directory / 'config.toml'}: not a regular file\n"


def test_discover_never_raises(tmp_path: Path) -> None:
    # An entry name longer than a file name may be: looking for its file is an OSError
    # (ENAMETOOLONG), which no check in load_plugin expects.
    plugin(tmp_path, BASE.replace(b'"main"', b'"' + b"m" * 300 + b'"'), name="long")
    write_plugin(tmp_path, "good", "")
    found = {f.directory.name: f for f in discover([tmp_path, tmp_path / "missing"])}
    assert found["good"].manifest is not None and found["good"].problem is None
    long = found["long"]
    assert long.manifest is None
    assert str(long.problem).startswith("cannot read its manifest: OSError: ")
    assert "File name too long" in str(long.problem)


# --- edge plugins, edge tools new -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    runtime = Path(tempfile.mkdtemp(prefix="edge-t-", dir="/tmp"))
    env = dict(os.environ)
    env.update(
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_RUNTIME_DIR=str(runtime),
    )
    env.pop("EDGE_TOKEN", None)
    yield env
    shutil.rmtree(runtime, ignore_errors=True)


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        edge_cmd(*args), capture_output=True, text=True, env=env, timeout=60, cwd=cwd
    )


def test_config_values_toml_reads_as_dates_stay_strings(
    env: dict[str, str], tmp_path: Path
) -> None:
    from edge.cli.plugins import parse_pairs

    assert parse_pairs(["a=1979-05-27", "b=07:32:00", "c=inf", "d=3", "e=[1, 2]", "f=x y"]) == {
        "a": "1979-05-27", "b": "07:32:00", "c": "inf", "d": 3, "e": [1, 2], "f": "x y",
    }  # fmt: skip
    directory = write_plugin(
        Path(env["XDG_CONFIG_HOME"]) / "edge" / "plugins", "calc", "", config={"greeting": "hi"}
    )
    control = f"127.0.0.1:{free_port()}"  # nothing listens: the file is written
    done = run_cli(
        "plugins", "config", "calc", "greeting=1979-05-27", "--control", control,
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (directory / "config.toml").read_text() == 'greeting = "1979-05-27"\n'
    helped = run_cli("plugins", "config", "--help", env=env, cwd=tmp_path)
    assert "read as a date or time, inf or nan stays a string" in " ".join(helped.stdout.split())


@pytest.mark.parametrize(
    "command",
    [
        ("plugins", "new", "ok"),
        ("tools", "new", "--runtime", "node", "x"),
    ],
)
@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("/proc", "/proc/"),
        ("~nosuchuser/x", "--dir '~nosuchuser/x': cannot expand its `~`: no such user"),
    ],
)
def test_new_where_nothing_can_be_written(
    env: dict[str, str], tmp_path: Path, command: tuple[str, ...], where: str, message: str
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = run_cli(*command, "--dir", where, env=env, cwd=cwd)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("edge: error: ") and message in done.stderr
    assert "Traceback" not in done.stderr
    assert list(cwd.iterdir()) == [], "nothing written under a literal ~nosuchuser"


def test_an_empty_sdk_range_is_refused(tmp_path: Path) -> None:
    from edge.errors import ConfigError
    from edge.plugins.manifest import load_plugin

    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "plugin.toml").write_text(
        'id = "p"\nversion = "0.1.0"\nentry = "main"\nsdk = ""\n'
    )
    (directory / "main.py").write_text("")
    with pytest.raises(ConfigError, match="`sdk` must name a version range"):
        load_plugin(directory)
