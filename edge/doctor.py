"""``edge doctor``: whether this machine is set up to run edge, one check at a time.

Each check is a plain function returning a ``Check``: its name, whether it
passed, what it found and, when it failed, how to fix it. None raises: what
goes wrong while checking is the check's failure. ``examine`` runs them all
for a ``Subject`` (the flags ``edge doctor`` was given) and returns them in a
fixed order; the ones that wait on something outside edge (the sound server,
the control port, MCP servers, ``node``, the service manager) run
concurrently, each bounded by ``Subject.timeout`` (``CHECK_TIMEOUT``), and
the blocking ones in worker threads, so the whole examination takes about as
long as its slowest check. The modules the checks use are imported before the
clocks start: importing is not what a check times.

An MCP server that does not answer in time fails its check at the deadline, but
the SDK stops a stdio server on its own clock, shielded from cancellation (stdin
closed, SIGTERM two seconds later, SIGKILL two after that). ``examination``
therefore hands the checks over at once and lets that stopping finish in the
background: leaving its block waits for it, so no server outlives ``edge doctor``,
which prints its report first.

The checks: the native audio shim; the sound server and its default source
and monitor; the control port (free, or held by a running edge); the config
files (``config.toml``, ``mcp.json``, declared tools' ``tool.toml`` and plugins'
manifests, each problem named with its file); the token file's permissions
(never its content); each MCP server's connection; ``node``, where a node tool
or a node MCP server needs it; process containment; the user service manager
``edge service`` needs. A check that inspects the machine only reads: no
sound server is started (the shim never autospawns one), no service manager
either, and no process is moved between cgroups.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import shutil
import socket
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from .config import TracedConfig, check_config_file, default_paths, format_hostport
from .errors import ConfigError

if TYPE_CHECKING:
    from .mcp.config import McpServerConfig
    from .tools.runtimes.load import DeclaredTool

__all__ = ["CHECK_TIMEOUT", "Check", "Subject", "examination", "examine"]

#: Seconds each check may take by default (``edge doctor --timeout``); then it fails.
CHECK_TIMEOUT: Final = 10.0
#: Seconds ``GET /health`` on the control port may take.
HEALTH_TIMEOUT: Final = 2.0
#: Commands that make an MCP server a Node program (``node`` must be installed).
NODE_COMMANDS: Final = frozenset({"node", "npx", "npm"})
#: Keys of edge's own ``GET /health`` (``edge.daemon``): ``status`` and ``version``
#: alone are what many other programs' health endpoints answer.
EDGE_HEALTH_KEYS: Final = frozenset(
    {"status", "version", "tunnel", "offeredTools", "callsInFlight"}
)

FIX_SHIM: Final = (
    "install a C compiler and reinstall edge, which builds it with cffi "
    "(in a checkout: pip install -e .)"
)
FIX_CONFIG: Final = (
    "`edge config check FILE` lists every problem; `edge config init` writes a starter"
)


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: ``fix`` says what to do when it failed ("" when it passed)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, Any]:
        """``{"name", "ok", "detail", "fix"}`` (``fix``: ``None`` when there is none)."""
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix or None}


@dataclass(frozen=True, slots=True)
class Subject:
    """What to examine: the flags ``edge doctor`` was given; ``None``: what the config says."""

    config_file: Path | None = None
    control: str | None = None
    token_file: Path | None = None
    mcp_file: Path | None = None
    #: Seconds each check may take.
    timeout: float = CHECK_TIMEOUT


# --- the native shim and the sound server ---------------------------------------------


def check_native_shim() -> Check:
    """The audio shim (``edge.capture._native``, built by cffi at install time) loads."""
    name = "audio shim"
    try:
        mod: Any = importlib.import_module("edge.capture._native")
        backend = mod.ffi.string(mod.lib.edge_audio_backend()).decode()
    except Exception as exc:  # an ImportError, or a module built against another ABI
        return Check(name, False, f"edge.capture._native does not load: {exc}", FIX_SHIM)
    return Check(name, True, f"edge.capture._native loaded (backend: {backend})")


def sound_fix(problem: str, platform: str = sys.platform) -> str:
    """How to get a sound server edge can record from, for what the probe said."""
    if platform == "darwin":
        return (
            "allow this terminal under System Settings → Privacy & Security → Microphone "
            "and Screen & System Audio Recording"
        )
    if "libpulse" in problem:
        return (
            "install the PulseAudio client library (e.g. apt-get install libpulse0) and "
            "a sound server: PulseAudio, or PipeWire with pipewire-pulse"
        )
    if "reachable" in problem or "Connection refused" in problem or "connect" in problem:
        return "start a sound server: pulseaudio --start, or PipeWire's pipewire-pulse"
    return (
        "check the sound server's default source and output (pactl info; "
        "pactl set-default-source NAME), or start one: pulseaudio --start"
    )


async def check_sound() -> Check:
    """The sound server answers and edge can open its default source (``mic``) and the
    default output's monitor (``system``); nothing is recorded."""
    from .capture.sources import native_backend, probe_sources
    from .errors import CaptureError

    name = "sound server"
    try:
        backend = native_backend()
    except CaptureError:
        return Check(name, False, "cannot check: the audio shim does not load", FIX_SHIM)
    found = {entry["id"]: entry for entry in await probe_sources()}
    missing = [found[kind] for kind in ("mic", "system") if not found[kind]["available"]]
    if not missing:
        return Check(name, True, f"{backend}: the default source and its monitor open")
    reasons = [str(entry.get("detail", "")) for entry in missing]
    ids = [str(entry["id"]) for entry in missing]
    # "mic: why" and "system: why" often say the same thing: say it once.
    bare = {reason.split(": ", 1)[-1] for reason in reasons}
    detail = f"{' and '.join(ids)}: {bare.pop()}" if len(bare) == 1 else "; ".join(reasons)
    return Check(name, False, detail, sound_fix(detail))


