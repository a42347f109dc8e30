"""How edge was installed, the installer command for each way, and running an installer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Final

import pytest
from packaging.version import Version

from edge.errors import UpdateError
from edge.update.install import (
    Command,
    Installation,
    Method,
    detect_installation,
    find_installer,
    installer_command,
    run_installer,
    verify_installed,
)

from .kit import NEW, OLD, make_venv, sha256, site_packages, snapshot, version_of

#: Seconds for a killed process to be gone on a busy machine (a bound on failure).
GONE_WITHIN: Final = 30.0


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path], deps: Path) -> Path:
    """A venv with edge 0.1.0, shared by this module's tests (none changes it)."""
    return make_venv(tmp_path_factory.mktemp("install") / "venv", wheels[OLD], deps)


def test_this_checkout_is_an_editable_install_and_refused_saying_what_to_run() -> None:
    here = detect_installation()
    repo = Path(__file__).resolve().parents[2]
    assert here.method is Method.EDITABLE
    assert here.problem is not None
    assert f"editable install of the checkout {repo}" in here.problem
    assert f"git -C {repo} pull && {sys.executable} -m pip install -e {repo}" in here.problem
    with pytest.raises(UpdateError, match="editable install"):
        find_installer(here)


def test_a_venv_holding_a_wheel_is_updated_with_pip_and_hashes(venv: Path, tmp_path: Path) -> None:
    found = detect_installation(prefix=venv, python=venv / "bin" / "python", path=[])
    assert found.method is Method.VENV
    assert found.problem is None
    assert str(found.version) == OLD
    wheel = tmp_path / "edge-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"not really")
    command = installer_command(
        found, wheel, "ab" * 32, spec="edge==0.2.0", environ={"PATH": "/bin", "EDGE_TOKEN": "t"}
    )
    requirements = tmp_path / f"{wheel.name}.requirements.txt"
    python = str(venv / "bin" / "python")
    assert command.argv == (
        python, "-I", "-m", "pip", "install", "--quiet", "--require-hashes", "--no-input",
        "-r", str(requirements),
    )  # fmt: skip
    assert command.cwd == tmp_path  # the wheel's directory, never the caller's
    assert command.version_argv[:3] == (python, "-I", "-c")
    assert requirements.read_text() == f"edge @ {wheel.as_uri()} --hash=sha256:{'ab' * 32}\n"
    assert "EDGE_TOKEN" not in command.env
    assert command.files == (requirements,)


def test_pip_itself_refuses_a_wheel_whose_hash_differs(
    venv: Path, wheels: dict[str, Path], tmp_path: Path
) -> None:
    before = snapshot(venv)
    wheel = Path(shutil.copy2(wheels["0.2.0"], tmp_path))
    command = installer_command(_installation(venv), wheel, "0" * 64, spec="edge==0.2.0")
    lines: list[str] = []
    with pytest.raises(UpdateError, match=r"pip failed \(exit 1\)") as caught:
        run_installer(command, lines.append)
    assert "DO NOT MATCH THE HASHES" in str(caught.value)
    assert lines
    assert not command.files[0].exists()
    assert snapshot(venv) == before
    assert version_of(venv / "bin" / "edge") == f"edge {OLD}"
    assert sha256(wheel) != "0" * 64


def _installation(venv: Path) -> Installation:
    return detect_installation(prefix=venv, python=venv / "bin" / "python", path=[])


