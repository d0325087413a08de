"""Signing keys: rotation keeps old tokens valid, the JWK set never publishes a private part."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from atrium.auth.access_tokens import TokenIssuer, TokenVerifier
from atrium.auth.errors import OAuthError
from atrium.auth.keys import KeySet, rotate_signing_keys

ISSUER = "http://127.0.0.1:8080"


def mint(keys: KeySet) -> str:
    token, _ = TokenIssuer(keys, ISSUER, ttl_s=300).mint(
        subject="u", client_id="c", audience=["mcp"], scopes=["user"]
    )
    return token


def test_a_token_signed_before_a_rotation_still_verifies_after_it(tmp_path: Path) -> None:
    keys = KeySet.load(tmp_path)
    old_kid = keys.signing.kid
    before = mint(keys)

    new_kid = rotate_signing_keys(tmp_path)

    assert keys.reload_if_changed()
    assert keys.signing.kid == new_kid != old_kid
    verifier = TokenVerifier(keys, ISSUER)
    assert verifier.verify(before).subject == "u"
    assert verifier.verify(mint(keys)).subject == "u"
    assert stat.S_IMODE((tmp_path / "signing-keys.json").stat().st_mode) == 0o600


def test_a_key_dropped_by_rotation_no_longer_verifies(tmp_path: Path) -> None:
    keys = KeySet.load(tmp_path)
    oldest = mint(keys)

    rotate_signing_keys(tmp_path, keep=2)
    rotate_signing_keys(tmp_path, keep=2)
    keys.reload_if_changed()

    with pytest.raises(OAuthError) as refused:
        TokenVerifier(keys, ISSUER).verify(oldest)
    assert refused.value.error == "invalid_token"


def test_the_published_key_set_has_no_private_members(tmp_path: Path) -> None:
    keys = KeySet.load(tmp_path)
    rotate_signing_keys(tmp_path)
    keys.reload_if_changed()

    published = keys.public_jwks()["keys"]

    assert len(published) == 2
    for key in published:
        assert "d" not in key
        assert {"kty", "crv", "x", "y", "kid"} <= set(key)


def test_a_verified_token_is_refused_once_its_key_is_dropped(tmp_path: Path) -> None:
    keys = KeySet.load(tmp_path)
    verifier = TokenVerifier(keys, ISSUER)
    oldest = mint(keys)
    assert verifier.verify(oldest).subject == "u"  # remembered from now on

    rotate_signing_keys(tmp_path, keep=2)
    rotate_signing_keys(tmp_path, keep=2)
    keys.reload_if_changed()

    with pytest.raises(OAuthError) as refused:
        verifier.verify(oldest)
    assert refused.value.error == "invalid_token"


def test_a_rotation_is_seen_even_when_the_file_keeps_its_size_and_time(tmp_path: Path) -> None:
    keys = KeySet.load(tmp_path)
    path = tmp_path / "signing-keys.json"
    before = path.stat()

    rotate_signing_keys(tmp_path, keep=1)  # one key replaced by one key: the same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert path.stat().st_size == before.st_size
    assert keys.reload_if_changed()
    assert [key.kid for key in keys.keys] == [KeySet.load(tmp_path).signing.kid]


@pytest.mark.parametrize("kid", [["k"], {"k": 1}, 7, None, ""])
def test_a_kid_that_is_no_string_names_no_key(tmp_path: Path, kid: object) -> None:
    keys = KeySet.load(tmp_path)

    assert keys.get(kid) is None
    assert keys.get(keys.signing.kid) is keys.signing