# --- the control port -------------------------------------------------------------------


def _bind_problem(host: str, port: int) -> str | None:
    """Why a listener could not bind ``host:port`` now (``None``: it could), as edge
    binds it (``SO_REUSEADDR``); the socket is closed at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "another program holds it"
            return exc.strerror or str(exc)
    return None


async def check_control_port(address: tuple[str, int] | None) -> Check:
    """The control API's address is free, or a running edge holds it (``GET /health``
    answers edge's JSON); anything else holding it is a failure."""
    import httpx

    name = "control port"
    if address is None:
        return Check(name, True, "the control API is off (--no-control)")
    host, port = address
    text = format_hostport(address)
    fix = (
        "stop the program holding it, or give edge another address: "
        "--control HOST:PORT or [control] listen in config.toml"
    )
    if port == 0:
        return Check(name, True, f"{text}: edge picks a free port when it starts")
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/health"
    try:
        # trust_env=False: a proxy from the environment must not answer for this machine.
        async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT, trust_env=False) as client:
            reply = await client.get(url)
    except httpx.ConnectError:
        problem = await trio.to_thread.run_sync(_bind_problem, host, port)
        if problem is None:
            return Check(name, True, f"{text} is free")
        return Check(name, False, f"{text}: {problem}", fix)
    except httpx.HTTPError as exc:
        why = "no HTTP answer" if isinstance(exc, httpx.TimeoutException) else "not HTTP"
        return Check(name, False, f"{text} is held by another program ({why})", fix)
    try:
        body = reply.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.keys() >= EDGE_HEALTH_KEYS:  # edge's /health
        return Check(name, True, f"edge {body['version']} is running there ({text})")
    return Check(
        name, False, f"{text} is held by another program (HTTP {reply.status_code}, not edge)", fix
    )


# --- the config files -------------------------------------------------------------------


def load_setup(subject: Subject) -> tuple[Check, TracedConfig]:
    """The ``config`` check and the configuration the other checks look at.

    The config file (``--config``, else the default one if it is there) is
    checked strictly (``check_config_file``). When it, or a flag, does not
    load, the check fails and the rest go on with what does: the file (or, when
    it is the one that fails, the defaults) under the flags that load. The token
    file is named, never read here; ``EDGE_TOKEN`` is taken out of the environment.
    """
    from .config import TOKEN_ENV, load_config_traced
    from .secret import take_from_environment

    name = "config"
    # Out of this process's environment, as edge run takes it: nothing the checks
    # start (node, an MCP server) may inherit it.
    token = take_from_environment(TOKEN_ENV)
    environ = {} if token is None else {TOKEN_ENV: token}
    flags: dict[str, Any] = {
        "control": subject.control, "token_file": subject.token_file,
        "mcp_file": subject.mcp_file,
    }  # fmt: skip
    path = subject.config_file
    if path is None and default_paths()[0].exists():
        path = default_paths()[0]
    problems = [] if path is None else check_config_file(path)
    flag_problems: list[str] = []

    def traced(use_file: bool, **given: Any) -> TracedConfig:
        return load_config_traced(
            config_file=path, environ=environ, read_token=False, use_file=use_file,
            **given,
        )  # fmt: skip

    use_file = not problems
    kept: dict[str, Any] = {}
    for flag, value in flags.items():  # each on its own: --control 0.0.0.0:1, ~nobody/...
        if value is None:
            continue
        try:
            traced(use_file, **kept, **{flag: value})
        except ConfigError as exc:
            flag_problems.append(str(exc))
        else:
            kept[flag] = value
    setup = traced(use_file, **kept)
    if problems or flag_problems:
        fixes = [FIX_CONFIG] if problems else []
        fixes += ["correct the flag (edge doctor --help)"] if flag_problems else []
        return Check(name, False, "; ".join(problems + flag_problems), "; ".join(fixes)), setup
    if path is None:
        detail = f"no config file ({default_paths()[0]} is not there): the defaults"
        return Check(name, True, detail), setup
    return Check(name, True, f"{path}: ok"), setup


