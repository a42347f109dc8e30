"""Declared tools as a user meets them: ``edge tools new|list|call`` in real subprocesses, and
through the tunnel, approved and called by the fake cloud."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud

from ...conftest import CONNECT_WITHIN, TOKEN, edge_cmd, fast_tunnel, make_config, until

pytestmark = [
    pytest.mark.usefixtures("no_child_left"),
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

GREET_JS = """\
let input = "";
process.stdin.on("data", (c) => { input += c; });
process.stdin.on("end", () => {
  const call = JSON.parse(input);
  console.log(JSON.stringify({ output: `Hello, ${call.args.name}!`, via: call.callId }));
});
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env.pop("EDGE_TOKEN", None)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(edge_cmd(*args), capture_output=True, text=True, env=env, timeout=60)


def make_tools(tools: Path) -> None:
    """``greet`` (node), ``shout`` (native, a script), and two broken ones."""
    greet = tools / "greet"
    greet.mkdir(parents=True)
    (greet / "tool.toml").write_text(
        'name = "greet"\ndescription = "Greet someone."\nruntime = "node"\nentry = "index.js"\n'
        '[args]\ntype = "object"\nrequired = ["name"]\nproperties.name = { type = "string" }\n'
    )
    (greet / "index.js").write_text(GREET_JS)
    shout = tools / "shout"
    shout.mkdir()
    (shout / "tool.toml").write_text(
        'name = "shout"\ndescription = "Shout a word."\nruntime = "native"\nentry = "shout.sh"\n'
        'argv = ["{word}"]\n[args]\ntype = "object"\nrequired = ["word"]\n'
        "properties.word = { type = \"string\", pattern = '^[a-z]+$' }\n"
    )
    script = shout / "shout.sh"
    script.write_text('#!/bin/sh\nprintf \'{"output": "%s!"}\' "$(echo "$1" | tr a-z A-Z)"\n')
    script.chmod(0o755)
    lazy = tools / "lazy"
    lazy.mkdir()
    (lazy / "tool.toml").write_text(
        'name = "lazy"\ndescription = "Not executable."\nruntime = "native"\nentry = "run"\n'
    )
    (lazy / "run").write_text("#!/bin/sh\n")
    typo = tools / "typo"
    typo.mkdir()
    (typo / "tool.toml").write_text(
        'name = "typo"\ndescripton = "x"\nruntime = "node"\nentry = "index.js"\n'
    )


def write_config(tmp_path: Path, workspace: Path, tools: Path) -> Path:
    config = tmp_path / "edge.toml"
    config.write_text(f'[policy]\nworkspace = "{workspace}"\n[tools]\ndirs = ["{tools}"]\n')
    return config


def test_call_and_list_declared_tools(tmp_path: Path, workspace: Path, env: dict[str, str]) -> None:
    tools = tmp_path / "tools"
    make_tools(tools)
    config = str(write_config(tmp_path, workspace, tools))

    greet = run_cli("tools", "call", "greet", "--args", '{"name": "Ada"}', "--config", config, env=env)
    assert greet.returncode == 0, greet.stderr
    assert json.loads(greet.stdout) == {"output": "Hello, Ada!", "via": None}
    shout = run_cli("tools", "call", "shout", "--args", '{"word": "hey"}', "--config", config, env=env)
    assert shout.returncode == 0, shout.stderr
    assert json.loads(shout.stdout) == {"output": "HEY!"}
    refused = run_cli("tools", "call", "shout", "--args", '{"word": "a b"}', "--config", config, env=env)
    assert refused.returncode == 1
    assert "invalid args for shout: \"word\": 'a b' does not match" in json.loads(refused.stdout)["error"]
    invalid = run_cli("tools", "call", "lazy", "--config", config, env=env)
    assert invalid.returncode == 1
    assert json.loads(invalid.stdout)["error"].startswith(
        "tool 'lazy' is invalid: entry run is not executable (chmod +x"
    )

    listing = run_cli("tools", "list", "--config", config, env=env)
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()[1:-1]}
    assert set(lines) >= {"terminal", "grep", "greet", "shout", "lazy", "typo"}
    assert lines["greet"].split()[1:5] == ["node:greet", "yes", "-", "-"]
    assert lines["greet"].endswith("Greet someone.")
    assert lines["lazy"].split()[1:3] == ["native:lazy", "INVALID:"]
    assert "INVALID: entry run is not executable (chmod +x" in lines["lazy"]
    assert "unknown key `descripton`; did you mean `description`?" in lines["typo"]
    assert listing.stderr == ""

    as_json = run_cli("tools", "list", "--json", "--config", config, env=env)
    rows = {row["name"]: row for row in json.loads(as_json.stdout)}
    assert rows["greet"]["source"] == "node:greet"
    assert rows["greet"]["status"] == "ok"
    assert rows["greet"]["input_schema"]["required"] == ["name"]
    assert rows["lazy"]["status"] == "invalid"
    assert rows["typo"]["source"] == "declared:typo"
    assert "descripton" in rows["typo"]["problem"]
    assert "status" not in rows["terminal"]

    narrowed = run_cli("tools", "list", "--allow-tool", "greet", "--config", config, env=env)
    allowed = [line.split()[0] for line in narrowed.stdout.splitlines()[1:-1] if line.split()[2] != "no"]
    assert allowed == ["greet", "lazy", "typo"]  # and the tools that cannot run