def test_a_pipx_venv_is_updated_with_pipx_in_its_own_home(venv: Path, tmp_path: Path) -> None:
    home = tmp_path / "pipx"
    prefix = home / "venvs" / "edge"
    prefix.parent.mkdir(parents=True)
    prefix.symlink_to(venv, target_is_directory=True)
    (venv / "pipx_metadata.json").write_text(json.dumps({"main_package": {"suffix": "2"}}))
    try:
        found = detect_installation(prefix=prefix, python=prefix / "bin" / "python", path=[])
    finally:
        (venv / "pipx_metadata.json").unlink()
    assert found.method is Method.PIPX
    assert found.suffix == "2"
    pipx = tmp_path / "bin" / "pipx"
    pipx.parent.mkdir()
    pipx.write_text("#!/bin/sh\n")
    pipx.chmod(0o755)
    wheel = tmp_path / "edge-0.2.0-py3-none-any.whl"
    command = installer_command(found, wheel, "ab" * 32, spec="edge==0.2.0",
                                environ={"PATH": str(pipx.parent)})  # fmt: skip
    assert command.argv == (str(pipx), "install", "--force", "--suffix", "2", str(wheel))
    assert command.env["PIPX_HOME"] == str(home)
    assert command.cwd == tmp_path
    # what pipx made again is asked, not the Python that runs edge update
    assert command.version_argv[:3] == (str(prefix / "bin" / "python"), "-I", "-c")
    with pytest.raises(UpdateError, match="installed with pipx, which is not on PATH"):
        find_installer(found, {"PATH": str(tmp_path / "nothing"), "HOME": str(tmp_path)})


def test_a_uv_tool_is_updated_with_uv_where_its_receipt_says(venv: Path, tmp_path: Path) -> None:
    receipt = venv / "uv-receipt.toml"
    bin_dir = tmp_path / "uv-bin"
    receipt.write_text(
        f'[tool]\nrequirements = [{{ name = "edge" }}]\n'
        f'entrypoints = [{{ name = "edge", install-path = "{bin_dir}/edge" }}]\n'
    )
    try:
        found = _installation(venv)
    finally:
        receipt.unlink()
    assert found.method is Method.UV
    assert found.bin_dir == bin_dir
    uv = tmp_path / "uv"
    uv.write_text("#!/bin/sh\n")
    uv.chmod(0o755)
    wheel = tmp_path / "edge-0.2.0-py3-none-any.whl"
    command = installer_command(found, wheel, "ab" * 32, spec="edge==0.2.0",
                                environ={"PATH": str(tmp_path)})  # fmt: skip
    assert command.argv == (str(uv), "tool", "install", "--force", str(wheel))
    assert command.cwd == tmp_path
    assert command.version_argv[0] == str(venv / "bin" / "python")
    assert command.env["UV_TOOL_DIR"] == str(venv.parent)
    assert command.env["UV_TOOL_BIN_DIR"] == str(bin_dir)


def test_edge_of_the_system_python_is_refused(venv: Path) -> None:
    found = detect_installation(
        prefix=sys.base_prefix, base_prefix=sys.base_prefix, path=[str(site_packages(venv))]
    )
    assert found.method is Method.SYSTEM
    assert found.problem is not None
    assert "system's package manager" in found.problem


def test_edge_outside_the_environment_is_refused(venv: Path, tmp_path: Path) -> None:
    """A venv that finds edge only elsewhere on its path (a user site, say)."""
    bare = tmp_path / "bare"
    (bare / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
     / "site-packages").mkdir(parents=True)  # fmt: skip
    found = detect_installation(prefix=bare, path=[str(site_packages(venv))])
    assert found.method is Method.SYSTEM
    assert f"installed in {site_packages(venv)}" in str(found.problem)


def test_edge_run_from_source_is_refused(tmp_path: Path) -> None:
    found = detect_installation(prefix=tmp_path, path=[str(tmp_path)])
    assert found.method is Method.SOURCE
    assert "runs from source" in str(found.problem)


def _script(code: str) -> Command:
    return Command((sys.executable, "-c", code), {"PATH": "/usr/bin:/bin"})


def test_an_installer_s_output_goes_line_by_line_and_a_failure_quotes_its_end() -> None:
    lines: list[str] = []
    code = "import sys\nfor i in range(40): print('line', i)\nsys.exit(3)"
    with pytest.raises(UpdateError, match=r"python[0-9.]* failed \(exit 3\):\nline 25\n") as caught:
        run_installer(_script(code), lines.append)
    assert lines == [f"line {i}" for i in range(40)]
    assert str(caught.value).endswith("line 39")
    assert "line 24" not in str(caught.value)


