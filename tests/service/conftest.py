"""What the service tests share: a temporary HOME, the ``edge`` CLI run in it, and stand-ins
for the two things this machine cannot run.

The CLI runs as a real subprocess with ``HOME`` a temporary directory and the XDG
variables unset, so it writes where a user's home would hold the unit, and the
real ``systemctl``, ``journalctl`` and ``systemd-analyze`` act on that home.

Two executables stand in for what cannot run here, and only for that:

- ``systemctl`` with a running user manager: a user manager needs systemd as PID 1
  (or a sandbox of cgroup and mount namespaces, too invasive for a test suite). The
  stand-in answers the calls that need a manager (``show``, ``daemon-reload``,
  ``restart``, ``reset-failed``) from a small state file, hands ``enable``,
  ``disable`` and ``is-enabled`` (which work without a manager) to the real
  systemctl, and acts only when ``$XDG_RUNTIME_DIR/systemd/private`` exists, as the
  manager's socket would; otherwise it is the real systemctl, untouched.
- ``launchctl``: macOS only. The stand-in records its calls and answers ``print``,
  ``print-disabled``, ``bootstrap``, ``bootout`` and ``enable`` as launchctl does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..conftest import edge_cmd

#: The stand-in systemctl (its calls are appended, one JSON list a line, to $SHIM_LOG).
SYSTEMCTL_SHIM = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
real = os.environ["SHIM_REAL_SYSTEMCTL"]
runtime = os.environ.get("XDG_RUNTIME_DIR", "")
if not runtime or not os.path.exists(os.path.join(runtime, "systemd", "private")):
    os.execv(real, [real, *args])
with open(os.environ["SHIM_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
state_file = os.path.join(runtime, "shim-state.json")
state = {{"active": False, "pid": 0}}
if os.path.exists(state_file):
    with open(state_file) as f:
        state = json.load(f)
def save():
    with open(state_file, "w") as f:
        json.dump(state, f)
assert args[0] == "--user", args
verb, rest = args[1], args[2:]
if verb == "show" and "--property=Version" in rest:
    print("252")
elif verb == "show":
    import subprocess
    enabled = subprocess.run(
        [real, "--user", "is-enabled", *rest[:1]], capture_output=True, text=True
    )
    print("UnitFileState=" + (enabled.stdout.strip() or "disabled"))
    print("ActiveState=" + ("active" if state["active"] else "inactive"))
    print("SubState=" + ("running" if state["active"] else "dead"))
    print("MainPID=" + str(state["pid"]))
    print("Result=success")
elif verb in ("restart", "start"):
    if os.environ.get("SHIM_FAIL_START"):
        sys.exit("Job for edge.service failed because the control process exited with error code.")
    state.update(active=True, pid=state["pid"] + 4242)
    save()
elif verb == "stop":
    state.update(active=False, pid=0)
    save()
elif verb in ("enable", "disable", "is-enabled"):
    if "--now" in rest:
        rest.remove("--now")
        if verb == "disable":
            state.update(active=False, pid=0)
            save()
    os.execv(real, [real, "--user", verb, *rest])
elif verb not in ("daemon-reload", "reset-failed"):
    sys.exit("the stand-in systemctl does not know " + verb)
"""

#: The stand-in launchctl (calls to $SHIM_LOG; state beside it). As launchd does, it lets a
#: job go some time after ``bootout`` returned: for the next $SHIM_LEAVING calls of ``print``
#: or ``bootstrap`` the job is still there (``bootstrap`` fails with 5: Input/output error);
#: and the first $SHIM_BOOTSTRAP_BUSY bootstraps of a job gone fail with 37 (Operation already
#: in progress).
#: Calls, not seconds, so that no test depends on timing.
LAUNCHCTL_SHIM = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
log = os.environ["SHIM_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(args) + "\\n")
state_file = log + ".state"
state = {{"loaded": False, "leaving": 0, "busy": 0}}
if os.path.exists(state_file):
    with open(state_file) as f:
        state = json.load(f)
def save():
    with open(state_file, "w") as f:
        json.dump(state, f)
verb = args[0]
leaving = False
if verb in ("print", "bootstrap") and state["leaving"] > 0:
    state["leaving"] -= 1
    leaving = True
    save()
loaded = state["loaded"] or leaving
if verb == "print":
    if not loaded:
        print("Bad request.\\nCould not find service in domain for port", file=sys.stderr)
        sys.exit(113)
    print(args[1] + " = {{\\n\\tstate = " + ("exiting" if leaving else "running"))
    print("\\tpid = 4242\\n\\tlast exit code = (never exited)\\n}}")
elif verb == "print-disabled":
    print("disabled services = {{\\n\\t\\"com.apple.x\\" => disabled\\n}}")
elif verb == "bootstrap":
    if loaded:
        print("Bootstrap failed: 5: Input/output error", file=sys.stderr)
        sys.exit(5)
    if state["busy"] < int(os.environ.get("SHIM_BOOTSTRAP_BUSY", "0")):
        state["busy"] += 1
        save()
        print("Bootstrap failed: 37: Operation already in progress", file=sys.stderr)
        sys.exit(37)
    state["loaded"] = True
    save()
elif verb == "bootout":
    if not loaded:
        print("Boot-out failed: 3: No such process", file=sys.stderr)
        sys.exit(3)
    state.update(loaded=False, leaving=int(os.environ.get("SHIM_LEAVING", "0")))
    save()
elif verb != "enable":
    sys.exit("the stand-in launchctl does not know " + verb)
"""


def write_shim(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text.format(python=sys.executable), encoding="utf-8")
    path.chmod(0o755)
    return path


def calls(log: Path) -> list[list[str]]:
    """What a stand-in was called with, in order."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def env(tmp_path: Path, home: Path) -> dict[str, str]:
    """The CLI's environment: HOME temporary, XDG variables unset, no token, no session bus."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "DBUS_"))}
    env.pop("EDGE_TOKEN", None)
    env["HOME"] = str(home)
    return env


@pytest.fixture
def real_systemctl() -> str:
    path = shutil.which("systemctl")
    if path is None:
        pytest.skip("systemctl is not installed (enable/disable without a manager are its own)")
    return path


@pytest.fixture
def manager(tmp_path: Path, env: dict[str, str], real_systemctl: str) -> Path:
    """A "running user manager": the stand-in systemctl first on PATH, and a runtime
    directory with the socket it looks for. The stand-in's call log."""
    runtime = tmp_path / "run"
    (runtime / "systemd").mkdir(parents=True, mode=0o700)
    (runtime / "systemd" / "private").touch()
    log = tmp_path / "systemctl.log"
    shims = tmp_path / "shims"
    write_shim(shims, "systemctl", SYSTEMCTL_SHIM)
    env["PATH"] = f"{shims}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["XDG_RUNTIME_DIR"] = str(runtime)
    env["SHIM_LOG"] = str(log)
    env["SHIM_REAL_SYSTEMCTL"] = real_systemctl
    return log


def run_edge(*args: str, env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """``edge ARGS`` as a user runs it, in ``env``; bounded so a hang fails the test."""
    return subprocess.run(
        edge_cmd(*args), capture_output=True, text=True, env=env, timeout=60, check=False, **kw
    )


def unit_path(home: Path) -> Path:
    return home / ".config" / "systemd" / "user" / "edge.service"
