"""Session fixtures of the update tests: two wheels of edge, the dependencies' link
directory, the signed https site (see ``kit``).

Session fixtures are made once per pytest-xdist worker; the wheels, the costly
part, are built once per run and shared by the workers (see ``wheels``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .kit import Site, build_wheels, link_dependencies, serve_site


@pytest.fixture(scope="session")
def update_work() -> Iterator[Path]:
    """A directory for the session's wheels, links and site."""
    work = Path(tempfile.mkdtemp(prefix="edge-update-tests-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def wheels(update_work: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{version: wheel} for 0.1.0 and 0.2.0, built from this source tree.

    Under pytest-xdist one build serves every worker: the first to take the lock
    builds in the run's common temporary directory, the others wait and use its
    wheels (which no test changes).
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build_wheels(update_work / "build")
    shared = tmp_path_factory.getbasetemp().parent / "edge-update-wheels"
    shared.mkdir(exist_ok=True)
    built = shared / "wheels.json"
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if built.exists():
            return {v: Path(p) for v, p in json.loads(built.read_text()).items()}
        found = build_wheels(Path(tempfile.mkdtemp(prefix="build-", dir=shared)))
        built.write_text(json.dumps({v: str(p) for v, p in found.items()}))
        return found


@pytest.fixture(scope="session")
def deps(update_work: Path) -> Path:
    """Links to the test venv's distributions (edge left out), for ``make_venv``."""
    return link_dependencies(update_work / "deps")


@pytest.fixture(scope="session")
def site(update_work: Path) -> Iterator[Site]:
    with serve_site(update_work / "site") as served:
        yield served


@pytest.fixture
def trust_site(site: Site, monkeypatch: pytest.MonkeyPatch) -> Site:
    """The site, its CA trusted by this process (``SSL_CERT_FILE``, as a user would)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(site.ca_bundle))
    return site


@pytest.fixture
def user_env(site: Site, tmp_path: Path) -> dict[str, str]:
    """The environment of an ``edge`` run as a user: the site's CA trusted, the XDG
    directories in ``tmp_path``, no service."""
    env = dict(os.environ)
    env.pop("EDGE_SERVICE", None)
    env.pop("EDGE_TOKEN", None)
    env["SSL_CERT_FILE"] = str(site.ca_bundle)
    for name in ("CONFIG", "STATE", "DATA", "CACHE"):
        env[f"XDG_{name}_HOME"] = str(tmp_path / "xdg" / name.lower())
    return env
