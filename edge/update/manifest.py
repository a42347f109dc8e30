"""The versions manifest: its strict parse, its Ed25519 signature, and the choice of a target.

Plain code, no I/O (``edge.update.fetch`` brings the bytes). The manifest is JSON::

    {"latest": "0.2.0", "minimum": "0.1.0",
     "upgradeCommand": "pipx upgrade edge",
     "versions": {
       "0.2.0": {"spec": "edge==0.2.0",
                 "artifacts": [{"url": "https://dl.example/edge-0.2.0-cp311-cp311-linux_x86_64.whl",
                                "sha256": "<64 hex digits>", "size": 358809}]},
       "0.1.0": {"spec": "edge==0.1.0",
                 "url": "https://dl.example/edge-0.1.0-py3-none-any.whl", "sha256": "..."}}}

A version has one artifact (``url`` and ``sha256``, ``size`` optional) or a list of
them (``artifacts``: one wheel per platform); edge takes the wheel that this
interpreter's tags rank first. Artifacts are wheels of ``edge`` of that very
version (their file name says so), fetched over https. ``spec`` is optional,
must be ``edge==VERSION`` when given, and names the release in messages.
``upgradeCommand`` is accepted and ignored: edge never runs a command it was
sent, only its own installers with the verified file. Keys edge does not know
are ignored too, so that a newer manifest still updates an older edge; the keys
it knows are checked strictly, and any problem is an ``UpdateError`` naming it.

The signature is a detached Ed25519 signature over the manifest's exact bytes,
base64, in a file at the manifest's URL with ``.sig`` appended to its path. The
key is the 32 raw bytes of the Ed25519 public key, base64, from ``[update]
public_key`` of the config (never from the network).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ..errors import UpdateError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "PACKAGE",
    "Artifact",
    "Manifest",
    "Plan",
    "Release",
    "choose_artifact",
    "choose_target",
    "decode_public_key",
    "parse_manifest",
    "require_https",
    "signature_url",
    "verify_signature",
]

#: The distribution name every artifact and spec must have.
PACKAGE: Final = "edge"
#: Bytes of an Ed25519 public key and of a signature.
KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
#: What a sha256 looks like in the manifest.
_SHA256: Final = re.compile(r"[0-9a-fA-F]{64}")
#: What no URL edge fetches may hold: white space (Unicode's too) or a control character.
_UNSAFE_URL: Final = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Artifact:
    """One wheel of a release."""

    url: str
    #: Lower-case hex.
    sha256: str
    #: Bytes, if the manifest says (the download must be exactly this long).
    size: int | None
    #: The wheel's file name (the last segment of the URL's path).
    filename: str
    tags: frozenset[Tag]


@dataclass(frozen=True, slots=True)
class Release:
    """One version the manifest lists."""

    version: Version
    #: ``edge==VERSION``.
    spec: str
    artifacts: tuple[Artifact, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest."""

    latest: Version
    minimum: Version | None
    releases: Mapping[Version, Release]
    #: Keys that were present and ignored (``upgradeCommand``, keys of newer manifests).
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """What an update would do: ``target`` is ``None`` when there is nothing to install."""

    current: Version
    target: Release | None
    #: One line for people: "0.1.0 → 0.2.0", "up to date", ...
    note: str

    @property
    def downgrade(self) -> bool:
        return self.target is not None and self.target.version < self.current


# --- URLs and signatures ------------------------------------------------------------------


def require_https(url: str, what: str) -> None:
    """Refuse ``url`` unless it is ``https://HOST...`` without white space or control
    characters (``urlsplit`` would drop a newline that httpx refuses later).

    Raises:
        UpdateError: naming ``what`` ("the manifest URL", ...).
    """
    if _UNSAFE_URL.search(url):
        raise UpdateError(f"{what} {url!r} holds white space or a control character: refused")
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() != "https" or not parts.hostname:
        raise UpdateError(f"{what} {url!r} is not an https:// URL: refused")


def signature_url(manifest_url: str) -> str:
    """Where the manifest's signature is: its URL with ``.sig`` appended to the path."""
    parts = urlsplit(manifest_url)
    return urlunsplit(parts._replace(path=parts.path + ".sig"))


