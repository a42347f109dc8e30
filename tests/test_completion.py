"""``edge completion SHELL``: each script loads in its real shell and completes edge's commands,
subcommands and options (bash through its completion function, fish through ``complete -C``,
zsh as far as it can be driven without a terminal: it parses and defines ``_edge``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import edge_cmd


def script(shell: str) -> str:
    done = subprocess.run(edge_cmd("completion", shell), capture_output=True, text=True, check=True)
    assert done.stderr == ""
    return done.stdout


def need(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{shell} is not installed (.ci/run installs it)")
        pytest.skip(f"{shell} is not installed: apt-get install {shell}")
    return path


def test_bash_completes_commands_subcommands_and_options(tmp_path: Path) -> None:
    bash = need("bash")
    (tmp_path / "edge.bash").write_text(script("bash"))
    probe = f"""
source {tmp_path / "edge.bash"}
complete -p edge
ask() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=(); _shtab_edge;
        echo "${{COMPREPLY[*]}}"; }}
ask edge as
ask edge service ""
ask edge ask --fo
ask edge update --allow
"""
    done = subprocess.run([bash, "--norc", "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "complete -o bashdefault -F _shtab_edge edge"
    assert lines[1] == "ask"
    assert lines[2].split() == ["install", "uninstall", "status", "logs"]
    assert lines[3] == "--format"
    assert lines[4] == "--allow-downgrade"


def test_fish_completes_commands_with_their_help(tmp_path: Path) -> None:
    fish = need("fish")
    (tmp_path / "edge.fish").write_text(script("fish"))
    done = subprocess.run(
        [fish, "--no-config", "-c",
         f'source {tmp_path / "edge.fish"}; complete -C "edge ser";'
         ' complete -C "edge completion "'],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = [line.split("\t")[0] for line in done.stdout.splitlines()]
    assert names[0] == "service"
    assert {"bash", "zsh", "fish"} <= set(names[1:])


def test_zsh_parses_the_script_and_gets_its_completion_function(tmp_path: Path) -> None:
    zsh = need("zsh")
    path = tmp_path / "_edge"
    text = script("zsh")
    path.write_text(text)
    assert text.startswith("#compdef edge")
    subprocess.run([zsh, "-n", str(path)], check=True)
    done = subprocess.run(
        [zsh, "-f", "-c",
         f"fpath=({tmp_path} $fpath); autoload -U compinit; compinit -u -D; "
         'echo "$_comps[edge]"; whence -w _edge'],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["_edge", "_edge: function"]  # compinit took it
    for command in ("ask", "chat", "service", "update", "completion"):
        assert f"{command}:" in text or f"'{command}'" in text or f'"{command}' in text


def test_an_unknown_shell_is_a_usage_error() -> None:
    done = subprocess.run(edge_cmd("completion", "tcsh"), capture_output=True, text=True)
    assert done.returncode == 2
    assert "invalid choice: 'tcsh'" in done.stderr
