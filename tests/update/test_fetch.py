"""The manifest and the wheel over real https on loopback (a trustme CA), and what is refused."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Final

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.version import Version

from edge.errors import UpdateError
from edge.update.fetch import MAX_MANIFEST, download, fetch_manifest, open_client
from edge.update.manifest import Artifact, parse_manifest

from .kit import Site, sha256

#: Seconds for a fetch on a busy machine (a bound on failure).
SOON: Final = 60.0


def _manifest(site: Site, wheel: Path, **entry: object) -> dict[str, object]:
    return {"latest": "0.2.0", "versions": {"0.2.0": site.entry(wheel, **entry)}}


async def _fetch(site: Site, url: str) -> object:
    with trio.fail_after(SOON):
        async with open_client() as client:
            return await fetch_manifest(client, url, site.public_key)


async def test_a_signed_manifest_is_fetched(trust_site: Site, wheels: dict[str, Path]) -> None:
    url = trust_site.publish("good", _manifest(trust_site, wheels["0.2.0"]))
    manifest = await _fetch(trust_site, url)
    assert getattr(manifest, "latest", None) == Version("0.2.0")


async def test_a_manifest_signed_by_another_key_is_refused(
    trust_site: Site, wheels: dict[str, Path]
) -> None:
    url = trust_site.publish(
        "other-key", _manifest(trust_site, wheels["0.2.0"]), signer=Ed25519PrivateKey.generate()
    )
    with pytest.raises(UpdateError, match="signature does not verify against"):
        await _fetch(trust_site, url)


async def test_a_manifest_without_a_signature_is_refused(
    trust_site: Site, wheels: dict[str, Path]
) -> None:
    url = trust_site.publish("unsigned", _manifest(trust_site, wheels["0.2.0"]))
    (trust_site.root / "unsigned" / "versions.json.sig").unlink()
    with pytest.raises(UpdateError, match=r"cannot fetch the manifest's signature .*HTTP 404"):
        await _fetch(trust_site, url)


async def test_plain_http_is_refused_though_the_server_would_answer(
    trust_site: Site, wheels: dict[str, Path]
) -> None:
    url = trust_site.publish("plain", _manifest(trust_site, wheels["0.2.0"]))
    plain = url.replace(trust_site.https, trust_site.http)
    async with open_client() as client:  # the file is there over http
        assert (await client.get(url)).status_code == 200
    with pytest.raises(UpdateError, match=r"the manifest URL 'http://.*' is not an https:// URL"):
        await _fetch(trust_site, plain)


async def test_a_redirect_to_http_is_refused_before_it_is_followed(
    trust_site: Site, wheels: dict[str, Path]
) -> None:
    trust_site.publish("redirected", _manifest(trust_site, wheels["0.2.0"]))
    url = f"{trust_site.https}/to-http/redirected/versions.json"
    with pytest.raises(UpdateError, match=r"a request to 'http://127.0.0.1:.*' is not an https"):
        await _fetch(trust_site, url)


async def test_an_unknown_certificate_authority_is_refused(
    site: Site, wheels: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    url = site.publish("untrusted", _manifest(site, wheels["0.2.0"]))
    with pytest.raises(UpdateError, match=r"cannot fetch the manifest .*CERTIFICATE_VERIFY_FAILED"):
        await _fetch(site, url)


async def test_a_manifest_over_its_cap_is_refused(trust_site: Site) -> None:
    folder = trust_site.root / "huge"
    folder.mkdir()
    (folder / "versions.json").write_bytes(b" " * (MAX_MANIFEST + 1))
    with pytest.raises(UpdateError, match=f"the manifest at .* is over {MAX_MANIFEST} bytes"):
        await _fetch(trust_site, f"{trust_site.https}/huge/versions.json")


def _artifact(site: Site, wheel: Path, **override: object) -> Artifact:
    data = _manifest(site, wheel, **override)
    manifest = parse_manifest(json.dumps(data).encode())
    return manifest.releases[Version("0.2.0")].artifacts[0]


async def test_a_wheel_is_downloaded_hashed_into_a_private_directory(
    trust_site: Site, wheels: dict[str, Path], tmp_path: Path
) -> None:
    wheel = wheels["0.2.0"]
    seen: list[tuple[int, int | None]] = []
    with trio.fail_after(SOON):
        async with open_client() as client:
            path = await download(
                client,
                _artifact(trust_site, wheel),
                tmp_path / "updates",
                progress=lambda done, total: seen.append((done, total)),
            )
    assert path == tmp_path / "updates" / wheel.name
    assert sha256(path) == sha256(wheel)
    assert stat.S_IMODE((tmp_path / "updates").stat().st_mode) == 0o700
    assert seen
    assert seen[-1] == (wheel.stat().st_size, wheel.stat().st_size)
    assert os.listdir(tmp_path / "updates") == [wheel.name]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"sha256": "0" * 64}, "sha256 mismatch .*refused, nothing installed"),
        ({"size": 1000}, "is over 1000 bytes: refused"),
    ],
)
async def test_a_wheel_that_is_not_what_the_manifest_says_is_refused_and_removed(
    trust_site: Site,
    wheels: dict[str, Path],
    tmp_path: Path,
    override: dict[str, object],
    message: str,
) -> None:
    artifact = _artifact(trust_site, wheels["0.2.0"], **override)
    with trio.fail_after(SOON):
        async with open_client() as client:
            with pytest.raises(UpdateError, match=message):
                await download(client, artifact, tmp_path / "updates")
    assert os.listdir(tmp_path / "updates") == []


async def test_a_wheel_shorter_than_the_manifest_says_is_refused(
    trust_site: Site, wheels: dict[str, Path], tmp_path: Path
) -> None:
    size = wheels["0.2.0"].stat().st_size
    artifact = _artifact(trust_site, wheels["0.2.0"], size=size + 1)
    with trio.fail_after(SOON):
        async with open_client() as client:
            with pytest.raises(
                UpdateError, match=f"has {size} bytes, the manifest says {size + 1}"
            ):
                await download(client, artifact, tmp_path / "updates")
    assert os.listdir(tmp_path / "updates") == []


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://127.0.0.1:not-a-port/versions.json", "Invalid port"),  # httpx.InvalidURL
        ("https://xn--zz/versions.json", "Invalid A-label"),  # idna's UnicodeError
    ],
    ids=["invalid port", "invalid host name"],
)
async def test_a_url_httpx_cannot_use_is_an_update_error(
    trust_site: Site, url: str, said: str
) -> None:
    """Neither is an httpx.HTTPError: they used to escape the updates task and end it."""
    with pytest.raises(UpdateError, match=f"cannot fetch the manifest from {url}: .*{said}"):
        await _fetch(trust_site, url)


async def test_a_downloads_directory_that_cannot_be_made_is_an_update_error(
    trust_site: Site, wheels: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    directory = tmp_path / "a-file" / "updates"
    with trio.fail_after(SOON):
        async with open_client() as client:
            with pytest.raises(UpdateError, match=f"cannot write {directory}: "):
                await download(client, _artifact(trust_site, wheels["0.2.0"]), directory)