@pytest.mark.parametrize(
    ("kind", "args", "answer"),
    [
        ("node", '{"name": "Ada"}', {"output": "Hello, Ada!", "words": 1}),
        ("native", '{"name": "Ada"}', {"output": "Hello, Ada!"}),
        ("wasm", "{}", {"output": "Hello from wasm! The call was 45 bytes long."}),
    ],
)
def test_new_then_call(env: dict[str, str], kind: str, args: str, answer: dict[str, object]) -> None:
    created = run_cli("tools", "new", "--runtime", kind, "mine", env=env)
    assert created.returncode == 0, created.stderr
    directory = Path(env["XDG_CONFIG_HOME"]) / "edge" / "tools" / "mine"
    assert f"created {directory}" in created.stdout
    assert "note:" not in created.stdout  # the default directory is where edge looks
    called = run_cli("tools", "call", "mine", "--args", args, env=env)
    assert called.returncode == 0, called.stdout + called.stderr
    assert json.loads(called.stdout) == answer
    again = run_cli("tools", "new", "--runtime", kind, "mine", env=env)
    assert again.returncode == 2
    assert f"edge: error: {directory} exists already" in again.stderr


def test_new_elsewhere_says_where_edge_looks(tmp_path: Path, env: dict[str, str]) -> None:
    created = run_cli("tools", "new", "--runtime", "node", "x", "--dir", str(tmp_path / "mine"), env=env)
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "mine" / "x" / "tool.toml").is_file()
    assert f"add {tmp_path / 'mine'} to [tools] dirs" in created.stdout
    bad = run_cli("tools", "new", "--runtime", "node", "9x", env=env)
    assert bad.returncode == 2
    assert "'9x' is no tool name" in bad.stderr
    usage = run_cli("tools", "new", "--runtime", "perl", "x", env=env)
    assert usage.returncode == 2
    assert "invalid choice: 'perl'" in usage.stderr


async def test_the_cloud_calls_declared_tools(
    nursery: trio.Nursery, tmp_path: Path, workspace: Path
) -> None:
    from edge.tools.runtimes import write_skeleton

    tools = tmp_path / "tools"
    make_tools(tools)
    write_skeleton("wasm", "hello", tools)  # a WASI module (WAT text), run in wasmtime
    cloud = await nursery.start(FakeCloud([TOKEN]).serve)  # approves every tool offered
    config = make_config(workspace, cloud, tool_dirs=(tools,), state_dir=tmp_path / "state")
    daemon = await nursery.start(Daemon(config, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
    report = cloud.report
    assert report is not None
    assert {"greet", "shout"} <= {t["name"] for t in report["tools"]}
    assert not {"lazy", "typo"} & {t["name"] for t in report["tools"]}
    declared = {d["name"]: d for d in report["declaredTools"]}
    assert {name: d["status"] for name, d in declared.items()} == {
        "greet": "ok", "shout": "ok", "hello": "ok", "lazy": "invalid", "typo": "invalid",
    }
    assert declared["greet"] == {
        "name": "greet", "runtime": "node", "directory": str(tools / "greet"), "status": "ok",
        "problem": None,
    }
    with trio.fail_after(30):
        await until(lambda: {"greet", "shout"} <= daemon.approved)
        first = await cloud.start_call("greet", {"name": "cloud"})
        second = await cloud.start_call("shout", {"word": "loud"})
        assert await cloud.result(first) == {"output": "Hello, cloud!", "via": first}
        assert await cloud.result(second) == {"output": "LOUD!"}
        await until(lambda: "hello" in daemon.approved)
        wasm = await cloud.call("hello", {})
        assert wasm["output"].startswith("Hello from wasm!"), wasm
        assert (await cloud.call("lazy", {}))["error"] == "unknown tool 'lazy'"
