"""Native tools: a C program compiled here with gcc, and shell scripts, run through the executor."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from edge.tools.contain import Containment
from edge.tools.execute import Executor
from edge.tools.policy import Policy
from edge.tools.runtimes.load import load_declared
from edge.tools.runtimes.native import NativeRuntime

from .test_node import alive, executor_for

pytestmark = pytest.mark.usefixtures("no_child_left")

#: Hard limit on any one test's waits (seconds of the real clock).
LIMIT = 30

SCHEMA = """
[args]
type = "object"
properties.width = { type = "integer" }
properties.label = { type = "string" }
properties.flag = { type = "boolean" }
"""

# Reads the whole call from stdin; answers with its length and its arguments.
C_SOURCE = r"""
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    char buf[65536];
    size_t total = 0, n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        total += n;
    printf("{\"output\": \"read %zu bytes\", \"argv\": [", total);
    for (int i = 1; i < argc; i++) {
        printf("%s\"", i > 1 ? ", " : "");
        for (const char *p = argv[i]; *p; p++) {
            if (*p == '"' || *p == '\\') putchar('\\');
            putchar(*p);
        }
        putchar('"');
    }
    printf("]}\n");
    return 0;
}
"""


def write_native(tools: Path, name: str, entry: str, extra: str = "") -> Path:
    directory = tools / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tool.toml").write_text(
        f'name = "{name}"\ndescription = "native test tool"\nruntime = "native"\n'
        f'entry = "{entry}"\n{extra}'
    )
    return directory


def write_script(directory: Path, name: str, body: str, mode: int = 0o755) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(mode)
    return path


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


async def call(executor: Executor, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    with trio.fail_after(LIMIT):
        return await executor.call(name, args or {}, approved=None, call_id=5)


async def test_a_compiled_c_tool(tools: Path, workspace: Path, containment: Containment) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    directory = write_native(
        tools, "measure", "bin/measure", 'argv = ["--width={width}", "{label}", "{{x}}"]\n' + SCHEMA
    )
    (directory / "bin").mkdir()
    (directory / "measure.c").write_text(C_SOURCE)
    with trio.fail_after(120):
        built = await trio.run_process(
            [gcc, "-O1", "-o", str(directory / "bin" / "measure"), str(directory / "measure.c")],
            capture_stdout=True, capture_stderr=True, check=False,
        )
    assert built.returncode == 0, built.stderr
    executor, found = executor_for(tools, workspace, containment)
    assert found[0].problem is None
    result = await call(executor, "measure", {"width": 640, "label": 'a "b" c'})
    line = b'{"tool": "measure", "args": {"width": 640, "label": "a \\"b\\" c"}, "callId": 5}\n'
    assert result == {
        "output": f"read {len(line)} bytes",
        "argv": ["--width=640", 'a "b" c', "{x}"],
    }


async def test_a_script_with_an_argv_template(tools: Path, workspace: Path, containment: Containment) -> None:
    directory = write_native(tools, "tpl", "run.sh", 'argv = ["{label}", "-n{width}", "{flag}"]\n' + SCHEMA)
    write_script(directory, "run.sh", """\
        printf '{"output": "%s|%s|%s|%s", "cwd": "%s"}' "$1" "$2" "$3" "$#" "$(pwd)"
    """)
    executor, _ = executor_for(tools, workspace, containment)
    # Nothing is re-split or expanded: no shell sits between the template and the program.
    result = await call(executor, "tpl", {"label": "two words $HOME *", "width": 3, "flag": True})
    assert result == {"output": "two words $HOME *|-n3|true|3", "cwd": os.path.realpath(directory)}
    missing = await call(executor, "tpl", {"label": "x"})
    assert missing == {"error": "tpl: argument '-n{width}' needs the arg 'width', not given"}
    nul = await call(executor, "tpl", {"label": "a\x00b", "width": 1, "flag": False})
    assert nul == {"error": "tpl: argument '{label}' would hold a NUL character"}


async def test_a_failing_native_tool(tools: Path, workspace: Path, containment: Containment) -> None:
    directory = write_native(tools, "fails", "run.sh")
    write_script(directory, "run.sh", """\
        echo "reading the input" >&2
        echo "disk full: /var/x" >&2
        exit 4
    """)
    executor, _ = executor_for(tools, workspace, containment)
    assert await call(executor, "fails") == {
        "error": "fails exited with status 4: reading the input | disk full: /var/x"
    }


async def test_a_native_tool_killed_by_a_signal(tools: Path, workspace: Path, containment: Containment) -> None:
    directory = write_native(tools, "dies", "run.sh")
    write_script(directory, "run.sh", "kill -SEGV $$\n")
    executor, _ = executor_for(tools, workspace, containment)
    assert await call(executor, "dies") == {"error": "dies was killed by SIGSEGV"}


async def test_a_background_process_of_a_script_ends_with_the_call(
    tools: Path, workspace: Path, containment: Containment
) -> None:
    directory = write_native(tools, "bg", "run.sh")
    write_script(directory, "run.sh", """\
        setsid sleep 1000 </dev/null >/dev/null 2>&1 &
        echo $! > "$EDGE_WORKSPACE/child"
        echo '{"output": "done"}'
    """)
    executor, _ = executor_for(tools, workspace, containment)
    assert await call(executor, "bg") == {"output": "done"}
    assert not alive(int((workspace / "child").read_text()))


def test_a_non_executable_entry_is_shown_invalid(tools: Path, workspace: Path) -> None:
    directory = write_native(tools, "plain", "run.sh")
    write_script(directory, "run.sh", "echo '{}'\n", mode=0o644)
    found = load_declared([tools], Policy.create(workspace), {"native": NativeRuntime()})
    entry = Path(os.path.realpath(directory)) / "run.sh"
    assert found[0].status == "invalid"
    assert found[0].problem == f"entry run.sh is not executable (chmod +x {entry})"
    (directory / "run.sh").unlink()
    found = load_declared([tools], Policy.create(workspace), {"native": NativeRuntime()})
    assert found[0].problem == f"entry run.sh does not exist in {os.path.realpath(directory)}"


async def test_an_entry_that_cannot_be_executed(tools: Path, workspace: Path, containment: Containment) -> None:
    directory = write_native(tools, "junk", "junk.bin")
    (directory / "junk.bin").write_bytes(b"\x7fELF not really")
    (directory / "junk.bin").chmod(0o755)
    executor, _ = executor_for(tools, workspace, containment)
    result = await call(executor, "junk")
    # Refused by exec, in the child (behind the wrapper that joins the cgroup) or in Popen.
    assert result["error"].startswith("junk")
    assert "Exec format error" in result["error"]