def check_mcp_file(path: Path | None) -> tuple[Check, list[McpServerConfig]]:
    """``mcp.json`` loads strictly (``edge.mcp.config.load_servers``); its servers."""
    from .mcp.config import load_servers

    name = "mcp.json"
    if path is None:
        return Check(name, True, "no MCP servers file"), []
    try:
        servers = load_servers(path)
    except ConfigError as exc:
        fix = f"fix {path} (`edge mcp remove NAME` takes a broken entry out)"
        return Check(name, False, str(exc), fix), []
    if not path.exists():
        return Check(name, True, f"{path} is not there: no MCP servers"), []
    return Check(name, True, f"{path}: {_count(len(servers), 'server')}"), servers


def check_declared_tools(setup: TracedConfig) -> tuple[Check, list[DeclaredTool]]:
    """Every declared tool in the tool directories loads (``tool.toml``, its runtime's
    check: the same loader ``edge run`` uses); the tools found, valid or not."""
    from .tools.builtin import BUILTIN_TOOLS
    from .tools.policy import Policy
    from .tools.runtimes.load import build_runtimes, load_declared

    name = "declared tools"
    cfg = setup.config
    dirs = ", ".join(str(d) for d in cfg.tool_dirs) or "none"
    policy = Policy.create(cfg.workspace, cfg.extra_roots, cfg.allow_tools)
    reserved = {spec.name for spec in BUILTIN_TOOLS}
    tools = load_declared(cfg.tool_dirs, policy, build_runtimes(), reserved=reserved)
    bad = [tool for tool in tools if tool.problem is not None]
    if bad:
        detail = "; ".join(_named(tool.directory / "tool.toml", str(tool.problem)) for tool in bad)
        fix = "fix or remove those tool directories (`edge tools list` shows them)"
        return Check(name, False, detail, fix), tools
    return Check(name, True, f"{_count(len(tools), 'tool')} in {dirs}"), tools


def check_plugins(setup: TracedConfig) -> Check:
    """Every plugin's manifest loads (``edge.plugins.manifest.discover``); nothing is run."""
    from .plugins.manifest import MANIFEST, discover

    name = "plugins"
    dirs = ", ".join(str(d) for d in setup.config.plugin_dirs) or "none"
    found = discover(setup.config.plugin_dirs)
    bad = [plugin for plugin in found if plugin.problem is not None]
    if bad:
        detail = "; ".join(_named(p.directory / MANIFEST, str(p.problem)) for p in bad)
        fix = "fix or remove those plugin directories (`edge plugins list` shows them)"
        return Check(name, False, detail, fix)
    return Check(name, True, f"{_count(len(found), 'plugin')} in {dirs}")


def _named(path: Path, problem: str) -> str:
    """``problem``, starting with the file it is about unless it names it already."""
    return problem if str(path.parent) in problem else f"{path}: {problem}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --- the token file ---------------------------------------------------------------------


