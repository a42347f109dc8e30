"""What the update tests build: wheels of edge, venvs that hold one, a signed https site.

``build_wheels`` copies the source tree twice, sets the versions and builds both
wheels at once with pip. ``make_venv`` makes a real virtual environment (``python
-m venv``) that sees the test venv's installed packages through a ``.pth`` file
naming a directory of symlinks to them (edge itself left out, pip kept), so pip
finds every dependency of edge satisfied and nothing is downloaded; then it
installs a wheel of edge into it with pip. ``Site`` is an https server on
loopback (certificate from a ``trustme`` CA, trusted by edge through
``SSL_CERT_FILE``) and a plain http one, both serving one directory, where
tests publish manifests signed with an Ed25519 key of the session.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from packaging.version import Version

from edge.update.install import Installation, Method

#: The repository (the source tree the wheels are built from).
REPO: Final = Path(__file__).resolve().parents[2]
#: The two versions the tests build.
OLD: Final = "0.1.0"
NEW: Final = "0.2.0"
#: Seconds a wheel build, a pip or pipx run, or an ``edge update`` may take (a bound on failure).
BUILD_WITHIN: Final = 300.0
RUN_WITHIN: Final = 300.0
#: What the source tree copy needs to build.
SOURCES: Final = ("pyproject.toml", "setup.py", "README.md", "native", "edge")


def _set_version(tree: Path, version: str) -> None:
    for name, pattern, line in (
        ("pyproject.toml", r'^version = "[^"]*"$', f'version = "{version}"'),
        (
            "edge/__init__.py",
            r'^__version__: Final = "[^"]*"$',
            f'__version__: Final = "{version}"',
        ),
    ):
        path = tree / name
        text, count = re.subn(pattern, line, path.read_text(encoding="utf-8"), flags=re.M)
        assert count == 1, f"no version line to set in {name}"
        path.write_text(text, encoding="utf-8")


def build_wheels(work: Path, versions: tuple[str, ...] = (OLD, NEW)) -> dict[str, Path]:
    """A wheel of edge for each of ``versions``, built at once from copies of the source.

    pip builds them in isolated build environments: the build requirements
    (setuptools >= 77, cffi) are newer than what the test venv may hold.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    out = work / "dist"
    builds = []
    for version in versions:
        tree = work / f"src-{version}"
        for name in SOURCES:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, tree / name, ignore=ignore)
            else:
                tree.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, tree / name)
        _set_version(tree, version)
        log = (work / f"build-{version}.log").open("wb")
        argv = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(tree)]
        builds.append((version, log, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)))
    for version, log, process in builds:
        try:
            code = process.wait(timeout=BUILD_WITHIN)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
        text = (work / f"build-{version}.log").read_text(errors="replace")
        assert code == 0, f"building edge {version} failed:\n{text[-3000:]}"
    wheels = {v: next(out.glob(f"edge-{v}-*.whl")) for v in versions}
    return wheels


def link_dependencies(target: Path) -> Path:
    """A directory of symlinks to the test venv's installed distributions, edge left out."""
    target.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    skip = ("edge", "edge-", "__editable__", "__pycache__", "setuptools", "pkg_resources",
            "_distutils_hack")  # fmt: skip
    for entry in site.iterdir():
        if entry.name.endswith(".pth") or entry.name == "edge" or entry.name.startswith(skip):
            continue
        (target / entry.name).symlink_to(entry)
    return target


def make_venv(where: Path, wheel: Path, deps: Path) -> Path:
    """A virtual environment at ``where`` with ``wheel`` installed by pip; its directory."""
    run([sys.executable, "-m", "venv", "--without-pip", str(where)])
    python = where / "bin" / "python"
    (site_packages(where) / "edge-test-deps.pth").write_text(f"{deps}\n", encoding="utf-8")
    run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)])
    return where


#: The stand-in Python of ``StandIn``: ``-I -c CODE`` (edge asking which version the
#: environment holds) prints the file ``holds``; anything else is the installer (``-I -m pip
#: install ...``): it notes that it started, waits for ``go`` while ``hold`` exists, fails
#: when ``fail`` exists, else "installs" by copying ``installs`` to ``holds``.
STAND_IN_PYTHON: Final = """\
#!{python}
import sys, time
from pathlib import Path
here = Path(__file__).parent
if sys.argv[1:3] == ["-I", "-c"]:
    print((here / "holds").read_text())
    raise SystemExit(0)
(here / "started").write_text(" ".join(sys.argv[1:]))
while (here / "hold").exists() and not (here / "go").exists():
    time.sleep(0.01)
if (here / "fail").exists():
    print("ERROR: the stand-in installer fails, as asked")
    raise SystemExit(1)
if (here / "installs").exists():
    (here / "holds").write_text((here / "installs").read_text())
print("installed")
"""


