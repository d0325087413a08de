"""DPoP proofs as a client makes them (RFC 9449 §4.2), one per request.

A client holds one private key from :func:`generate_key` and signs a proof for every request
with :func:`make_proof`; the server checks them with ``atrium.auth.dpop``, whose shared pieces
(``normalize_htu``, ``access_token_hash``, ``content_digest``) both sides use, so what is signed
is exactly what is checked.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from atrium.auth.dpop import (
    ALGORITHMS,
    KEY_TYPES,
    PROOF_TYPE,
    ProofRegistry,
    access_token_hash,
    content_digest,
    normalize_htu,
)

_CURVE_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
# RFC 7638 §3.2: the members a thumbprint covers, and all a server needs to check a signature.
_PUBLIC_MEMBERS = {"EC": ("crv", "x", "y"), "RSA": ("e", "n"), "OKP": ("crv", "x")}
_SIGNING_REGISTRY = ProofRegistry(algorithms=ALGORITHMS, strict_check_header=False)


def make_proof(
    key: Any,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    nonce: str | None = None,
    body: bytes | None = None,
    iat: int | None = None,
    jti: str | None = None,
    alg: str | None = None,
) -> str:
    """A DPoP proof for one request (§4.2), signed with the client's private ``key``."""
    alg = alg or _default_alg(key)
    header = {"typ": PROOF_TYPE, "alg": alg, "jwk": _public_jwk(key)}
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16) if jti is None else jti,
        "htm": method,
        "htu": normalize_htu(url),
        "iat": int(time.time()) if iat is None else iat,
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    if body is not None:
        claims["content_digest"] = content_digest(body)
    payload = json.dumps(claims, separators=(",", ":"))
    return jws.serialize_compact(header, payload, key, registry=_SIGNING_REGISTRY)


def generate_key(alg: str = "ES256") -> Any:
    """A new private key for a client to sign its proofs with ``alg``."""
    kty = KEY_TYPES.get(alg)
    if kty == "EC":
        return ECKey.generate_key({name: crv for crv, name in _CURVE_ALGORITHMS.items()}[alg])
    if kty == "RSA":
        return RSAKey.generate_key(2048)
    if kty == "OKP":
        return OKPKey.generate_key("Ed25519")
    raise ValueError(f"not a DPoP algorithm: {alg!r}")


def _default_alg(key: Any) -> str:
    if isinstance(key, ECKey) and key.curve_name in _CURVE_ALGORITHMS:
        return _CURVE_ALGORITHMS[key.curve_name]
    if isinstance(key, OKPKey) and key.curve_name in {"Ed25519", "Ed448"}:
        return "EdDSA"
    if isinstance(key, RSAKey):
        return "RS256"
    raise ValueError("no DPoP algorithm for this key; pass alg")


def _public_jwk(key: Any) -> dict[str, Any]:
    # Only the RFC 7638 members: nothing private, and no kid or use to bloat every request.
    members = key.as_dict(private=False)
    kty = members["kty"]
    return {"kty": kty} | {name: members[name] for name in _PUBLIC_MEMBERS[kty]}
