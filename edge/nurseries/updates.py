"""The daemon's updates: a check once a day, and an update on request (or by itself).

::

    updates task (serve_updates)
    └── daily check   first FIRST_CHECK seconds after start, then every ``interval``
                      (RETRY seconds after a check that could not be made)

A check fetches and verifies the manifest (the config's URL, else the one the
cloud named) and, when it lists a newer version, logs it once per version and
publishes an ``update_available`` event. It installs by itself only with
``[update] auto = true`` in a daemon run as a service (``EDGE_SERVICE`` set and
stdin not a terminal), never from an interactive ``edge run``.

An update (``POST /update`` through ``Updates.update``, or the automatic one)
does everything that can be refused first: the manifest, the target, the
installer, the download and its hash; only then does it ``drain`` (the daemon
takes no new work and lets calls and captures finish, or cancels them with
``now``), runs the installer in a thread shielded from cancellation (an
installer stopped half way could leave a broken environment; it has its own
time limit), and reports the new version to ``on_installed``, on which the
daemon stops and ``edge run`` exits with ``edge.exitcodes.UPDATED``. An update
that drained and did not install (the installer failed, or the daemon began to
stop) calls ``resume`` once: the daemon takes work again.

``Updates.abort`` (the daemon's first step when it stops) cancels an update that
has not started its installer and refuses any later one; an installer already
running is let finish. Any error of an update or a check, expected or not, is an
``UpdateError`` (``POST /update`` answers 409 with it), logged once: it never
ends the task, nor the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from .. import __version__
from ..errors import UpdateError
from ..update.install import Installation, detect_installation
from ..update.steps import (
    Checked,
    Prepared,
    check,
    current_version,
    discard,
    downloads_dir,
    install,
    prepare,
)

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)

#: Seconds after the start before the first check (the cloud may name the manifest by then).
FIRST_CHECK: Final = 60.0
#: Seconds between two checks.
DAILY: Final = 86400.0
#: Seconds to the next try when a check could not be made (no URL yet, a fetch failed).
RETRY: Final = 3600.0
#: The environment variable a service unit sets (``systemd``, ``launchd``).
SERVICE_ENV: Final = "EDGE_SERVICE"
#: What an update cancelled (or refused) by ``Updates.abort`` raises.
STOPPING: Final = "edge is stopping: the update was not installed"


@dataclass(frozen=True, slots=True)
class UpdateOptions:
    """What the updates task does; ``from_config`` builds it for ``edge run``."""

    #: The config's manifest URL (the daemon's ``manifest_url()`` adds the cloud's).
    manifest_url: str | None
    #: base64 of the Ed25519 key the manifest must be signed with.
    public_key: str | None
    #: Install by itself (only when ``as_service``).
    auto: bool
    #: Check at all.
    check: bool
    #: Seconds between checks.
    interval: float = DAILY
    #: Run by a service manager, not from a terminal.
    as_service: bool = False
    #: Seconds from the start to the first check.
    first_check: float = FIRST_CHECK
    #: Where wheels are downloaded (``None``: a temporary directory per update).
    downloads: Path | None = None

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        environ: Mapping[str, str] | None = None,
        interactive: bool | None = None,
    ) -> UpdateOptions:
        """The options of ``config``; ``as_service`` when ``EDGE_SERVICE`` is set in
        ``environ`` (default ``os.environ``) and stdin is not a terminal (or
        ``interactive`` is false)."""
        env = os.environ if environ is None else environ
        if interactive is None:
            interactive = _stdin_is_a_tty()
        return cls(
            manifest_url=config.update_manifest,
            public_key=config.update_key,
            auto=config.update_auto,
            check=config.update_check,
            as_service=bool(env.get(SERVICE_ENV)) and not interactive,
            downloads=downloads_dir(config.state_dir),
        )


def _stdin_is_a_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed
        return False


class Updates:
    """Handle on the updates task; made by ``serve_updates``. Implements
    ``edge.control.update.UpdateControl``."""

    def __init__(
        self,
        options: UpdateOptions,
        installation: Installation,
        *,
        manifest_url: Callable[[], str | None],
        drain: Callable[[bool], Awaitable[None]],
        resume: Callable[[], None],
        on_installed: Callable[[str], None],
        publish: Callable[[dict[str, Any]], None],
    ) -> None:
        self._options = options
        self._installation = installation
        self._manifest_url = manifest_url
        self._drain = drain
        self._resume = resume
        self._on_installed = on_installed
        self._publish = publish
        self._lock = trio.Lock()
        #: Set by ``abort``: no update installs any more.
        self._aborted = False
        #: Around the check, the download and the drain of the update under way.
        self._scope: trio.CancelScope | None = None
        self._checked: Checked | None = None
        self._last_check: float | None = None
        self._last_error: str | None = None
        self._announced: set[str] = set()
        self._warned: set[str] = set()

    @property
    def installation(self) -> Installation:
        return self._installation

    def info(self) -> dict[str, Any]:
        """The versions (running, installed, latest seen), the last check, how edge updates."""
        installed = current_version(self._installation)
        manifest = self._checked.manifest if self._checked is not None else None
        latest = manifest.latest if manifest is not None else None
        minimum = manifest.minimum if manifest is not None else None
        return {
            "current": __version__,
            "installed": str(installed),
            "latest": None if latest is None else str(latest),
            "minimum": None if minimum is None else str(minimum),
            "available": latest is not None and latest > installed,
            "required": minimum is not None and installed < minimum,
            "lastCheck": self._last_check,
            "lastError": self._last_error,
            "manifestUrl": self._manifest_url(),
            "method": str(self._installation.method),
            "prefix": str(self._installation.prefix),
            "problem": self._installation.problem,
            "check": self._options.check,
            "auto": self._options.auto,
            "asService": self._options.as_service,
            "updating": self._lock.locked(),
        }

    async def check(self, to: str | None = None, allow_downgrade: bool = False) -> Checked:
        """Fetch and verify the manifest, choose the target; remembered for ``info``.

        Raises:
            UpdateError: as ``edge.update.steps.check``.
        """
        self._last_check = time.time()
        try:
            checked = await check(
                self._manifest_url(),
                self._options.public_key,
                current_version(self._installation),
                to=to,
                allow_downgrade=allow_downgrade,
            )
        except UpdateError as exc:
            self._last_error = str(exc)
            raise
        self._checked, self._last_error = checked, None
        return checked

    def abort(self) -> None:
        """Cancel the update under way unless its installer has started (that one is let
        finish), and refuse every later one: the daemon is stopping."""
        self._aborted = True
        if self._scope is not None:
            self._scope.cancel()

    async def update(self, to: str | None, allow_downgrade: bool, now: bool) -> dict[str, Any]:
        """Update to ``to`` (default: the latest): verify everything, drain, install.

        Returns ``{"status": "installed", "version", "previous", "restarting"}``, or
        ``{"status": "up to date", ...}`` with nothing done; ``restarting`` says a
        service manager will start the new version (else the daemon just stops).

        Raises:
            UpdateError: refused (edge cannot update this installation, a bad
                signature or hash, a downgrade, ...) before anything changed, the
                installer failed, or anything else went wrong (the cause is
                chained); also while another update is under way, and once
                ``abort`` was called (``STOPPING``).
        """
        if self._aborted:
            raise UpdateError(STOPPING)
        if self._lock.locked():
            raise UpdateError("an update is already under way")
        async with self._lock:
            try:
                return await self._update(to, allow_downgrade, now)
            except UpdateError as exc:
                self._last_error = str(exc)
                log.warning("update not installed: %s", exc)
                raise
            except Exception as exc:  # a bug, or an error nobody translated: still an answer
                error = _unexpected("the update", exc)
                self._last_error = str(error)
                log.error("update not installed: %s", error, exc_info=exc)
                raise error from exc

    async def _update(self, to: str | None, allow_downgrade: bool, now: bool) -> dict[str, Any]:
        drained = installed = False
        prepared: Prepared | None = None
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                if self._aborted:  # while this update waited for the lock
                    scope.cancel()
                self._installation.require()
                checked = await self.check(to, allow_downgrade)
                previous = str(checked.plan.current)
                if checked.plan.target is None:
                    return {
                        "status": "up to date",
                        "version": previous,
                        "note": checked.plan.note,
                        "restarting": False,
                    }
                prepared = await prepare(checked, self._installation, self._options.downloads)
                log.info(
                    "update %s verified (%s, sha256 %s); %s",
                    checked.plan.note,
                    prepared.artifact.filename,
                    prepared.artifact.sha256,
                    "stopping calls and captures" if now else "letting calls and captures finish",
                )
                drained = True  # from here on, the daemon may be refusing work
                await self._drain(now)
            self._scope = None
            if scope.cancel_called or prepared is None:  # aborted: the daemon is stopping
                raise UpdateError(STOPPING)
            # No checkpoint from the scope's end to the shield: abort() cannot come between.
            log.info("update: installing with %s", prepared.command.describe())
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(partial(install, prepared, _log_line))
            installed = True
        finally:
            self._scope = None
            if prepared is not None and not installed:
                discard(prepared)  # (``install`` did, if it ran)
            if drained and not installed:
                self._resume()
        version = str(prepared.version)
        log.info("update: edge %s installed (was %s)", version, previous)
        self._publish({"type": "update_installed", "version": version, "previous": previous})
        self._on_installed(version)
        return {
            "status": "installed",
            "version": version,
            "previous": previous,
            "restarting": self._options.as_service,
        }

    async def scheduled(self) -> bool:
        """One scheduled check: announce a new version; install it if allowed to.

        Returns whether the check was made (``False``: no URL yet, no key, or it
        failed; the next try comes sooner). Nothing it meets is raised: an error
        is logged (once) and kept as the last error.
        """
        try:
            return await self._scheduled()
        except Exception as exc:  # a bug, or an error nobody translated: the task goes on
            error = _unexpected("the update check", exc)
            self._last_error = str(error)
            log.error("update check failed: %s", error, exc_info=exc)
            return False

    async def _scheduled(self) -> bool:
        if self._manifest_url() is None:
            log.debug("update check: no manifest URL yet (none configured, none from the cloud)")
            return False
        if not self._options.public_key:
            self._warn_once("no-key", "update checks are off: no [update] public_key in the config")
            return False
        try:
            checked = await self.check()
        except UpdateError as exc:
            log.warning("update check failed: %s", exc)
            return False
        target = checked.plan.target
        if target is None:
            log.debug("update check: %s", checked.plan.note)
            return True
        version = str(target.version)
        if version not in self._announced:
            self._announced.add(version)
            log.info("update available: edge %s (%s)", version, checked.plan.note)
            minimum = checked.manifest.minimum
            self._publish(
                {
                    "type": "update_available",
                    "current": str(checked.plan.current),
                    "latest": version,
                    "minimum": None if minimum is None else str(minimum),
                    "required": minimum is not None and checked.plan.current < minimum,
                }
            )
        if not self._options.auto:
            return True
        if not self._options.as_service:
            self._warn_once(
                "interactive",
                "[update] auto is set, but edge installs by itself only when run as a service: "
                "run 'edge update' to install it",
            )
            return True
        if self._installation.problem is not None:
            self._warn_once("problem", f"no automatic update: {self._installation.problem}")
            return True
        with contextlib.suppress(UpdateError):  # logged by update(); tried at the next check
            await self.update(None, False, False)
        return True

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)


def _log_line(line: str) -> None:
    if line.strip():
        log.info("update: %s", line)


def _unexpected(what: str, exc: Exception) -> UpdateError:
    """An error that is not an ``UpdateError`` as one, saying what it was."""
    return UpdateError(f"{what} failed: {exc.__class__.__name__}: {exc}")


async def serve_updates(
    options: UpdateOptions,
    *,
    manifest_url: Callable[[], str | None],
    drain: Callable[[bool], Awaitable[None]],
    resume: Callable[[], None],
    on_installed: Callable[[str], None],
    publish: Callable[[dict[str, Any]], None],
    installation: Installation | None = None,
    task_status: trio.TaskStatus[Updates] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daily check until cancelled; ``nursery.start`` gives the ``Updates`` handle.

    Args:
        options: what to do (``UpdateOptions.from_config``).
        manifest_url: the manifest's URL now: the config's, else the cloud's.
        drain: refuses new work, then waits until no tool call runs and no capture
            records (``True``: cancels them first).
        resume: takes work again; called once after a ``drain`` whose update did not
            install (the installer failed, or ``Updates.abort`` came first).
        on_installed: called with the new version once it is installed.
        publish: an event for the control API's streams.
        installation: what to update (default: this edge, ``detect_installation()``).
    """
    updates = Updates(
        options,
        installation or detect_installation(),
        manifest_url=manifest_url,
        drain=drain,
        resume=resume,
        on_installed=on_installed,
        publish=publish,
    )
    task_status.started(updates)
    if not options.check:
        await trio.sleep_forever()
    await trio.sleep(options.first_check)
    while True:
        checked = await updates.scheduled()
        await trio.sleep(options.interval if checked else min(options.interval, RETRY))
