"""Over https only: the manifest and its signature, and an artifact hashed while it streams.

Every request, redirects included, must be ``https://`` (a request hook refuses
any other before it is sent). Certificates are checked against the system's
trust (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set, as httpx reads them, else
certifi's bundle): a private CA is trusted by pointing ``SSL_CERT_FILE`` at a
bundle that holds it. Every body has a size cap, and an artifact is written to
a private partial file, its sha256 computed on the bytes as they arrive; it
gets its wheel's name only once the hash and the size match the manifest.
Every failure is an ``UpdateError``: httpx's errors, a URL httpx cannot use, and
a downloads directory that cannot be made or written.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

import httpx
import trio

from .. import __version__
from ..errors import UpdateError
from ..fs import make_private_dir
from .manifest import (
    Artifact,
    Manifest,
    decode_public_key,
    parse_manifest,
    require_https,
    signature_url,
    verify_signature,
)

__all__ = [
    "MAX_ARTIFACT",
    "MAX_MANIFEST",
    "MAX_SIGNATURE",
    "Progress",
    "cannot_write",
    "download",
    "fetch_manifest",
    "open_client",
]

#: Bytes a manifest may have.
MAX_MANIFEST: Final = 1024 * 1024
#: Bytes a signature file may have (base64 of 64 bytes, and some white space).
MAX_SIGNATURE: Final = 1024
#: Bytes an artifact may have.
MAX_ARTIFACT: Final = 256 * 1024 * 1024
#: Seconds to connect, and between two reads of a body.
TIMEOUT: Final = 30.0
#: Redirects followed (each one https too).
MAX_REDIRECTS: Final = 5
#: What httpx raises for a URL it cannot use (``InvalidURL``: a bad port, a character it
#: refuses; ``UnicodeError``: a host name IDNA refuses), besides its ``HTTPError``s.
_FETCH_ERRORS: Final = (httpx.HTTPError, httpx.InvalidURL, UnicodeError)

#: ``progress(bytes so far, bytes in all if known)``, called as an artifact arrives.
Progress = Callable[[int, int | None], None]


async def _https_only(request: httpx.Request) -> None:
    require_https(str(request.url), "a request to")


def open_client() -> httpx.AsyncClient:
    """The client for the manifest and the artifacts (close it: ``async with``)."""
    return httpx.AsyncClient(
        timeout=TIMEOUT,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        event_hooks={"request": [_https_only]},
        headers={"User-Agent": f"edge/{__version__}"},
    )


def _failure(what: str, url: str, exc: Exception) -> UpdateError:
    """What to say when httpx failed: its message, else its causes' (a TLS error)."""
    detail: BaseException | None = exc
    while detail is not None and not str(detail):
        detail = detail.__cause__ or detail.__context__
    text = str(detail) if detail is not None else exc.__class__.__name__
    return UpdateError(f"cannot fetch {what} from {url}: {text}")


