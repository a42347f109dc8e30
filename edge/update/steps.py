"""The steps of an update, shared by ``edge update`` and the daemon.

1. ``check``: the signed manifest fetched and verified, the target chosen
   (``Plan``); nothing downloaded.
2. ``prepare``: the installer found (refused here if edge cannot update this
   installation), the target's wheel for this interpreter downloaded and its
   sha256 checked, the installer's command ready; nothing installed.
3. ``install``: the wheel hashed again (it may have waited for a drain: pipx
   and uv install it by path, unchecked), the installer run (blocking: the
   daemon runs it in a thread), the environment asked which edge it now holds
   (it must be the target), then every other wheel in the downloads directory
   removed. The installed wheel stays: pipx and uv record its path (``pipx
   reinstall`` uses it).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from packaging.tags import Tag, sys_tags
from packaging.version import Version

from .. import __version__
from ..errors import UpdateError
from .fetch import Progress, cannot_write, download, fetch_manifest, open_client
from .install import (
    Command,
    Installation,
    find_installer,
    installer_command,
    run_installer,
    verify_installed,
)
from .manifest import Artifact, Manifest, Plan, Release, choose_artifact, choose_target

__all__ = [
    "NO_KEY",
    "NO_URL",
    "Checked",
    "Prepared",
    "check",
    "current_version",
    "discard",
    "downloads_dir",
    "install",
    "prepare",
]

#: Why there is nothing to check against.
NO_URL: Final = (
    "no versions manifest: set [update] manifest_url in config.toml "
    "(or connect to the cloud, which names one)"
)
NO_KEY: Final = (
    "no [update] public_key in config.toml: edge installs only what a manifest signed "
    "with that key lists"
)
#: The directory of the state directory that holds downloaded wheels.
DOWNLOADS: Final = "updates"
#: Bytes read at a time when a wheel is hashed again.
HASH_CHUNK: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Checked:
    """A verified manifest and what it means for this installation."""

    url: str
    manifest: Manifest
    plan: Plan


@dataclass(frozen=True, slots=True)
class Prepared:
    """A verified wheel on disk and the command that installs it."""

    checked: Checked
    release: Release
    artifact: Artifact
    wheel: Path
    command: Command

    @property
    def version(self) -> Version:
        return self.release.version


def current_version(installation: Installation) -> Version:
    """The version an update replaces: the installed distribution's, else the running one."""
    return installation.version or Version(__version__)


def downloads_dir(state_dir: Path | None) -> Path | None:
    """Where wheels are downloaded and kept: ``updates/`` in the state directory."""
    return None if state_dir is None else state_dir / DOWNLOADS


async def check(
    url: str | None,
    public_key: str | None,
    current: Version,
    *,
    to: str | None = None,
    allow_downgrade: bool = False,
) -> Checked:
    """Fetch and verify the manifest at ``url``; choose the target for ``current``.

    Raises:
        UpdateError: no URL or key, or anything ``fetch_manifest`` and
            ``choose_target`` refuse.
    """
    if not url:
        raise UpdateError(NO_URL)
    if not public_key:
        raise UpdateError(NO_KEY)
    async with open_client() as client:
        manifest = await fetch_manifest(client, url, public_key)
    plan = choose_target(manifest, current, to=to, allow_downgrade=allow_downgrade)
    return Checked(url, manifest, plan)


async def prepare(
    checked: Checked,
    installation: Installation,
    downloads: Path | None,
    *,
    progress: Progress | None = None,
    tags: Iterable[Tag] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Prepared:
    """Download and verify the planned wheel, and ready its installer.

    Args:
        checked: what ``check`` gave; its plan must have a target.
        installation: where it goes (``detect_installation``).
        downloads: the directory for wheels (``downloads_dir``); ``None``: a new
            temporary one.
        progress: called as the wheel arrives.
        tags: this interpreter's wheel tags, best first (default ``sys_tags()``).
        environ: the installer's environment (default ``os.environ``).

    Raises:
        UpdateError: edge cannot update ``installation`` or its installer is
            missing (checked before downloading), no wheel suits this platform,
            or the download is refused (``edge.update.fetch.download``).
    """
    release = checked.plan.target
    if release is None:
        raise UpdateError(checked.plan.note)
    find_installer(installation, environ)
    artifact = choose_artifact(release, sys_tags() if tags is None else tags)
    if downloads is not None:
        directory = downloads
    else:
        try:
            directory = Path(tempfile.mkdtemp(prefix="edge-up-"))
        except OSError as exc:
            raise cannot_write(Path(tempfile.gettempdir()), exc) from exc
    async with open_client() as client:
        wheel = await download(client, artifact, directory, progress=progress)
    try:
        command = installer_command(
            installation, wheel, artifact.sha256, spec=release.spec, environ=environ
        )
    except BaseException:
        wheel.unlink(missing_ok=True)
        raise
    return Prepared(checked, release, artifact, wheel, command)


def install(prepared: Prepared, on_line: Callable[[str], None]) -> None:
    """Hash the wheel again, run the installer (blocking), check what it installed; keep
    only this wheel in its directory.

    Raises:
        UpdateError: the wheel changed since it was checked (nothing is run), the
            installer failed, or the environment does not hold the target version
            afterwards (the wheel is removed in each case).
    """
    try:
        _recheck(prepared)
        run_installer(prepared.command, on_line)
        verify_installed(prepared.command, prepared.version)
    except BaseException:
        discard(prepared)
        raise
    for old in prepared.wheel.parent.glob("*.whl"):
        if old != prepared.wheel:
            with contextlib.suppress(OSError):
                old.unlink()


def discard(prepared: Prepared) -> None:
    """Remove the wheel and the files made for its installer: it is not to be installed
    (it failed, or the update was cancelled before its installer ran)."""
    for path in (prepared.wheel, *prepared.command.files):
        with contextlib.suppress(OSError):
            path.unlink()


def _recheck(prepared: Prepared) -> None:
    """Refuse a wheel whose sha256 is no longer the manifest's (changed on disk since the
    download was checked)."""
    wheel = prepared.wheel
    digest = hashlib.sha256()
    try:
        with wheel.open("rb") as f:
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise UpdateError(f"cannot read {wheel}: {exc.strerror or exc}: nothing installed") from exc
    if not hmac.compare_digest(digest.hexdigest(), prepared.artifact.sha256):
        raise UpdateError(
            f"{wheel} changed since its sha256 was checked (now {digest.hexdigest()}, the "
            f"manifest says {prepared.artifact.sha256}): refused, nothing installed"
        )
