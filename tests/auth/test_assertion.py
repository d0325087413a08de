"""Caller assertions as a backend checks them: only the gateway's key, for this server, now."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from atrium.auth.assertion import (
    PRIVATE_FILE,
    PUBLIC_FILE,
    AssertionSigner,
    AssertionVerifier,
    InvalidAssertion,
    caller_key,
    ensure_caller_keys,
    rotate_caller_keys,
)
from atrium.auth.caller_keys import private_jwk, publish_public_keys, thumbprint
from atrium.auth.sealed_keys import HeldKey

ISSUER = "http://localhost:8080"
NOW = 1_800_000_000.0


def sign(state: Path, clock: float = NOW, **overrides: Any) -> str:
    signer = AssertionSigner.load(state, ISSUER, clock=lambda: clock)
    claims: dict[str, Any] = {
        "server": "weather",
        "subject": "ada",
        "client_id": "cursor",
        "scopes": frozenset({"tools:read"}),
        "origin": "external",
        "request_id": "r1",
    }
    return signer.sign(**{**claims, **overrides})


def verifier(state: Path, clock: float = NOW) -> AssertionVerifier:
    return AssertionVerifier.load(state / PUBLIC_FILE, "weather", clock=lambda: clock)


def resigned(state: Path, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A token with chosen header and claims, signed with the gateway's real key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    jwk = json.loads((state / PRIVATE_FILE).read_text())["keys"][0]
    key = Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(jwk["d"] + "=="))

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims))}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    ensure_caller_keys(tmp_path, ISSUER)
    return tmp_path


def test_the_private_key_is_the_owners_alone_and_the_public_file_has_no_private_part(
    state: Path,
) -> None:
    assert stat.S_IMODE((state / PRIVATE_FILE).stat().st_mode) == 0o600
    public = json.loads((state / PUBLIC_FILE).read_text())
    assert public["issuer"] == ISSUER
    assert all("d" not in key for key in public["keys"])


def test_a_fresh_assertion_names_its_caller(state: Path) -> None:
    identity = verifier(state).verify(sign(state))

    assert (identity.subject, identity.client_id, identity.request_id) == ("ada", "cursor", "r1")
    assert identity.scopes == {"tools:read"}


def test_an_assertion_lives_a_minute_at_most(state: Path) -> None:
    with pytest.raises(InvalidAssertion, match="expired"):
        verifier(state, NOW + 66).verify(sign(state))


@pytest.mark.parametrize(
    ("header", "claims", "reason"),
    [
        ({"kid": ["a"]}, {}, "header"),
        ({"kid": {"k": 1}}, {}, "header"),
        ({"typ": "JWT"}, {}, "header"),
        ({}, {"exp": int(NOW) + 3600}, "lifetime"),
        ({}, {"iat": int(NOW) + 600, "exp": int(NOW) + 660}, "lifetime"),
        ({}, {"iss": "http://evil"}, "iss"),
        ({}, {"sub": ["admin"]}, "malformed"),
        ({}, {"origin": "in-house"}, "malformed"),
        ({}, {"aud": ["weather", "other"]}, "aud"),
    ],
)
def test_a_validly_signed_assertion_with_bad_members_is_refused(
    state: Path, header: dict[str, Any], claims: dict[str, Any], reason: str
) -> None:
    kid = json.loads((state / PUBLIC_FILE).read_text())["keys"][0]["kid"]
    base_header = {"alg": "EdDSA", "typ": "atrium-caller+jwt", "kid": kid}
    base_claims = {
        "iss": ISSUER,
        "aud": "weather",
        "iat": int(NOW),
        "exp": int(NOW) + 60,
        "origin": "external",
        "rid": "r",
        "scope": "",
    }
    token = resigned(state, {**base_header, **header}, {**base_claims, **claims})

    with pytest.raises(InvalidAssertion, match=reason):
        verifier(state).verify(token)


def test_keys_rotated_twice_no_longer_verify_what_the_first_key_signed(state: Path) -> None:
    old = sign(state)
    checker = verifier(state)
    rotate_caller_keys(state, ISSUER)
    still = checker.verify(old)
    rotate_caller_keys(state, ISSUER)

    assert still.subject == "ada"
    with pytest.raises(InvalidAssertion, match="unknown key"):
        verifier(state).verify(old)


def test_a_signer_signs_with_the_newest_key_whose_time_has_come(state: Path) -> None:
    clock = [NOW]
    signer = AssertionSigner.load(state, ISSUER, clock=lambda: clock[0])
    (old,) = signer.keys
    key = Ed25519PrivateKey.generate()
    new = HeldKey(thumbprint(private_jwk(key)), key, signs_from=NOW + 30)

    signer.replace([new, old])
    before = signer.kid
    clock[0] = NOW + 30

    assert (before, signer.kid) == (old.kid, new.kid)


def test_a_key_that_is_not_what_its_kid_says_is_refused(state: Path) -> None:
    jwk = json.loads((state / PRIVATE_FILE).read_text())["keys"][0]
    other = private_jwk(Ed25519PrivateKey.generate())

    with pytest.raises(ValueError, match="thumbprint"):
        caller_key(json.dumps({**jwk, "d": other["d"]}), jwk["kid"])
    with pytest.raises(ValueError, match="thumbprint"):
        caller_key(json.dumps([jwk]), jwk["kid"])


def test_a_public_file_written_from_the_store_is_not_rewritten_from_the_key_file(
    state: Path,
) -> None:
    stored = private_jwk(Ed25519PrivateKey.generate())  # what the supervisor publishes
    publish_public_keys(state, ISSUER, [stored])

    ensure_caller_keys(state, ISSUER)  # as a server's launch does
    AssertionSigner.load(state, ISSUER)  # as a tool signing from the key file does

    kids = [key["kid"] for key in json.loads((state / PUBLIC_FILE).read_text())["keys"]]
    assert kids == [stored["kid"]]