async def _get(client: httpx.AsyncClient, url: str, cap: int, what: str) -> bytes:
    """The body at ``url``, at most ``cap`` bytes."""
    body = bytearray()
    failure: UpdateError | None = None
    try:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise UpdateError(f"cannot fetch {what} from {url}: HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise UpdateError(f"{what} at {url} is over {cap} bytes: refused")
            # To stop early, the next read is cancelled: leaving httpx's iterators half-way
            # would leave their inner generators to the garbage collector.
            with trio.CancelScope() as stop:
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > cap:
                        failure = UpdateError(f"{what} at {url} is over {cap} bytes: refused")
                        stop.cancel()
    except _FETCH_ERRORS as exc:
        raise _failure(what, url, exc) from exc
    if failure is not None:
        raise failure
    return bytes(body)


async def fetch_manifest(client: httpx.AsyncClient, url: str, public_key: str) -> Manifest:
    """The manifest at ``url``, its signature verified against ``public_key``, parsed.

    Raises:
        UpdateError: ``url`` is not https, the key is malformed, a fetch failed or
            went over its cap, the signature does not verify, or the manifest
            does not parse.
    """
    require_https(url, "the manifest URL")
    key = decode_public_key(public_key)
    data = await _get(client, url, MAX_MANIFEST, "the manifest")
    signature = await _get(client, signature_url(url), MAX_SIGNATURE, "the manifest's signature")
    verify_signature(data, signature, key)
    return parse_manifest(data)


async def download(
    client: httpx.AsyncClient,
    artifact: Artifact,
    directory: Path,
    *,
    progress: Progress | None = None,
) -> Path:
    """``artifact`` into ``directory`` (made 0700 if missing), checked: its path.

    The bytes go to a partial file, hashed on the way; the file is renamed to the
    wheel's name only when its sha256 (and size, if the manifest gives one)
    match. Anything else removes the partial file.

    Raises:
        UpdateError: the URL is not https, the fetch failed, the body is over its
            size (the manifest's, else ``MAX_ARTIFACT``), its sha256 differs, or
            ``directory`` cannot be made or written.
    """
    require_https(artifact.url, "the artifact URL")
    try:
        make_private_dir(directory)
        fd, name = tempfile.mkstemp(prefix=".download-", suffix=".partial", dir=directory)
    except OSError as exc:
        raise cannot_write(directory, exc) from exc
    partial = Path(name)
    try:
        try:
            got, size = await _stream_to(fd, client, artifact, progress, directory)
        finally:
            os.close(fd)
        if artifact.size is not None and size != artifact.size:
            raise UpdateError(
                f"{artifact.filename} has {size} bytes, the manifest says {artifact.size}: refused"
            )
        if not hmac.compare_digest(got, artifact.sha256):
            raise UpdateError(
                f"{artifact.filename}: sha256 mismatch (the manifest says {artifact.sha256}, "
                f"the download is {got}): refused, nothing installed"
            )
        target = directory / artifact.filename
        try:
            os.replace(partial, target)
        except OSError as exc:
            raise cannot_write(directory, exc) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)  # one system call, on the way out: not worth a thread
        raise
    return target


def cannot_write(directory: Path, exc: OSError) -> UpdateError:
    """The ``UpdateError`` for a downloads directory that cannot be made or written."""
    return UpdateError(f"cannot write {directory}: {exc.strerror or exc}")


async def _stream_to(
    fd: int,
    client: httpx.AsyncClient,
    artifact: Artifact,
    progress: Progress | None,
    directory: Path,
) -> tuple[str, int]:
    """The artifact's body into ``fd``: its sha256 (hex) and its size.

    The chunks (64 KiB at most from httpx) are written with plain ``os.write``:
    a write to a local file returns at once, and nothing but the next read is
    awaited in the loop, so that stopping early can cancel that read (httpx's
    iterators then end cleanly, not in the garbage collector).
    """
    cap = artifact.size if artifact.size is not None else MAX_ARTIFACT
    digest = hashlib.sha256()
    done = 0
    failure: UpdateError | None = None
    try:
        async with client.stream("GET", artifact.url) as response:
            if response.status_code != 200:
                raise UpdateError(
                    f"cannot fetch {artifact.filename} from {artifact.url}: "
                    f"HTTP {response.status_code}"
                )
            total = artifact.size or _declared(response)
            if total is not None and total > cap:
                raise UpdateError(f"{artifact.filename} is over {cap} bytes: refused")
            with trio.CancelScope() as stop:
                async for chunk in response.aiter_bytes():
                    done += len(chunk)
                    if done > cap:
                        failure = UpdateError(f"{artifact.filename} is over {cap} bytes: refused")
                        stop.cancel()
                        continue
                    digest.update(chunk)
                    try:
                        _write_all(fd, chunk)
                    except OSError as exc:  # the disk is full, say
                        failure = cannot_write(directory, exc)
                        stop.cancel()
                        continue
                    if progress is not None:
                        progress(done, total)
    except _FETCH_ERRORS as exc:
        raise _failure(artifact.filename, artifact.url, exc) from exc
    if failure is not None:
        raise failure
    return digest.hexdigest(), done


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _declared(response: httpx.Response) -> int | None:
    """The body's length as the server declares it, if it is not content-encoded."""
    declared = response.headers.get("content-length", "")
    if not declared.isdigit() or response.headers.get("content-encoding"):
        return None
    return int(declared)
