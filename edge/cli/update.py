"""``edge update [--check] [--to VERSION] [--allow-downgrade] [--now]``: a signed,
hash-checked update of this edge, installed the way edge was installed.

With a daemon of this same installation answering on ``--control`` (default:
where the config tells ``edge run`` to listen), the daemon does it (``POST
/update``): it takes no new work, lets its calls and captures finish (or stops
them with ``--now``), installs, and exits with ``UPDATED`` for its service to
restart it. Without one (or with the daemon of another installation), this
command does it here. ``--check`` only says what would be installed, and how.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..exitcodes import CONFIG, FAILURE, OK
from .common import (
    ControlUnreachable,
    ParagraphFormatter,
    add_config_option,
    add_control_option,
    control_get,
    control_post,
    fail,
    load,
    progress,
    reachable,
    verbosity,
)

if TYPE_CHECKING:
    from ..config import Config
    from ..update.install import Installation
    from ..update.steps import Checked, Prepared

#: Shown after the options in this command's --help.
EPILOG: Final = """\
examples:
  edge update --check            installed and latest version, what would be installed, how
  edge update                    the latest version (a running daemon finishes its calls first)
  edge update --to 0.3.1         that version (a lower one needs --allow-downgrade)
  edge update --now              a running daemon stops its calls and captures at once

exit codes: 0 installed or up to date, 1 refused or failed (nothing installed unless
it says so), 2 a usage or configuration error. With --check (as diff does): 0 up to
date, 1 an update is available, 2 the check itself failed.

