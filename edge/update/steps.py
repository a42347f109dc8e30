"""The steps of an update, shared by ``edge update`` and the daemon.

1. ``check``: the signed manifest fetched and verified, the target chosen
   (``Plan``); nothing downloaded.
2. ``prepare``: the installer found (refused here if edge cannot update this
   installation), the target's wheel for this interpreter downloaded and its
   sha256 checked, the installer's command ready; nothing installed.
3. ``install``: the installer run (blocking: the daemon runs it in a thread),
   then every other wheel in the downloads directory removed. The installed
   wheel stays: pipx and uv record its path (``pipx reinstall`` uses it).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from packaging.tags import Tag, sys_tags
from packaging.version import Version

from .. import __version__
from ..errors import UpdateError
from .fetch import Progress, download, fetch_manifest, open_client
from .install import Command, Installation, find_installer, installer_command, run_installer
from .manifest import Artifact, Manifest, Plan, Release, choose_artifact, choose_target

__all__ = [
    "NO_KEY",
    "NO_URL",
    "Checked",
    "Prepared",
    "check",
    "current_version",
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
    directory = downloads if downloads is not None else Path(tempfile.mkdtemp(prefix="edge-up-"))
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
    """Run the installer (blocking); keep only this wheel in its directory.

    Raises:
        UpdateError: the installer failed (its wheel is removed).
    """
    try:
        run_installer(prepared.command, on_line)
    except BaseException:
        prepared.wheel.unlink(missing_ok=True)
        raise
    for old in prepared.wheel.parent.glob("*.whl"):
        if old != prepared.wheel:
            with contextlib.suppress(OSError):
                old.unlink()