def check_token_file(path: Path | None) -> Check:
    """The token file, if one is named, is a readable, non-empty regular file that no
    one else may read or change (mode 0600). Its content is never shown."""
    name = "token file"
    if path is None:
        return Check(name, True, "none named: the token comes from $EDGE_TOKEN or the web page")
    name_it = "--token-file FILE or [tunnel] token_file in config.toml"
    try:
        st = path.stat()
    except OSError as exc:
        fix = f"write the token to {path} (chmod 600 {path}), or name another: {name_it}"
        return Check(name, False, f"{path}: {exc.strerror or exc}", fix)
    if not stat.S_ISREG(st.st_mode):
        return Check(name, False, f"{path} is not a regular file", f"name a file: {name_it}")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        who = "its group and others" if mode & 0o070 and mode & 0o007 else (
            "its group" if mode & 0o070 else "other users"
        )
        return Check(
            name, False, f"{path} has mode {mode:04o}: {who} may read or change it",
            f"chmod 600 {path}",
        )  # fmt: skip
    try:
        with path.open("rb") as f:
            empty = not f.read(65536).strip()
    except OSError as exc:
        fix = f"make it yours and chmod 600 {path}"
        return Check(name, False, f"{path}: {exc.strerror or exc}", fix)
    if empty:
        return Check(name, False, f"{path} is empty", f"write the token to {path}")
    return Check(name, True, f"{path}: mode {mode:04o}")


# --- MCP servers and node ---------------------------------------------------------------


async def check_mcp_server(
    server: McpServerConfig,
    mcp_file: Path | None,
    within: float = CHECK_TIMEOUT,
    on_check: Callable[[Check], None] | None = None,
) -> Check:
    """One MCP server connects and lists its tools (``probe_server``, on a connection
    of its own, within ``within`` seconds).

    ``on_check`` is given the check as soon as it is known: for a server that
    answered, before the SDK has finished stopping it.
    """
    from .mcp.session import probe_server

    name = f"mcp {server.name}"
    if server.disabled:
        return Check(name, True, "disabled")

    def answered(answer: dict[str, Any]) -> None:
        if on_check is not None:
            on_check(_mcp_check(server, mcp_file, answer))

    answer = await probe_server(server, within=within, on_answer=answered)
    return _mcp_check(server, mcp_file, answer)


def _mcp_check(server: McpServerConfig, mcp_file: Path | None, answer: dict[str, Any]) -> Check:
    """``probe_server``'s report as the server's check."""
    name = f"mcp {server.name}"
    if answer["ok"]:
        info, tools = answer["server"], _count(len(answer["tools"]), "tool")
        detail = f"{info['name']} {info['version']}: {tools} in {answer['ms']:.0f} ms"
        return Check(name, True, detail)
    where = mcp_file or "mcp.json"
    error = str(answer["error"])
    if server.transport == "stdio" and error.startswith("command not found"):
        fix = f"install {server.command}, or correct its command in {where}"
    elif server.transport == "stdio" and error.startswith("working directory"):
        fix = f"make the directory {server.cwd}, or correct its cwd in {where}"
    else:
        fix = (
            f'`edge mcp test {server.name}` tries it again; "disabled": true in {where} '
            "keeps it from starting"
        )
    return Check(name, False, error, fix)


def node_needs(tools: Sequence[DeclaredTool], servers: Sequence[McpServerConfig]) -> list[str]:
    """What needs ``node``: the node tools and the MCP servers run with node or npx."""
    needs = [f"tool {tool.name}" for tool in tools if tool.runtime == "node"]
    for server in servers:
        command = Path(server.command or "").name
        if server.transport == "stdio" and not server.disabled and command in NODE_COMMANDS:
            needs.append(f"mcp {server.name}")
    return needs


async def check_node(needs: Sequence[str]) -> Check:
    """``node`` is installed where something needs it (``node_needs``); its version."""
    name = "node"
    node = shutil.which("node")
    why = f"needed by {', '.join(needs)}" if needs else "not needed: no node tool or MCP server"
    fix = "install Node.js (https://nodejs.org, or apt-get install nodejs) so it is on PATH"
    if node is None:
        if needs:
            return Check(name, False, f"node is not on PATH; {why}", fix)
        return Check(name, True, f"{why} (node is not installed)")
    try:
        done = await _run([node, "--version"])
    except OSError as exc:
        problem = f"{node} does not run: {exc.strerror or exc}; {why}"
        return Check(name, not needs, problem, fix if needs else "")
    version = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0 or not version:
        problem = f"{node} --version failed (exit status {done.returncode}); {why}"
        return Check(name, not needs, problem, fix if needs else "")
    return Check(name, True, f"{version} at {node}; {why}")


async def _run(argv: list[str], env: dict[str, str] | None = None) -> Any:
    """``argv`` run to its end, stdin empty, output captured (killed if cancelled)."""
    return await trio.run_process(
        argv, env=env, stdin=b"", capture_stdout=True, capture_stderr=True, check=False
    )


