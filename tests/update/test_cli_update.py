"""``edge update`` as a user runs it: a real venv holding a wheel of edge 0.1.0, updated from
a signed manifest over https on loopback; what is refused changes nothing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .kit import NEW, OLD, Site, edge_update, make_venv, snapshot, version_of

#: Something a manifest's upgrade command would create if edge ran it.
PWNED: Final = "pwned-by-the-manifest"


def _manifest(site: Site, wheels: dict[str, Path], tmp_path: Path, **over: Any) -> dict[str, Any]:
    return {
        "latest": NEW,
        "minimum": OLD,
        "upgradeCommand": f"touch {tmp_path / PWNED}",
        "versions": {NEW: site.entry(wheels[NEW]), OLD: site.entry(wheels[OLD])},
        **over,
    }


def _downloads(env: dict[str, str]) -> list[str]:
    folder = Path(env["XDG_STATE_HOME"]) / "edge" / "updates"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.slow
def test_a_venv_is_updated_and_goes_back_only_when_allowed(
    site: Site, wheels: dict[str, Path], deps: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    venv = make_venv(tmp_path / "venv", wheels[OLD], deps)
    edge = [str(venv / "bin" / "edge")]
    url = site.publish("venv", _manifest(site, wheels, tmp_path))
    config = site.config(tmp_path / "config.toml", url)
    assert version_of(venv / "bin" / "edge") == f"edge {OLD}"

    check = edge_update(edge, config, user_env, "--check")
    assert check.returncode == 1, check.stderr
    assert f"installed  edge {OLD} (venv {venv}" in check.stdout
    assert f"available  {OLD} → {NEW}: {wheels[NEW].name}" in check.stdout
    assert "would run" in check.stdout
    assert "-m pip install --quiet --require-hashes" in check.stdout

    done = edge_update(edge, config, user_env)
    assert done.returncode == 0, done.stderr
    assert f"edge {NEW} installed (was {OLD})" in done.stdout
    assert f"downloaded {wheels[NEW].name}" in done.stderr
    assert "verified   sha256" in done.stderr
    assert version_of(venv / "bin" / "edge") == f"edge {NEW}"
    assert _downloads(user_env) == [wheels[NEW].name]

    again = edge_update(edge, config, user_env, "--check")
    assert again.returncode == 0, again.stderr
    assert f"edge {NEW} is installed: up to date" in again.stdout

    before = snapshot(venv)
    back = edge_update(edge, config, user_env, "--to", OLD)
    assert back.returncode == 1
    assert f"{OLD} is older than the installed {NEW}: a downgrade, refused" in back.stderr
    assert snapshot(venv) == before

    allowed = edge_update(edge, config, user_env, "--to", OLD, "--allow-downgrade")
    assert allowed.returncode == 0, allowed.stderr
    assert version_of(venv / "bin" / "edge") == f"edge {OLD}"
    assert _downloads(user_env) == [wheels[OLD].name]  # only the installed one is kept
    assert not (tmp_path / PWNED).exists()


@pytest.fixture(scope="module")
def old_venv(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path], deps: Path) -> Path:
    """A venv with edge 0.1.0 that every refusal below must leave as it is."""
    return make_venv(tmp_path_factory.mktemp("refusals") / "venv", wheels[OLD], deps)


def _tampered(site: Site, wheels: dict[str, Path]) -> dict[str, Any]:
    """A manifest whose wheel is served with a byte more than the one it has the hash of."""
    good = wheels[NEW]
    bad = site.root / "tampered" / good.name
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(good.read_bytes() + b"\0")
    entry = site.entry(good, url=f"{site.https}/tampered/{good.name}")
    return {"latest": NEW, "versions": {NEW: entry}}


CASES: Final = ["tampered wheel", "other key", "plain http manifest", "http artifact"]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_refused_update_changes_nothing(
    case: str,
    site: Site,
    wheels: dict[str, Path],
    old_venv: Path,
    tmp_path: Path,
    user_env: dict[str, str],
) -> None:
    name = case.replace(" ", "-")
    code, said = 1, ""
    if case == "tampered wheel":
        url = site.publish(name, _tampered(site, wheels))
        said = f"{wheels[NEW].name}: sha256 mismatch (the manifest says"
    elif case == "other key":
        url = site.publish(
            name, _manifest(site, wheels, tmp_path), signer=Ed25519PrivateKey.generate()
        )
        said = "the manifest's signature does not verify against [update] public_key: refused"
    elif case == "plain http manifest":
        url = site.publish(name, _manifest(site, wheels, tmp_path)).replace(site.https, site.http)
        code, said = 2, f"the manifest URL '{url}' is not an https:// URL: refused"
    else:
        manifest = _manifest(site, wheels, tmp_path)
        manifest["versions"][NEW]["url"] = manifest["versions"][NEW]["url"].replace(
            site.https, site.http
        )
        url = site.publish(name, manifest)
        said = f"versions.{NEW}.url 'http://"
    config = site.config(tmp_path / "config.toml", url)
    before = snapshot(old_venv)
    done = edge_update([str(old_venv / "bin" / "edge")], config, user_env)
    assert done.returncode == code, done.stderr
    assert said in done.stderr
    assert "installed" not in done.stdout
    assert snapshot(old_venv) == before
    assert version_of(old_venv / "bin" / "edge") == f"edge {OLD}"
    assert _downloads(user_env) == []  # no wheel, no partial file
    assert not (tmp_path / PWNED).exists()


def test_an_editable_checkout_is_refused_before_anything_is_fetched(
    site: Site, wheels: dict[str, Path], tmp_path: Path, user_env: dict[str, str]
) -> None:
    repo = Path(__file__).resolve().parents[2]
    url = site.publish("editable", _manifest(site, wheels, tmp_path))
    config = site.config(tmp_path / "config.toml", url)
    here = [sys.executable, "-m", "edge"]
    done = edge_update(here, config, user_env)
    assert done.returncode == 1
    assert f"edge: error: edge {OLD} is an editable install of the checkout {repo}" in done.stderr
    assert f"git -C {repo} pull && {sys.executable} -m pip install -e {repo}" in done.stderr
    assert _downloads(user_env) == []
    check = edge_update(here, config, user_env, "--check")
    assert check.returncode == 1
    assert f"available  {OLD} → {NEW}" in check.stdout
    assert "edge cannot install it here: edge 0.1.0 is an editable install" in check.stdout


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ("[update]\npublic_key = 'x'\n", "no versions manifest: set [update] manifest_url"),
        ("[update]\nmanifest_url = 'https://x/v.json'\n", "no [update] public_key in config"),
        (
            "[update]\nmanifest_url = 'https://x/v.json'\npublic_key = 'abc'\n",
            "[update] public_key is not an Ed25519 public key",
        ),
    ],
)
def test_a_config_that_cannot_update_is_a_usage_error(
    config: str, said: str, tmp_path: Path, user_env: dict[str, str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config)
    for flags in ((), ("--check",)):
        done = edge_update([sys.executable, "-m", "edge"], path, user_env, *flags)
        assert done.returncode == 2
        assert said in done.stderr
