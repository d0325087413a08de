"""The proofs a client makes (RFC 9449 §4.2): what they reveal of its key."""

from __future__ import annotations

import base64
import json

import pytest
from joserfc.jwk import ECKey, RSAKey

from atrium.auth.dpop import thumbprint
from atrium.client.dpop import generate_key, make_proof


def _header(proof: str) -> dict[str, object]:
    encoded = proof.split(".")[0]
    header: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    )
    return header


@pytest.mark.parametrize(
    ("alg", "members"), [("ES256", {"kty", "crv", "x", "y"}), ("PS256", {"kty", "e", "n"})]
)
def test_a_proof_carries_only_the_thumbprint_members_of_the_public_key(
    alg: str, members: set[str]
) -> None:
    key = generate_key(alg)

    jwk = _header(make_proof(key, method="POST", url="https://gw.example/token", alg=alg))["jwk"]

    assert isinstance(jwk, dict)
    assert set(jwk) == members
    assert thumbprint(jwk) == key.thumbprint()


def test_generate_key_makes_a_key_of_the_algorithms_type() -> None:
    assert isinstance(generate_key("ES384"), ECKey)
    assert isinstance(generate_key("RS256"), RSAKey)


@pytest.mark.parametrize("alg", ["HS256", "none", "ES256K"])
def test_generate_key_refuses_an_algorithm_dpop_does_not_allow(alg: str) -> None:
    with pytest.raises(ValueError, match="not a DPoP algorithm"):
        generate_key(alg)