# --- containment and the service manager ------------------------------------------------


def check_containment(platform: str = sys.platform) -> Check:
    """How edge would hold a call's processes (``edge.tools.contain.Containment``): cgroup
    v2 or a child subreaper on Linux; a process group alone is a failure there. The
    handle made to find out is closed at once (the probe cgroup removed, the subreaper
    flag given back)."""
    from .tools.contain import Containment, Mechanism

    name = "containment"
    try:
        containment = Containment.create()
    except Exception as exc:
        return Check(name, False, f"cannot tell: {type(exc).__name__}: {exc}")
    try:
        described = containment.describe()
        mechanism = containment.mechanism
    finally:
        containment.close()  # the probe's cgroup removed, the subreaper flag given back
    if mechanism is Mechanism.CGROUP and containment.site is not None:
        where = containment.site.base.parent
        return Check(name, True, f"cgroup v2: a cgroup per call under {where}")
    if mechanism is Mechanism.SUBREAPER:
        hint = "for cgroup v2, a delegated scope: systemd-run --user --scope -p Delegate=yes"
        return Check(name, True, f"{described}; {hint}")
    if not platform.startswith("linux"):
        return Check(name, True, f"{described}: what this system offers")
    return Check(
        name, False,
        f"{described}: a command that leaves its process group outlives its call",
        "give edge a cgroup it may create children in (systemd-run --user --scope "
        "-p Delegate=yes edge run) or let it be a child subreaper (prctl, Linux 3.4+)",
    )  # fmt: skip


async def check_service_manager(platform: str = sys.platform) -> Check:
    """A user service manager answers, for ``edge service``: systemd's (Linux:
    ``systemctl --user show``) or launchd's ``gui/UID`` domain (macOS). Only asked:
    none is ever started."""
    from .service.backends import Host, SystemdUser

    name = "service manager"
    host = Host.current()
    if platform == "darwin":
        argv, what = ["launchctl", "print", f"gui/{host.uid}"], "launchd"
        env = {k: v for k, v in os.environ.items() if k != "EDGE_TOKEN"}
        fix = f"edge service runs a launchd agent in gui/{host.uid}: log in as {host.user}"
    elif platform.startswith("linux"):
        env = dict(SystemdUser(host).env)
        argv, what = ["systemctl", "--user", "show", "--property=Version", "--value"], "systemd"
        fix = (
            f"edge service needs a systemd user session: log in as {host.user} (not su or sudo), "
            f"or start one at boot with loginctl enable-linger {host.user}"
        )
    else:
        problem = f"edge service knows systemd and launchd, not {platform}"
        return Check(name, False, problem, "run edge run under a supervisor of your own")
    program = shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if program is None:
        return Check(name, False, f"{argv[0]} is not installed", fix)
    done = await _run([program, *argv[1:]], env)
    out = done.stdout.decode(errors="replace").strip()
    if done.returncode == 0 and out:
        if what == "systemd":
            return Check(name, True, f"the systemd {out.split()[0]} user manager answers")
        return Check(name, True, f"launchd's gui/{host.uid} domain answers")
    lines = (done.stderr.decode(errors="replace") + "\n" + out).splitlines()
    why = next((line.strip() for line in lines if line.strip()), f"exit status {done.returncode}")
    return Check(name, False, f"no {what} user manager answers: {why}", fix)


# --- all of them ------------------------------------------------------------------------


#: A check to run: no arguments, its ``Check`` awaited.
Job = Callable[[], Awaitable[Check]]


async def _bounded(name: str, check: Job, within: float) -> Check:
    """``check()`` within ``within`` seconds; a timeout or an unexpected error is its failure."""
    try:
        with trio.fail_after(within):
            return await check()
    except trio.TooSlowError:
        fix = "edge doctor --timeout SECONDS waits longer"
        return Check(name, False, f"no answer within {within:g} s", fix)
    except Exception as exc:
        return Check(name, False, f"the check failed: {type(exc).__name__}: {exc}")


def _in_thread(function: Callable[[], Check]) -> Job:
    """A job running the blocking ``function`` in a worker thread (abandoned on timeout)."""

    async def run() -> Check:
        return await trio.to_thread.run_sync(function, abandon_on_cancel=True)

    return run