The manifest is [update] manifest_url in config.toml (else the one the cloud names to
the daemon); its Ed25519 signature must verify against [update] public_key. edge
installs only the wheel the manifest lists, after checking its sha256, with pipx, uv
or pip as it was installed; never a command from the manifest. See docs/update.md.
"""

#: Seconds ``edge update`` waits for a daemon to drain and install (a bound on failure).
DAEMON_TIMEOUT: Final = 3600.0
#: Seconds to wait for a daemon's ``GET /update``.
ASK_TIMEOUT: Final = 3.0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "update",
        help="update edge: a signed manifest, a hash-checked wheel, installed as edge was",
        description="Update this edge from the signed versions manifest: the wheel it lists, "
        "its sha256 checked, installed with pipx, uv or pip, as edge was installed.",
        epilog=EPILOG,
        formatter_class=ParagraphFormatter,
    )
    parser.add_argument(
        "--check", action="store_true", help="only say what would be installed, and how"
    )
    parser.add_argument("--to", metavar="VERSION", help="this version instead of the latest")
    parser.add_argument(
        "--allow-downgrade", action="store_true", help="allow --to a version below the installed"
    )
    parser.add_argument(
        "--now",
        action="store_true",
        help="a running daemon stops its calls and captures instead of letting them finish",
    )
    add_config_option(parser)
    add_control_option(parser, default=None)  # _control_of: the config this command loads
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..update.install import detect_installation

    # force_bind: this command only connects; a wide listen is `edge run`'s to refuse.
    config = load(args, force_bind=True)
    args.control = args.control or _control_of(config)
    installation = detect_installation()
    daemon = _daemon(args.control)
    if args.check:
        return _check(args, config, installation, daemon)
    if daemon is not None and _same_installation(daemon, installation):
        return _via_daemon(args)
    return _here(args, config, installation, daemon)


# --- the daemon ---------------------------------------------------------------------------


def _control_of(config: Config) -> str:
    """``HOST:PORT`` of the control API ``edge run`` with ``config`` listens on (a wildcard
    address is reached on loopback)."""
    return reachable(config.control)


def _daemon(control: str) -> dict[str, Any] | None:
    """What the daemon on ``control`` says of updates; ``None``: no daemon, or one without
    the /update route."""
    try:
        (answer,) = control_get(control, "/update", timeout=ASK_TIMEOUT)
    except (ControlUnreachable, ValueError):
        return None
    return answer if isinstance(answer, dict) and "prefix" in answer else None


def _same_installation(daemon: dict[str, Any], installation: Installation) -> bool:
    try:
        return Path(str(daemon["prefix"])).resolve() == installation.prefix.resolve()
    except OSError:
        return False


def _via_daemon(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"allowDowngrade": args.allow_downgrade, "now": args.now}
    if args.to is not None:
        body["to"] = args.to
    how = "stops its calls and captures" if args.now else "lets its calls and captures finish"
    progress(f"edge update: the daemon on {args.control} updates itself (it {how} first)...")
    try:
        status, answer = control_post(args.control, "/update", body, timeout=DAEMON_TIMEOUT)
    except ControlUnreachable as exc:
        return fail(f"the daemon stopped answering ({exc}): see its log for how it went", FAILURE)
    if status != 200:  # 409: refused or failed; 400: a request this command got wrong
        return fail(str(answer.get("error", answer)), CONFIG if status == 400 else FAILURE)
    if answer.get("status") != "installed":
        print(answer.get("note") or f"edge {answer.get('version')} is installed: up to date")
        return OK
    after = (
        "its service starts the new version"
        if answer.get("restarting")
        else "start it again with 'edge run'"
    )
    print(f"edge {answer['version']} installed (was {answer['previous']}); "
          f"the daemon stopped: {after}")  # fmt: skip
    return OK


# --- here ---------------------------------------------------------------------------------


def _source(config: Config, daemon: dict[str, Any] | None) -> tuple[str, str] | None:
    """(manifest URL, public key), checked as far as the config goes; ``None`` after the
    error was printed."""
    from ..errors import UpdateError
    from ..update.manifest import decode_public_key, require_https
    from ..update.steps import NO_KEY, NO_URL

    url = config.update_manifest or (daemon or {}).get("manifestUrl")
    if not url:
        fail(NO_URL)
        return None
    if not config.update_key:
        fail(NO_KEY)
        return None
    try:
        decode_public_key(config.update_key)
        require_https(str(url), "the manifest URL")
    except UpdateError as exc:
        fail(str(exc))
        return None
    return str(url), config.update_key


def _check(
    args: argparse.Namespace,
    config: Config,
    installation: Installation,
    daemon: dict[str, Any] | None,
) -> int:
    import trio
    from packaging.tags import sys_tags

    from ..errors import UpdateError
    from ..update.install import find_installer, installer_argv
    from ..update.manifest import choose_artifact
    from ..update.steps import check, current_version, downloads_dir

    source = _source(config, daemon)
    if source is None:
        return CONFIG
    current = current_version(installation)
    try:
        checked = trio.run(
            partial(check, *source, current, to=args.to, allow_downgrade=args.allow_downgrade)
        )
    except UpdateError as exc:
        return fail(str(exc), CONFIG)
    manifest = checked.manifest
    print(f"installed  edge {current} ({installation.describe()})")
    print(f"manifest   {checked.url}")
    print(f"latest     {manifest.latest} (minimum supported: {manifest.minimum or 'any'})")
    release = checked.plan.target
    if release is None:
        print(checked.plan.note)
        return OK
    try:
        artifact = choose_artifact(release, sys_tags())
    except UpdateError as exc:
        print(f"available  {checked.plan.note}, but {exc}")
        return FAILURE
    print(f"available  {checked.plan.note}: {artifact.filename} (sha256 {artifact.sha256})")
    try:
        program = find_installer(installation)
    except UpdateError as exc:
        print(f"edge cannot install it here: {exc}")
        return FAILURE
    folder = downloads_dir(config.state_dir) or Path("<a temporary directory>")
    argv = installer_argv(installation, program, folder / artifact.filename)
    print(f"would run  {' '.join(argv)}")
    return FAILURE


def _here(
    args: argparse.Namespace,
    config: Config,
    installation: Installation,
    daemon: dict[str, Any] | None,
) -> int:
    import trio

    from ..errors import UpdateError
    from ..update.install import find_installer
    from ..update.steps import install

    source = _source(config, daemon)
    if source is None:
        return CONFIG
    try:
        find_installer(installation)  # refused before anything is fetched
        found = trio.run(_prepare, args, config, installation, source)
    except UpdateError as exc:
        return fail(str(exc), FAILURE)
    if found is None:
        return OK
    progress(f"installing with {found.command.describe()}")
    try:
        with _no_interrupt():
            install(found, lambda line: progress(f"  {line}"))
    except UpdateError as exc:
        return fail(str(exc), FAILURE)
    print(f"edge {found.version} installed (was {found.checked.plan.current})")
    if daemon is not None:
        print(f"(the daemon on {args.control} is another installation, {daemon['prefix']}: "
              "it was not updated)")  # fmt: skip
    return OK


async def _prepare(
    args: argparse.Namespace,
    config: Config,
    installation: Installation,
    source: tuple[str, str],
) -> Prepared | None:
    """The verified wheel and its command; ``None`` (said why) when there is nothing to do."""
    from ..update.steps import check, current_version, downloads_dir, prepare

    url, key = source
    checked: Checked = await check(
        url,
        key,
        current_version(installation),
        to=args.to,
        allow_downgrade=args.allow_downgrade,
    )
    if checked.plan.target is None:
        print(checked.plan.note)
        return None
    progress(f"edge {checked.plan.note} ({installation.describe()})")
    bar = _Progress()
    prepared = await prepare(checked, installation, downloads_dir(config.state_dir), progress=bar)
    bar.done(prepared.artifact.filename)
    progress(f"verified   sha256 {prepared.artifact.sha256}")
    return prepared


class _Progress:
    """One line on stderr while a wheel downloads: redrawn on a terminal, else once."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._quiet = verbosity() < 0  # -q: no progress lines
        self._shown = -1
        self._bytes = 0

    def __call__(self, done: int, total: int | None) -> None:
        self._bytes = done
        if self._quiet:
            return
        percent = done * 100 // total if total else None
        if not self._tty:
            if self._shown < 0:
                self._shown = 0
                print(f"downloading ({_size(total)})..." if total else "downloading...",
                      file=sys.stderr)  # fmt: skip
            return
        mark = percent if percent is not None else done // (256 * 1024)
        if mark != self._shown:
            self._shown = mark
            of = f" of {_size(total)} ({percent}%)" if total else ""
            print(f"\rdownloading {_size(done)}{of}", end="", file=sys.stderr, flush=True)

    def done(self, name: str) -> None:
        if self._tty and self._shown >= 0:
            print(file=sys.stderr)
        progress(f"downloaded {name} ({_size(self._bytes)})")


def _size(count: int | None) -> str:
    value = float(count or 0)
    for unit in ("B", "kB", "MB"):
        if value < 1000 or unit == "MB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} MB"


@contextlib.contextmanager
def _no_interrupt() -> Iterator[None]:
    """Ctrl-C is ignored while the installer runs (stopping it half way could leave a
    broken environment; it has its own time limit)."""
    import signal

    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: no signal handlers to change
        yield
        return
    progress("(Ctrl-C is ignored until the installer finishes)")
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
