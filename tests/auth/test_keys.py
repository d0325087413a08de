"""The key set a process holds: every key verifies, the newest whose time has come signs, a key
taken out verifies nothing (remembered tokens included), and the published set has no private
member. The keys' life in the store is tests/auth/test_keystore.py's."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from atrium.auth.access_tokens import TokenIssuer, TokenVerifier
from atrium.auth.errors import OAuthError
from atrium.auth.keys import (
    SIGNING_KEYS_FILE,
    KeySet,
    SigningKey,
    ensure_signing_keys,
    new_signing_key,
    read_key_file,
)

ISSUER = "http://127.0.0.1:8080"


def a_key() -> ECKey:
    return ECKey.import_key(new_signing_key())


def mint(keys: KeySet) -> str:
    token, _ = TokenIssuer(keys, ISSUER, ttl_s=300).mint(
        subject="u", client_id="c", audience=["mcp"], scopes=["user"]
    )
    return token


def kid_of(token: str) -> str:
    return str(jws.extract_compact(token.encode()).headers()["kid"])


class Clock:
    """Now, until a test moves it (tokens are minted at the real time: they must not expire)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_the_newest_key_whose_time_has_come_signs_and_every_key_verifies() -> None:
    old, new = a_key(), a_key()
    clock = Clock()
    now = clock.now
    keys = KeySet([SigningKey(new, now + 30), SigningKey(old, now - 600)], clock=clock)
    verifier = TokenVerifier(keys, ISSUER, clock=clock)

    before = mint(keys)
    clock.now = now + 30
    after = mint(keys)

    assert (kid_of(before), kid_of(after)) == (old.kid, new.kid)
    assert verifier.verify(before).subject == verifier.verify(after).subject == "u"


def test_a_token_of_a_key_not_signing_yet_verifies_but_the_set_never_signs_with_it() -> None:
    old, pending = a_key(), a_key()
    clock = Clock()
    now = clock.now
    keys = KeySet([SigningKey(pending, now + 3600), SigningKey(old, now - 600)], clock=clock)
    # Another replica whose clock is ahead, or a token from the key's own future: still valid.
    early = mint(KeySet([pending]))

    assert TokenVerifier(keys, ISSUER, clock=clock).verify(early).subject == "u"
    assert {kid_of(mint(keys)) for _ in range(20)} == {old.kid}


def test_with_no_key_due_yet_the_first_to_come_signs() -> None:
    # The signing key was retired by a second rotation within the first one's delay.
    sooner, later = a_key(), a_key()
    clock = Clock()
    keys = KeySet(
        [SigningKey(later, clock.now + 60), SigningKey(sooner, clock.now + 30)], clock=clock
    )

    assert keys.signing.kid == sooner.kid


def test_a_key_taken_out_of_the_set_refuses_its_tokens_remembered_ones_too() -> None:
    old, new = a_key(), a_key()
    keys = KeySet([old])
    verifier = TokenVerifier(keys, ISSUER)
    token = mint(keys)
    assert verifier.verify(token).subject == "u"  # remembered from now on

    keys.replace([SigningKey(new)])

    with pytest.raises(OAuthError) as refused:
        verifier.verify(token)
    assert refused.value.error == "invalid_token"
    assert kid_of(mint(keys)) == new.kid


def test_a_set_cannot_be_emptied() -> None:
    keys = KeySet([a_key()])

    with pytest.raises(ValueError, match="at least one key"):
        keys.replace([])
    assert len(keys.keys) == 1


def test_the_published_key_set_holds_every_key_without_a_private_member() -> None:
    clock = Clock()
    keys = KeySet([SigningKey(a_key(), clock.now + 3600), SigningKey(a_key(), 0)], clock=clock)

    published = keys.public_jwks()["keys"]

    assert [key["kid"] for key in published] == [key.kid for key in keys.keys]
    for key in published:
        assert "d" not in key
        assert {"kty", "crv", "x", "y", "kid"} <= set(key)


@pytest.mark.parametrize("kid", [["k"], {"k": 1}, 7, None, ""])
def test_a_kid_that_is_no_string_names_no_key(kid: object) -> None:
    keys = KeySet([a_key()])

    assert keys.get(kid) is None
    assert keys.get(keys.signing.kid) is keys.signing


def test_the_key_file_init_writes_is_private_and_read_signing_key_first(tmp_path: Path) -> None:
    path, created = ensure_signing_keys(tmp_path)
    again, created_again = ensure_signing_keys(tmp_path)
    second = new_signing_key()
    data = json.loads(path.read_text())
    path.write_text(json.dumps({"keys": [*data["keys"], second]}))

    found = read_key_file(tmp_path)

    assert (created, created_again, again) == (True, False, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert found is not None
    assert [key["kid"] for key in found] == [data["keys"][0]["kid"], second["kid"]]
    assert KeySet.load(tmp_path).signing.kid == data["keys"][0]["kid"]


@pytest.mark.parametrize("text", ["not json", "[]", '{"keys": []}', '{"keys": ["k"]}'])
def test_a_key_file_that_is_no_key_set_is_refused_naming_it(tmp_path: Path, text: str) -> None:
    (tmp_path / SIGNING_KEYS_FILE).write_text(text)

    with pytest.raises(ValueError, match=SIGNING_KEYS_FILE):
        read_key_file(tmp_path)


def test_no_key_file_is_none(tmp_path: Path) -> None:
    assert read_key_file(tmp_path) is None
