"""Node tools with the real ``node``: the stdio contract, failures, timeouts, cancels, containment.

Each tool is a directory with a ``tool.toml`` and an ``index.js`` written here,
loaded by ``load_declared`` and called through the real executor, contained
by a real ``Containment`` (a cgroup per call where this machine has one, else
the daemon as child subreaper). Whatever a tool starts must be gone when its
call returns: the tools write the pids they started to files, and the tests
look those up in /proc.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.daemon import child_environment
from edge.errors import ConfigError
from edge.tools.contain import Containment
from edge.tools.execute import Executor
from edge.tools.policy import Policy
from edge.tools.procfs import probe_cgroup
from edge.tools.registry import ToolRegistry
from edge.tools.runtimes.base import Runtime
from edge.tools.runtimes.load import DeclaredTool, load_declared, report, tool_spec
from edge.tools.runtimes.native import NativeRuntime
from edge.tools.runtimes.node import NodeRuntime

from ...conftest import until

pytestmark = [
    pytest.mark.usefixtures("no_child_left"),
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

#: Hard limit on any one test's waits (seconds of the real clock).
LIMIT = 30
#: From cancel (or timeout) to the call's return, at most (seconds): generous, for a
#: loaded machine; a looping node process dies at SIGTERM, well within TERM_GRACE.
STOPS_WITHIN = 2.0

READ_CALL = """\
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (c) => { input += c; });
process.stdin.on("end", () => main(JSON.parse(input)));
"""


def write_tool(tools: Path, name: str, js: str, extra: str = "", *, read: bool = True) -> Path:
    directory = tools / name
    directory.mkdir(parents=True)
    (directory / "tool.toml").write_text(
        f'name = "{name}"\ndescription = "test tool {name}"\nruntime = "node"\n'
        f'entry = "index.js"\n{extra}'
    )
    (directory / "index.js").write_text((READ_CALL if read else "") + textwrap.dedent(js))
    return directory


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    path = tmp_path / "tools"
    path.mkdir()
    return path


@pytest.fixture
def containment(tmp_path: Path) -> Iterator[Containment]:
    handle = Containment.create(tmp_path / "state")
    try:
        yield handle
    finally:
        handle.close()


def executor_for(
    tools: Path,
    workspace: Path,
    processes: Containment | None,
    runtimes: dict[str, Runtime] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Executor, list[DeclaredTool]]:
    """An executor holding the valid tools of ``tools``, as ``build_registry`` makes it."""
    policy = Policy.create(workspace)
    runtimes = runtimes or {"node": NodeRuntime(), "native": NativeRuntime()}
    found = load_declared([tools], policy, runtimes)
    registry = ToolRegistry()
    for tool in found:
        if tool.problem is None:
            assert tool.runtime is not None
            registry.add(tool_spec(tool, runtimes[tool.runtime]))
    env = child_environment() if env is None else env
    return Executor(registry, policy, env, processes=processes), found


async def call(executor: Executor, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    with trio.fail_after(LIMIT):
        return await executor.call(name, args or {}, approved=None, call_id="c-1")


async def test_a_tool_answers(tools: Path, workspace: Path, containment: Containment) -> None:
    directory = write_tool(tools, "greet", """
        function main(call) {
          process.stdout.write(JSON.stringify({
            output: `Hello, ${call.args.name}!`, call, cwd: process.cwd(),
          }));
        }
    """, '[args]\ntype = "object"\nrequired = ["name"]\nproperties.name = { type = "string" }\n')
    executor, found = executor_for(tools, workspace, containment)
    assert report(found) == [{
        "name": "greet", "runtime": "node", "directory": str(directory), "status": "ok",
        "problem": None,
    }]
    result = await call(executor, "greet", {"name": "Ada \u00e9\udc80"})
    assert result["output"] == "Hello, Ada \u00e9\udc80!"
    assert result["call"] == {"tool": "greet", "args": {"name": "Ada \u00e9\udc80"}, "callId": "c-1"}
    assert result["cwd"] == os.path.realpath(directory)
    spec = executor.registry.get("greet")
    assert spec is not None
    assert spec.source == "node:greet"
    bad = await call(executor, "greet", {"name": 3})
    assert bad["error"].startswith("invalid args for greet: \"name\": 3 is not of type 'string'")


async def test_an_answer_without_output_gets_its_json_as_output(
    tools: Path, workspace: Path, containment: Containment
) -> None:
    write_tool(tools, "count", "function main() { console.log(JSON.stringify({count: 3})); }")
    executor, _ = executor_for(tools, workspace, containment)
    assert await call(executor, "count") == {"output": '{"count": 3}', "count": 3}


@pytest.mark.parametrize(
    ("js", "error"),
    [
        ('function main() { console.log(JSON.stringify({error: "no such file: x.txt"})); }',
         "fails: no such file: x.txt"),
        ('function main() { console.error("first"); console.error("the reason"); process.exit(3); }',
         "fails exited with status 3: first | the reason"),
        ('function main() { console.log(JSON.stringify({error: "bad input"})); process.exit(1); }',
         "fails: bad input"),
        ('function main() { console.log("hello there"); }',
         "fails: stdout is not one JSON object (Expecting value: line 1 column 1 (char 0); "
         "it begins 'hello there'); log to stderr, not stdout"),
        ('function main() { console.log("[1, 2]"); }',
         "fails: the answer on stdout must be a JSON object, not an array ('[1, 2]')"),
        ('function main() { console.log("{}"); console.log("{}"); }',
         "fails: stdout is not one JSON object (Extra data"),
        ("function main() { }", "fails: printed nothing on stdout"),
        ('function main() { console.log(JSON.stringify({output: 3})); }',
         'fails: "output" must be a string, not a number'),
        ("function main() { throw new Error('boom'); }", "fails exited with status 1: "),
        ("function main() { process.kill(process.pid, 'SIGKILL'); }", "fails was killed by SIGKILL"),
    ],
    ids=["error-json", "exit-code", "error-and-exit", "garbage", "array", "two-objects",
         "nothing", "output-type", "throws", "killed"],
)
async def test_failures_are_clear_errors(
    tools: Path, workspace: Path, containment: Containment, js: str, error: str
) -> None:
    write_tool(tools, "fails", js)
    executor, _ = executor_for(tools, workspace, containment)
    result = await call(executor, "fails")
    assert set(result) == {"error"}
    assert error in result["error"]
    assert "Traceback" not in result["error"]


async def test_the_environment_holds_only_basics_and_declared_names(
    tools: Path, workspace: Path, containment: Containment
) -> None:
    write_tool(tools, "env", "function main() { console.log(JSON.stringify({output: '', env: process.env})); }",
               'env = ["WANTED", "EDGE_TOKEN_NOT", "ABSENT"]\n')
    daemon_env = {
        "PATH": os.environ["PATH"], "HOME": "/home/x", "LANG": "C.UTF-8", "LC_TIME": "C",
        "WANTED": "yes", "SECRET_KEY": "s3cret", "EDGE_TOKEN": "tok", "EDGE_TOKEN_NOT": "fine",
    }
    executor, _ = executor_for(tools, workspace, containment, env=daemon_env)
    env = (await call(executor, "env"))["env"]
    assert env.pop("EDGE_CALL")  # the call's containment token
    env.pop("PWD", None)  # set by the /bin/sh that joins the call's cgroup, where there is one
    assert env == {
        "PATH": os.environ["PATH"], "HOME": "/home/x", "LANG": "C.UTF-8", "LC_TIME": "C",
        "WANTED": "yes", "EDGE_TOKEN_NOT": "fine", "EDGE_WORKSPACE": str(Policy.create(workspace).workspace),
    }


async def test_a_tool_that_reads_no_stdin_does_not_block(
    tools: Path, workspace: Path, containment: Containment
) -> None:
    write_tool(tools, "deaf", "console.log(JSON.stringify({output: 'ok'}));", read=False)
    executor, _ = executor_for(tools, workspace, containment)
    # Far more than a pipe holds: the writer meets a closed pipe, not a full one forever.
    assert await call(executor, "deaf", {"blob": "x" * 4_000_000}) == {"output": "ok"}


LOOP = """\
const fs = require("fs");
fs.writeFileSync(process.env.EDGE_WORKSPACE + "/pid", String(process.pid));
for (;;) {}
"""


async def test_a_looping_tool_is_stopped_by_its_timeout(
    tools: Path, workspace: Path, containment: Containment
) -> None:
    write_tool(tools, "loop", LOOP, "timeout = 1\n", read=False)
    executor, _ = executor_for(tools, workspace, containment)
    start = trio.current_time()
    result = await call(executor, "loop")
    took = trio.current_time() - start
    assert result == {"error": "loop timed out after 1 s", "timed_out": True}
    assert 1.0 <= took < 1.0 + STOPS_WITHIN
    assert not alive(int((workspace / "pid").read_text()))


@pytest.mark.parametrize("ignores_term", [False, True], ids=["loops", "ignores-sigterm"])
async def test_a_looping_tool_is_stopped_by_a_cancel(
    tools: Path, workspace: Path, containment: Containment, ignores_term: bool
) -> None:
    js = ("process.on('SIGTERM', () => {});\n" if ignores_term else "") + LOOP
    write_tool(tools, "loop", js, read=False)
    executor, _ = executor_for(tools, workspace, containment)
    pid_file = workspace / "pid"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(executor.call, "loop", {}, approved=None))
            await until(lambda: pid_file.exists() and pid_file.read_text() != "", poll=0.01)
            pid = int(pid_file.read_text())
            start = trio.current_time()
            nursery.cancel_scope.cancel()
        took = trio.current_time() - start
    # SIGTERM ends the plain loop at once; the one that ignores it waits out TERM_GRACE.
    assert took < STOPS_WITHIN
    assert not alive(pid)


@pytest.fixture(params=["cgroup", "subreaper"])
def each_containment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Containment]:
    if request.param == "cgroup" and isinstance(why := probe_cgroup(), str):
        pytest.skip(f"no cgroup v2 for calls here: {why}")
    try:
        handle = Containment.create(tmp_path / "state", mechanism=request.param)
    except ConfigError as exc:
        pytest.skip(str(exc))
    try:
        yield handle
    finally:
        handle.close()


DETACHED = """\
const { spawn } = require("child_process");
const fs = require("fs");
function main(call) {
  const child = spawn(call.args.how === "setsid" ? "setsid" : "sleep",
                      call.args.how === "setsid" ? ["sleep", "1000"] : ["1000"],
                      { detached: true, stdio: "ignore" });
  child.unref();
  fs.writeFileSync(process.env.EDGE_WORKSPACE + "/child", String(child.pid));
  console.log(JSON.stringify({ output: "left one behind" }));
}
"""


@pytest.mark.parametrize("how", ["detached", "setsid"])
async def test_a_background_child_ends_with_the_call(
    tools: Path, workspace: Path, each_containment: Containment, how: str
) -> None:
    write_tool(tools, "leaver", DETACHED)
    executor, _ = executor_for(tools, workspace, each_containment)
    assert await call(executor, "leaver", {"how": how}) == {"output": "left one behind"}
    child = int((workspace / "child").read_text())
    # The detached child (its own session, re-parented away from node) is gone already.
    assert not alive(child)


async def test_a_background_child_ends_with_a_cancelled_call(
    tools: Path, workspace: Path, each_containment: Containment
) -> None:
    write_tool(tools, "leaver", DETACHED.replace(
        'console.log(JSON.stringify({ output: "left one behind" }));', "setInterval(() => {}, 1000);"
    ))
    executor, _ = executor_for(tools, workspace, each_containment)
    child_file = workspace / "child"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(executor.call, "leaver", {"how": "detached"}, approved=None))
            await until(lambda: child_file.exists() and child_file.read_text() != "", poll=0.01)
            nursery.cancel_scope.cancel()
    assert not alive(int(child_file.read_text()))


def test_a_missing_node_is_shown_invalid(tools: Path, workspace: Path) -> None:
    write_tool(tools, "greet", "function main() {}")
    found = load_declared([tools], Policy.create(workspace), {"node": NodeRuntime(node=None)})
    assert [(t.name, t.status, t.problem) for t in found] == [
        ("greet", "invalid", "node is not installed (not on PATH)")
    ]


def test_a_missing_entry_is_shown_invalid(tools: Path, workspace: Path) -> None:
    directory = write_tool(tools, "greet", "")
    (directory / "index.js").unlink()
    (directory / "lib").mkdir()
    found = load_declared([tools], Policy.create(workspace), {"node": NodeRuntime()})
    assert found[0].problem == f"entry index.js does not exist in {os.path.realpath(directory)}"
    toml = (directory / "tool.toml").read_text().replace("index.js", "lib")
    (directory / "tool.toml").write_text(toml)
    found = load_declared([tools], Policy.create(workspace), {"node": NodeRuntime()})
    assert found[0].problem is not None
    assert found[0].problem.endswith("lib is not a regular file")


def test_loading_never_raises_and_reports_every_problem(tools: Path, workspace: Path, tmp_path: Path) -> None:
    write_tool(tools, "a_ok", "function main() {}")
    broken = tools / "b_broken"
    broken.mkdir()
    (broken / "tool.toml").write_text("name = [")
    twin = write_tool(tools, "c_twin", "function main() {}")
    (twin / "tool.toml").write_text((twin / "tool.toml").read_text().replace('"c_twin"', '"a_ok"'))
    builtin = write_tool(tools, "d_builtin", "function main() {}")
    (builtin / "tool.toml").write_text(
        (builtin / "tool.toml").read_text().replace('"d_builtin"', '"terminal"')
    )
    wasm = tools / "e_wasm"
    wasm.mkdir()
    (wasm / "tool.toml").write_text('name = "w"\ndescription = "w"\nruntime = "wasm"\nentry = "m.wasm"\n')
    (tools / "not_a_tool").mkdir()
    (tools / "stray.toml").write_text("")
    found = load_declared(
        [tools, tmp_path / "missing", tools], Policy.create(workspace), {"node": NodeRuntime()},
        reserved={"terminal"},
    )
    rows = {row["directory"].rsplit("/", 1)[1]: row for row in report(found)}
    assert list(rows) == ["a_ok", "b_broken", "c_twin", "d_builtin", "e_wasm"]
    assert rows["a_ok"]["status"] == "ok"
    assert rows["b_broken"]["name"] == "b_broken"
    assert rows["b_broken"]["runtime"] is None
    assert "tool.toml is not valid TOML" in rows["b_broken"]["problem"]
    assert rows["c_twin"]["problem"] == f"the name 'a_ok' is taken by the tool in {tools / 'a_ok'}"
    assert rows["d_builtin"]["problem"] == "the name 'terminal' is taken by a built-in tool"
    assert rows["e_wasm"]["problem"] == "no wasm runtime in this edge"
    assert {row["status"] for name, row in rows.items() if name != "a_ok"} == {"invalid"}


class BrokenRuntime:
    kind = "node"

    def validate(self, manifest: Any, policy: Policy) -> str | None:
        raise RuntimeError("bug in the runtime")

    async def run(self, manifest: Any, args: dict[str, Any], ctx: Any) -> dict[str, Any]:
        raise AssertionError("never called")


def test_a_runtime_that_fails_to_check_makes_the_tool_invalid(tools: Path, workspace: Path) -> None:
    write_tool(tools, "greet", "function main() {}")
    found = load_declared([tools], Policy.create(workspace), {"node": BrokenRuntime()})
    assert found[0].problem == "the node runtime failed to check it: RuntimeError: bug in the runtime"


async def test_many_calls_at_once(tools: Path, workspace: Path, containment: Containment) -> None:
    write_tool(tools, "echo", "function main(c) { console.log(JSON.stringify({output: String(c.args.i)})); }")
    executor, _ = executor_for(tools, workspace, containment)
    results: dict[int, dict[str, Any]] = {}

    async def one(i: int) -> None:
        results[i] = await call(executor, "echo", {"i": i})

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(one, i)
    assert results == {i: {"output": str(i)} for i in range(8)}


async def test_without_a_containment_the_group_is_swept(tools: Path, workspace: Path) -> None:
    write_tool(tools, "loop", LOOP, "timeout = 0.5\n", read=False)
    executor, _ = executor_for(tools, workspace, None)
    assert (await call(executor, "loop"))["timed_out"] is True
    pid = int((workspace / "pid").read_text())
    assert not alive(pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone


def test_the_answer_json_is_what_the_cloud_gets(tools: Path) -> None:
    # json.dumps of the contract's line is ASCII, whatever the args hold.
    from edge.tools.runtimes.manifest import load_manifest
    from edge.tools.runtimes.stdio import call_input

    directory = write_tool(tools, "x", "")
    line = call_input(load_manifest(directory), {"s": "\u00e9\udc80\n"}, 7)
    assert line.isascii()
    assert line.endswith(b"\n")
    assert json.loads(line) == {"tool": "x", "args": {"s": "\u00e9\udc80\n"}, "callId": 7}