@dataclass
class StandIn:
    """A virtual environment's stand-in for the steps that need none (a fast installer that
    can be held, made to fail, or to install nothing): ``bin/python`` is ``STAND_IN_PYTHON``,
    and the files it reads are in ``bin``."""

    prefix: Path

    @classmethod
    def make(cls, prefix: Path, holds: str = OLD, installs: str | None = NEW) -> StandIn:
        bin_dir = prefix / "bin"
        bin_dir.mkdir(parents=True)
        python = bin_dir / "python"
        python.write_text(STAND_IN_PYTHON.format(python=sys.executable), encoding="utf-8")
        python.chmod(0o755)
        (bin_dir / "holds").write_text(holds)
        if installs is not None:
            (bin_dir / "installs").write_text(installs)
        return cls(prefix)

    def file(self, name: str) -> Path:
        return self.prefix / "bin" / name

    @property
    def started(self) -> bool:
        """Whether its installer ran."""
        return self.file("started").exists()

    def installation(self) -> Installation:
        """A venv ``Installation`` of edge ``holds`` at ``prefix``."""
        holds = Version(self.file("holds").read_text())
        return Installation(Method.VENV, self.prefix, self.file("python"), holds)


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``argv`` to its end; its output in the assertion if it fails."""
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=RUN_WITHIN, check=False, **kwargs
    )
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def edge_update(
    edge: list[str], config: Path, env: dict[str, str], *flags: str
) -> subprocess.CompletedProcess[str]:
    """``edge update --config CONFIG FLAGS`` with no daemon to answer (a port nothing uses)."""
    argv = [*edge, "update", "--config", str(config), "--control", f"127.0.0.1:{free_port()}"]
    return subprocess.run(
        [*argv, *flags], capture_output=True, text=True, env=env, timeout=RUN_WITHIN, check=False
    )


def version_of(edge: Path, env: dict[str, str] | None = None) -> str:
    """What ``edge --version`` prints."""
    return run([str(edge), "--version"], env=env).stdout.strip()


def snapshot(venv: Path) -> list[tuple[str, int, int]]:
    """Every file of the venv's site-packages (bytecode caches left out): path, size, mtime."""
    root = site_packages(venv)
    return sorted(
        (str(p.relative_to(root)), p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in root.rglob("*")
        if "__pycache__" not in p.parts
    )


def free_port() -> int:
    """A loopback TCP port nothing listens on (for a --control that no daemon answers)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the site -------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Files of the site's directory; ``/to-http/PATH`` redirects to the plain server."""

    plain: str = ""

    def do_GET(self) -> None:
        if self.path.startswith("/to-http/"):
            self.send_response(302)
            self.send_header("Location", self.plain + self.path.removeprefix("/to-http"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up early (a refused download): not the test's business


@dataclass
class Site:
    """A signed site: ``https`` and ``http`` base URLs over the directory ``root``."""

    root: Path
    https: str
    http: str
    key: Ed25519PrivateKey
    #: A bundle of the system's CAs and the test CA, for ``SSL_CERT_FILE``.
    ca_bundle: Path

    @property
    def public_key(self) -> str:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def add_wheel(self, wheel: Path) -> str:
        """Serve ``wheel``; its https URL."""
        folder = self.root / "wheels"
        folder.mkdir(exist_ok=True)
        shutil.copy2(wheel, folder / wheel.name)
        return f"{self.https}/wheels/{wheel.name}"

    def entry(self, wheel: Path, **override: Any) -> dict[str, Any]:
        """A manifest's entry for ``wheel`` (served), with ``override`` on top."""
        version = wheel.name.split("-")[1]
        entry = {"spec": f"edge=={version}", "url": self.add_wheel(wheel), "sha256": sha256(wheel)}
        return {**entry, **override}

    def publish(
        self, name: str, manifest: dict[str, Any], *, signer: Ed25519PrivateKey | None = None
    ) -> str:
        """``manifest`` at ``/NAME/versions.json``, signed (by ``signer``, default the site's
        key), ``.sig`` beside it; its https URL."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps(manifest, indent=2).encode()
        (folder / "versions.json").write_bytes(data)
        signature = (signer or self.key).sign(data)
        (folder / "versions.json.sig").write_text(base64.b64encode(signature).decode() + "\n")
        return f"{self.https}/{name}/versions.json"

    def config(self, path: Path, manifest_url: str, *, public_key: str | None = None) -> Path:
        """A config.toml at ``path`` naming the manifest and the key."""
        key = self.public_key if public_key is None else public_key
        path.write_text(
            f'[update]\nmanifest_url = "{manifest_url}"\npublic_key = "{key}"\n', encoding="utf-8"
        )
        return path


def _system_cas() -> bytes:
    import certifi

    paths = [os.environ.get("PIP_CERT", ""), "/etc/ssl/certs/ca-certificates.crt", certifi.where()]
    return b"".join(Path(p).read_bytes() for p in dict.fromkeys(paths) if p and Path(p).is_file())


@contextmanager
def serve_site(root: Path) -> Iterator[Site]:
    """The site over ``root``, on loopback, until the block ends."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    bundle = root.parent / "ca-bundle.pem"
    bundle.write_bytes(_system_cas() + ca.cert_pem.bytes())
    root.mkdir(parents=True, exist_ok=True)
    plain = _Server(("127.0.0.1", 0), partial(_Handler, directory=root))
    plain_url = f"http://127.0.0.1:{plain.server_address[1]}"
    handler = type("SiteHandler", (_Handler,), {"plain": plain_url})
    secure = _Server(("127.0.0.1", 0), partial(handler, directory=root))
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (plain, secure)]
    for thread in threads:
        thread.start()
    try:
        yield Site(
            root=root,
            https=f"https://127.0.0.1:{secure.server_address[1]}",
            http=plain_url,
            key=Ed25519PrivateKey.generate(),
            ca_bundle=bundle,
        )
    finally:
        for server in (plain, secure):
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=10)
