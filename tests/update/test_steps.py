"""The steps ``edge update`` and the daemon share, end to end against the https site, with the
stand-in environment of ``kit.StandIn`` as what they install into: the wheel is hashed again
right before the installer runs (pipx and uv install it by path, and a daemon may have drained
for a long while since the download)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest
import trio

from edge.errors import UpdateError
from edge.update.steps import Prepared, check, current_version, install, prepare

from .kit import NEW, Site, StandIn, sha256

#: Seconds for a check and a download on a busy machine (a bound on failure).
SOON: Final = 60.0


@pytest.fixture
def manifest_url(trust_site: Site, wheels: dict[str, Path]) -> str:
    return trust_site.publish(
        "steps", {"latest": NEW, "versions": {NEW: trust_site.entry(wheels[NEW])}}
    )


async def _prepared(site: Site, url: str, stand_in: StandIn, downloads: Path) -> Prepared:
    installation = stand_in.installation()
    with trio.fail_after(SOON):
        checked = await check(url, site.public_key, current_version(installation))
        return await prepare(checked, installation, downloads)


async def test_the_verified_wheel_is_installed_and_checked_after(
    trust_site: Site, manifest_url: str, wheels: dict[str, Path], tmp_path: Path
) -> None:
    stand_in = StandIn.make(tmp_path / "env")
    prepared = await _prepared(trust_site, manifest_url, stand_in, tmp_path / "updates")
    assert sha256(prepared.wheel) == sha256(wheels[NEW])
    lines: list[str] = []
    await trio.to_thread.run_sync(install, prepared, lines.append)
    assert lines == ["installed"]
    assert stand_in.file("holds").read_text() == NEW


async def test_a_wheel_changed_after_its_check_is_refused_before_the_installer_runs(
    trust_site: Site, manifest_url: str, tmp_path: Path
) -> None:
    stand_in = StandIn.make(tmp_path / "env")
    prepared = await _prepared(trust_site, manifest_url, stand_in, tmp_path / "updates")
    with prepared.wheel.open("ab") as f:  # while the daemon drained, say
        f.write(b"\0")
    with pytest.raises(UpdateError, match="changed since its sha256 was checked") as caught:
        await trio.to_thread.run_sync(install, prepared, lambda line: None)
    assert str(caught.value).endswith("refused, nothing installed")
    assert not stand_in.started
    assert not prepared.wheel.exists()  # not left for `pipx reinstall` to pick up
    assert not prepared.command.files[0].exists()