def decode_public_key(text: str) -> Ed25519PublicKey:
    """``[update] public_key`` (base64 of the raw 32-byte key) as a key.

    Raises:
        UpdateError: it is not base64 of 32 bytes.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise UpdateError(
            "[update] public_key is not an Ed25519 public key "
            f"(base64 of its {KEY_BYTES} raw bytes)"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_signature(data: bytes, signature: bytes, key: Ed25519PublicKey) -> None:
    """Check the detached signature ``signature`` (base64 text) over ``data``.

    Raises:
        UpdateError: the signature is malformed or does not verify against ``key``.
    """
    from cryptography.exceptions import InvalidSignature

    try:
        raw = base64.b64decode(b"".join(signature.split()), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != SIGNATURE_BYTES:
        raise UpdateError(
            f"the manifest's signature is not base64 of a {SIGNATURE_BYTES}-byte Ed25519 "
            "signature: refused"
        )
    try:
        key.verify(raw, data)
    except InvalidSignature:
        raise UpdateError(
            "the manifest's signature does not verify against [update] public_key: refused"
        ) from None


# --- the parse ------------------------------------------------------------------------------


def parse_manifest(data: bytes) -> Manifest:
    """The manifest in ``data`` (UTF-8 JSON), checked.

    Raises:
        UpdateError: it is not JSON, or a key edge knows has the wrong type or value.
    """
    try:
        top = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UpdateError(f"the manifest is not valid JSON: {exc}") from None
    if not isinstance(top, dict):
        raise UpdateError("the manifest is not a JSON object")
    latest = _version(_require(top, "latest", str, "the manifest"), "the manifest's latest")
    minimum_text = top.get("minimum")
    minimum = None
    if minimum_text is not None:
        minimum = _version(_typed(minimum_text, str, "the manifest's minimum"), "its minimum")
    versions = _require(top, "versions", dict, "the manifest")
    releases: dict[Version, Release] = {}
    ignored = [key for key in top if key not in ("latest", "minimum", "versions")]
    for key, entry in versions.items():
        version = _version(key, "a key of versions")
        if version in releases:
            raise UpdateError(f"the manifest lists version {version} twice")
        release, skipped = _release(version, entry)
        releases[version] = release
        ignored += [f"versions.{key}.{name}" for name in skipped]
    if latest not in releases:
        raise UpdateError(f"the manifest's latest {latest} is not in its versions")
    if minimum is not None and minimum > latest:
        raise UpdateError(f"the manifest's minimum {minimum} is above its latest {latest}")
    return Manifest(latest, minimum, releases, tuple(ignored))


def _release(version: Version, entry: Any) -> tuple[Release, list[str]]:
    where = f"versions.{version}"
    entry = _typed(entry, dict, where)
    spec = _spec(entry.get("spec"), version, where)
    listed = entry.get("artifacts")
    if listed is not None and ("url" in entry or "sha256" in entry):
        raise UpdateError(f"{where} has both artifacts and url/sha256: give one of them")
    raw = [entry] if listed is None else _typed(listed, list, f"{where}.artifacts")
    if not raw:
        raise UpdateError(f"{where}.artifacts is empty")
    artifacts = tuple(
        _artifact(item, version, where if listed is None else f"{where}.artifacts[{i}]")
        for i, item in enumerate(raw)
    )
    known = {"spec", "artifacts", "url", "sha256", "size"}
    return Release(version, spec, artifacts), [key for key in entry if key not in known]


def _spec(spec: Any, version: Version, where: str) -> str:
    if spec is None:
        return f"{PACKAGE}=={version}"
    text: str = _typed(spec, str, f"{where}.spec")
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise UpdateError(f"{where}.spec {text!r} is not a requirement: {exc}") from None
    pins = list(req.specifier)
    exact = (
        canonicalize_name(req.name) == PACKAGE
        and not req.extras
        and req.url is None
        and req.marker is None
        and len(pins) == 1
        and pins[0].operator == "=="
    )
    if not exact or _version(pins[0].version, f"{where}.spec") != version:
        raise UpdateError(f"{where}.spec must be {PACKAGE}=={version}, not {text!r}")
    return text


def _artifact(item: Any, version: Version, where: str) -> Artifact:
    item = _typed(item, dict, where)
    url = _require(item, "url", str, where)
    require_https(url, f"{where}.url")
    sha256 = _require(item, "sha256", str, where)
    if not _SHA256.fullmatch(sha256):
        raise UpdateError(f"{where}.sha256 is not 64 hex digits")
    size = item.get("size")
    if size is not None and (type(size) is not int or size <= 0):
        raise UpdateError(f"{where}.size must be a whole number of bytes above 0")
    filename = unquote(urlsplit(url).path.rpartition("/")[2])
    try:
        name, wheel_version, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        raise UpdateError(f"{where}.url does not name a wheel (.whl) file: {filename!r}") from None
    if name != PACKAGE or wheel_version != version or "/" in filename or "\\" in filename:
        raise UpdateError(f"{where}.url names {filename!r}, not a wheel of {PACKAGE} {version}")
    return Artifact(url, sha256.lower(), size, filename, frozenset(tags))


def _require(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise UpdateError(f"{where} has no {key!r}")
    return _typed(obj[key], kind, f"{where}.{key}" if where != "the manifest" else key)


def _typed(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        names: dict[type, str] = {str: "a string", dict: "an object", list: "a list"}
        raise UpdateError(f"{where} must be {names.get(kind, kind.__name__)}")
    return value


def _version(text: str, where: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise UpdateError(f"{where}: {text!r} is not a version") from None


# --- the choice -----------------------------------------------------------------------------


def choose_target(
    manifest: Manifest, current: Version, *, to: str | None = None, allow_downgrade: bool = False
) -> Plan:
    """What to install over ``current``: the manifest's latest, or ``to``.

    Never below the manifest's minimum; below ``current`` only with
    ``allow_downgrade``. A latest older than ``current`` installs nothing (no
    silent downgrade).

    Raises:
        UpdateError: ``to`` is not a version the manifest lists, is below its
            minimum, or is a downgrade not allowed.
    """
    if to is None:
        latest = manifest.latest
        if latest == current:
            return Plan(current, None, f"edge {current} is installed: up to date")
        if latest < current:
            return Plan(
                current,
                None,
                f"edge {current} is installed, newer than the manifest's latest {latest}: "
                "nothing to do",
            )
        return Plan(current, manifest.releases[latest], f"{current} → {latest}")
    wanted = _version(to, "the version asked for")
    release = manifest.releases.get(wanted)
    if release is None:
        listed = ", ".join(str(v) for v in sorted(manifest.releases, reverse=True))
        raise UpdateError(f"version {to} is not in the manifest (it lists {listed})")
    if manifest.minimum is not None and wanted < manifest.minimum:
        raise UpdateError(
            f"{wanted} is below the manifest's minimum supported version {manifest.minimum}: "
            "refused"
        )
    if wanted == current:
        return Plan(current, None, f"edge {current} is installed: up to date")
    if wanted < current and not allow_downgrade:
        raise UpdateError(
            f"{wanted} is older than the installed {current}: a downgrade, refused "
            "(allow it with --allow-downgrade)"
        )
    arrow = "→" if wanted > current else "→ (downgrade)"
    return Plan(current, release, f"{current} {arrow} {wanted}")


def choose_artifact(release: Release, tags: Iterable[Tag]) -> Artifact:
    """The artifact of ``release`` this interpreter ranks first (``tags``, best first,
    as ``packaging.tags.sys_tags()`` gives them).

    Raises:
        UpdateError: no artifact suits this interpreter and platform.
    """
    ranked = list(tags)
    for tag in ranked:
        for artifact in release.artifacts:
            if tag in artifact.tags:
                return artifact
    names = ", ".join(a.filename for a in release.artifacts)
    here = ranked[0] if ranked else "this interpreter"
    raise UpdateError(
        f"edge {release.version} has no wheel for {here} (the manifest lists {names})"
    )