def _mcp_job(
    server: McpServerConfig, mcp_file: Path | None, within: float, stopping: trio.Nursery
) -> Job:
    """``check_mcp_server`` as a job that is done as soon as its check is known.

    The probe runs in ``stopping``: when the job is done, or cancelled at its
    deadline, what remains of the probe (the SDK stopping the server) goes on
    there without holding the job up.
    """
    name = f"mcp {server.name}"

    async def run() -> Check:
        outcome: list[Check] = []
        known = trio.Event()
        probe_scope = trio.CancelScope()

        def found(check: Check) -> None:
            if not outcome:
                outcome.append(check)
            known.set()

        async def probe() -> None:
            with probe_scope:
                try:
                    found(await check_mcp_server(server, mcp_file, within, on_check=found))
                except Exception as exc:
                    found(Check(name, False, f"the check failed: {type(exc).__name__}: {exc}"))

        stopping.start_soon(probe)
        try:
            await known.wait()
        finally:
            if not known.is_set():  # out of time: the probe gives up, the server is stopped
                probe_scope.cancel()
        return outcome[0]

    return run


@contextlib.asynccontextmanager
async def examination(subject: Subject) -> AsyncIterator[list[Check]]:
    """Every check for ``subject`` (``examine``), yielded as soon as each has its outcome.

    Leaving the block waits for the MCP servers still being stopped (those that
    did not answer in time; the SDK's own bounded clock, a few seconds), so a
    caller reports inside the block and leaves no process behind.
    """
    async with trio.open_nursery() as stopping:
        yield await _examine(subject, stopping)


async def examine(subject: Subject) -> list[Check]:
    """Every check for ``subject``, in a fixed order; those that wait run at once.

    Returns once every MCP server probed has stopped (see ``examination``).
    """
    async with examination(subject) as checks:
        return checks


async def _examine(subject: Subject, stopping: trio.Nursery) -> list[Check]:
    config_check, setup = await trio.to_thread.run_sync(load_setup, subject)
    cfg = setup.config
    mcp_check, servers = await trio.to_thread.run_sync(check_mcp_file, cfg.mcp_file)
    await trio.to_thread.run_sync(_preload, bool(servers))
    tools_check, tools = await _declared(setup, subject.timeout)
    jobs: list[tuple[str, Job]] = [
        ("audio shim", _in_thread(check_native_shim)),
        ("sound server", check_sound),
        ("control port", partial(check_control_port, cfg.control)),
        ("config", _done(config_check)),
        ("mcp.json", _done(mcp_check)),
        ("declared tools", _done(tools_check)),
        ("plugins", _in_thread(partial(check_plugins, setup))),
        ("token file", _in_thread(partial(check_token_file, setup.token_file))),
        *[(f"mcp {s.name}", _mcp_job(s, cfg.mcp_file, subject.timeout, stopping)) for s in servers],
        ("node", partial(check_node, node_needs(tools, servers))),
        ("containment", _in_thread(check_containment)),
        ("service manager", check_service_manager),
    ]
    results: list[Check | None] = [None] * len(jobs)

    async def run_one(index: int, name: str, job: Job) -> None:
        results[index] = await _bounded(name, job, subject.timeout)

    async with trio.open_nursery() as nursery:
        for index, (name, job) in enumerate(jobs):
            nursery.start_soon(run_one, index, name, job)
    return [check for check in results if check is not None]


def _done(check: Check) -> Job:
    """A job whose check is already made."""

    async def done() -> Check:
        return check

    return done


def _preload(mcp: bool) -> None:
    """Import what the checks use (the MCP SDK's client only when there are servers)."""
    modules = [
        "httpx", "edge.capture.sources", "edge.mcp.session", "edge.plugins.manifest",
        "edge.service.backends", "edge.tools.builtin", "edge.tools.contain",
        "edge.tools.runtimes.load",
    ]  # fmt: skip
    if mcp:
        modules += ["mcp.client.session", "mcp.client.stdio", "mcp.client.streamable_http"]
    for name in modules:
        importlib.import_module(name)


async def _declared(setup: TracedConfig, within: float) -> tuple[Check, list[DeclaredTool]]:
    """``check_declared_tools`` in a thread, bounded like the others."""
    name = "declared tools"
    try:
        with trio.fail_after(within):
            return await trio.to_thread.run_sync(
                check_declared_tools, setup, abandon_on_cancel=True
            )
    except trio.TooSlowError:
        return Check(name, False, f"no answer within {within:g} s"), []
    except Exception as exc:
        return Check(name, False, f"the check failed: {type(exc).__name__}: {exc}"), []
