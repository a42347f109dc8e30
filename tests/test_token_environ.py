"""What ``load_config`` reads from outside: ``EDGE_TOKEN`` taken out of the process's
environment (``/proc/<pid>/environ`` included), and a config.toml whose bytes or paths
are wrong, answered with a ``ConfigError`` naming the file or the key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from edge.config import load_config
from edge.dev.cloud import FakeCloud
from edge.errors import ConfigError

from .conftest import TOKEN, edge_cmd, start_edge

pytestmark = pytest.mark.usefixtures("no_child_left")

SECRET = "tok-5f3a9c-do-not-leak"

#: A child that loads the config from its real environment, then shows what is left.
CHILD = """\
import os, sys
from pathlib import Path
from edge.config import load_config
token_file = Path(sys.argv[1]) if len(sys.argv) > 1 else None
config = load_config(environ=None, no_control=True, token_file=token_file)
print(config.token.reveal() if config.token else "-")
print("EDGE_TOKEN" in os.environ)
print(os.fsencode(os.environ["SECRET"]) in Path("/proc/self/environ").read_bytes())
print("ready", flush=True)
sys.stdin.read()  # until the parent has read /proc/<pid>/environ too
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with no config file: XDG directories under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if k != "EDGE_TOKEN"}
    for name in ("CONFIG", "DATA", "STATE"):
        env[f"XDG_{name}_HOME"] = str(tmp_path / name.lower())
    return env


def run_child(env: dict[str, str], *args: str) -> tuple[list[str], bytes]:
    """CHILD's four lines, and its /proc/<pid>/environ as another process reads it."""
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        env={**env, "EDGE_TOKEN": SECRET, "SECRET": SECRET[::-1]},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as child:  # fmt: skip
        try:
            assert child.stdout is not None and child.stdin is not None
            lines = [child.stdout.readline().strip() for _ in range(4)]
            assert lines[3] == "ready", lines
            seen = Path(f"/proc/{child.pid}/environ").read_bytes()
            child.stdin.close()
            assert child.wait(timeout=30) == 0
        finally:
            child.kill()
    return lines, seen


def test_the_token_leaves_the_process_environment(env: dict[str, str]) -> None:
    (token, in_environ, _, _), seen = run_child(env)
    assert token == SECRET, "load_config returned the token"
    assert in_environ == "False", "os.environ no longer holds it"
    assert SECRET.encode() not in seen, "/proc/<pid>/environ no longer shows it"
    assert b"EDGE_TOKEN=" + b"x" * len(SECRET) in seen, "blanked in place, same length"


def test_the_token_leaves_even_when_a_token_file_is_used(
    env: dict[str, str], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file\n")
    token_file.chmod(0o600)
    (token, in_environ, _, _), seen = run_child(env, str(token_file))
    assert token == "from-the-file"
    assert in_environ == "False" and SECRET.encode() not in seen


def test_other_variables_stay(env: dict[str, str]) -> None:
    (_, _, own_view, _), seen = run_child(env)
    assert own_view == "True" and SECRET[::-1].encode() in seen


def test_an_explicit_environ_is_only_read(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EDGE_TOKEN", "the-process-own")
    config = load_config(environ={"EDGE_TOKEN": "given"}, no_control=True)
    assert config.token is not None and config.token.reveal() == "given"
    assert os.environ["EDGE_TOKEN"] == "the-process-own"


async def test_edge_run_connects_and_hides_the_token(
    nursery: trio.Nursery, workspace: Path, env: dict[str, str]
) -> None:
    cloud: FakeCloud = await nursery.start(FakeCloud([TOKEN]).serve)
    edge = await start_edge(
        nursery, "--cloud", cloud.url, "--workspace", str(workspace), "--no-control",
        env={**env, "EDGE_TOKEN": TOKEN},
    )  # fmt: skip
    try:
        with trio.fail_after(30):
            await edge.wait_for_log("connected to")
        seen = await trio.Path(f"/proc/{edge.proc.pid}/environ").read_bytes()
        assert b"EDGE_TOKEN=" in seen and TOKEN.encode() not in seen
    finally:
        edge.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            await edge.proc.wait()


# --- config.toml: bytes and paths ----------------------------------------------------


def test_a_config_file_that_is_not_utf8(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "edge.toml"
    path.write_bytes(b'[policy]\nworkspace = "/w/caf\xe9"\n')
    with pytest.raises(ConfigError, match=f"^{path} is not valid UTF-8 TOML: "):
        load_config(config_file=path, environ={})
    done = subprocess.run(
        edge_cmd("tools", "list", "--config", str(path)),
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "is not valid UTF-8 TOML" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[plugins]\ndirs = ["~nosuchuser/plugins"]\n', "plugins.dirs"),
        ('[tools]\ndirs = ["/ok", "~nosuchuser/tools"]\n', "tools.dirs"),
        ('[policy]\nworkspace = "~nosuchuser/w"\n', "policy.workspace"),
        ('[policy]\nroots = ["~nosuchuser/w"]\n', "policy.roots"),
        ('[capture]\nrecordings = "~nosuchuser/w"\n', "capture.recordings"),
        ('[mcp]\nservers = "~nosuchuser/w"\n', "mcp.servers"),
        ('[tunnel]\ntoken_file = "~nosuchuser/w"\n', "tunnel.token_file"),
    ],
)
def test_a_path_of_an_unknown_users_home(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(config_file=path, environ={})
    value = text.split('"~nosuchuser/', 1)[1].split('"', 1)[0]
    expected = f"{key}: '~nosuchuser/{value}': cannot expand '~nosuchuser': no such user"
    assert str(info.value).startswith(expected)


def test_a_flag_of_an_unknown_users_home() -> None:
    with pytest.raises(ConfigError, match=r"^--root: '~nosuchuser/r': cannot expand"):
        load_config(roots=[Path("~nosuchuser/r")], environ={})
    with pytest.raises(ConfigError, match=r"^--workspace: '~nosuchuser': cannot expand"):
        load_config(workspace=Path("~nosuchuser"), environ={})