def test_pip_refusing_unhashed_dependencies_says_what_to_run_instead(tmp_path: Path) -> None:
    said = "ERROR: In --require-hashes mode, all requirements must have their versions pinned"
    command = Command((sys.executable, "-c", f"print({said!r}); raise SystemExit(1)"), {},
                      manual="/v/bin/python -m pip install edge==0.2.0")  # fmt: skip
    with pytest.raises(
        UpdateError, match="needs dependencies that are not installed here"
    ) as caught:
        run_installer(command, lambda line: None)
    assert "install it yourself (/v/bin/python -m pip install edge==0.2.0)" in str(caught.value)


def test_an_installer_that_hangs_is_stopped() -> None:
    with pytest.raises(UpdateError, match=r"did not finish within 0.5 s and was stopped"):
        run_installer(_script("import time; print('working', flush=True); time.sleep(60)"),
                      lambda line: None, timeout=0.5)  # fmt: skip


def test_an_installer_that_is_not_there_is_an_update_error(tmp_path: Path) -> None:
    with pytest.raises(UpdateError, match="cannot run"):
        run_installer(Command((str(tmp_path / "nope"),), {}), lambda line: None)


def test_a_pip_py_in_the_working_directory_is_not_run(
    venv: Path, wheels: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m pip`` puts the working directory first on ``sys.path``: a ``pip.py`` there
    (in /tmp, in a checkout of someone else's code) would run as the user and "succeed"."""
    shared = tmp_path / "shared"
    shared.mkdir()
    planted = tmp_path / "planted-pip-ran"
    (shared / "pip.py").write_text(f"open({str(planted)!r}, 'w').close()\n")
    monkeypatch.chdir(shared)  # where `edge update` happens to be run from
    private = tmp_path / "downloads"
    private.mkdir()
    wheel = Path(shutil.copy2(wheels[NEW], private))
    # A wrong hash: the real pip refuses it, and the shared venv is left as it is.
    command = installer_command(_installation(venv), wheel, "0" * 64, spec="edge==0.2.0")
    with pytest.raises(UpdateError, match=r"pip failed \(exit 1\)"):
        run_installer(command, lambda line: None)
    assert not planted.exists()
    assert version_of(venv / "bin" / "edge") == f"edge {OLD}"


def test_what_the_environment_holds_is_checked_after_the_installer(
    venv: Path, tmp_path: Path
) -> None:
    wheel = tmp_path / "edge-0.2.0-py3-none-any.whl"
    command = installer_command(_installation(venv), wheel, "ab" * 32, spec="edge==0.2.0")
    verify_installed(command, Version(OLD))
    with pytest.raises(UpdateError) as caught:
        verify_installed(command, Version(NEW))
    assert str(caught.value) == (
        f"pip exited 0, but {venv / 'bin' / 'python'} reports edge {OLD}, not {NEW}: "
        "the update did not take effect"
    )


def test_a_requirements_file_that_cannot_be_written_is_an_update_error(
    venv: Path, tmp_path: Path
) -> None:
    wheel = tmp_path / "edge-0.2.0-py3-none-any.whl"
    (tmp_path / f"{wheel.name}.requirements.txt").mkdir()  # in the way, even for root
    with pytest.raises(UpdateError, match=f"cannot write {tmp_path}: "):
        installer_command(_installation(venv), wheel, "ab" * 32, spec="edge==0.2.0")


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (gone, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def test_an_installer_that_hangs_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    """pip runs build backends and other children; a timeout kills them all, not pip alone
    (a child left behind could go on changing the environment)."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to see whether the installer's child is gone")
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        "quiet = {'stdout': subprocess.DEVNULL, 'stderr': subprocess.DEVNULL}\n"
        "child = subprocess.Popen(['sleep', '60'], **quiet)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('working', flush=True)\n"
        "time.sleep(60)\n"
    )
    try:
        with pytest.raises(UpdateError, match=r"did not finish within 0.5 s and was stopped"):
            run_installer(_script(code), lambda line: None, timeout=0.5)
        child = int(pid_file.read_text())
        deadline = time.monotonic() + GONE_WITHIN
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child), "the installer's child outlived the timeout"
    finally:
        if pid_file.exists() and not _gone(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
