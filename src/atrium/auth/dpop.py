"""DPoP: binding tokens to a client's key by proof of possession (RFC 9449).

The token endpoint (§5) and the resource server (§7) hand every ``DPoP`` header of a request
to :class:`DpopVerifier`, which applies the checks of §4.3 and answers a :class:`Proof`; its
``jkt`` (§6.1, the RFC 7638 thumbprint of the proof's key) is what an access token is bound
to; the server-provided nonces of §8 and §9 come from ``nonces.NonceIssuer``.
Clients build their proofs (§4.2) with ``atrium.client.dpop``; the pieces both sides compute
(``thumbprint``, ``normalize_htu``, ``access_token_hash``, ``content_digest``) live here.

Beyond the RFC, a proof may carry ``content_digest``, the request-body digest of the earlier
draft of the MCP DPoP profile (SEP-1932), in the ``Content-Digest`` form of RFC 9530.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import jws
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import JWKRegistry, Key
from joserfc.jws import JWSRegistry

from atrium.auth.errors import invalid_dpop_proof, use_dpop_nonce
from atrium.auth.nonces import NonceIssuer
from atrium.auth.replay import ReplayCache

# The asymmetric JWS algorithms a proof may use (§4.3 step 5), with the key type each needs.
KEY_TYPES = {
    **dict.fromkeys(("ES256", "ES384", "ES512"), "EC"),
    **dict.fromkeys(("PS256", "PS384", "PS512", "RS256"), "RSA"),
    "EdDSA": "OKP",
}
ALGORITHMS: tuple[str, ...] = tuple(KEY_TYPES)
WINDOW_S = 300
MAX_PROOF_BYTES = 8192
PROOF_TYPE = "dpop+jwt"

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MAX_JTI_CHARS = 256
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_PERCENT_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")


@dataclass(frozen=True)
class Proof:
    """What a verified proof tells the server: who (``jkt``) and which proof (``jti``)."""

    jkt: str
    jti: str
    iat: int
    nonce: str | None


class ProofRegistry(JWSRegistry):
    """joserfc's registry for proofs, shared by the verifier and the client that signs them."""

    # The header carries the whole public key; an RSA key alone outgrows joserfc's 512 bytes.
    max_header_length = MAX_PROOF_BYTES

    def get_alg(self, name: str) -> JWSAlgModel:
        # RFC 9864 deprecates the name "EdDSA" and joserfc warns on it, but RFC 9449 and the
        # clients in the field use it; the allow-list, not a warning, decides what is accepted.
        if name not in ALGORITHMS or (self.allowed is not None and name not in self.allowed):
            raise UnsupportedAlgorithmError(f"algorithm {name!r} is not allowed")
        return self.algorithms[name]


class DpopVerifier:
    """Checks DPoP proofs as RFC 9449 §4.3 lists, then spends their ``jti`` (§11.1).

    Spending comes last, so that only a proof whose request is otherwise served is recorded:
    anyone can mint valid proofs with a key of their own, and a cache that recorded them all
    could be filled by anyone (``replay``).
    """

    def __init__(
        self,
        *,
        replay: ReplayCache,
        algorithms: Sequence[str] = ALGORITHMS,
        window_s: float = WINDOW_S,
        nonces: NonceIssuer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        unknown = set(algorithms) - set(ALGORITHMS)
        if unknown:
            raise ValueError(f"not asymmetric DPoP algorithms: {sorted(unknown)}")
        self._algorithms = tuple(algorithms)
        self._registry = ProofRegistry(algorithms=self._algorithms, strict_check_header=False)
        self._replay = replay
        self._window_s = window_s
        self._nonces = nonces
        self._clock = clock

    async def verify(
        self,
        proofs: Sequence[str],
        *,
        method: str,
        urls: Sequence[str],
        access_token: str | None = None,
        body: bytes | None = None,
        jkt: str | None = None,
    ) -> Proof:
        """``check``, then ``spend``: a proof good for this request, used once.

        ``jkt``, when given, is the key the proof must be made with (the token's ``cnf.jkt``).
        """
        proof = self.check(proofs, method=method, urls=urls, access_token=access_token, body=body)
        if jkt is not None and proof.jkt != jkt:
            raise invalid_dpop_proof("the proof's key is not the token's (cnf.jkt)")
        await self.spend(proof)
        return proof

    def check(
        self,
        proofs: Sequence[str],
        *,
        method: str,
        urls: Sequence[str],
        access_token: str | None = None,
        body: bytes | None = None,
    ) -> Proof:
        """Every check of §4.3 but single use: nothing is recorded, so a caller can refuse the
        request for its other faults first (``spend`` once it would be served)."""
        key, claims = self._verified_token(_single(proofs))
        jti = _check_jti(claims)
        _check_request(claims, method=method, urls=urls)
        self._check_iat(claims)
        _check_ath(claims, access_token)
        _check_content_digest(claims, body)
        nonce = self._check_nonce(claims)
        return Proof(jkt=key.thumbprint(), jti=jti, iat=claims["iat"], nonce=nonce)

    async def spend(self, proof: Proof) -> None:
        """Record ``proof`` as used (§11.1); ``invalid_dpop_proof`` if it already was.

        Remembered for twice the window: a proof is accepted while its ``iat`` is within the
        window either side of now, so it is stale by the time it is forgotten.
        """
        if not await self._replay.first_use(f"{proof.jkt}:{proof.jti}", ttl_s=2 * self._window_s):
            raise invalid_dpop_proof("proof was already used")

    def _verified_token(self, token: str) -> tuple[Key, dict[str, Any]]:
        if len(token) > MAX_PROOF_BYTES:
            raise invalid_dpop_proof(f"proof is larger than {MAX_PROOF_BYTES} bytes")
        try:
            signed = jws.extract_compact(token.encode("ascii"), registry=self._registry)
        except (JoseError, ValueError) as exc:
            raise invalid_dpop_proof("proof is not a well-formed compact JWS") from exc
        header = signed.headers()
        _check_header(header, self._algorithms)
        key = self._public_key(header.get("jwk"), header["alg"])
        try:
            verified = jws.validate_compact(signed, key, registry=self._registry)
        except (JoseError, ValueError):
            verified = False
        if not verified:
            raise invalid_dpop_proof("proof signature does not verify with its jwk")
        return key, _claims(signed.payload)

    def _public_key(self, jwk: Any, alg: str) -> Key:
        if not isinstance(jwk, dict):
            raise invalid_dpop_proof("proof header has no jwk")
        if _PRIVATE_MEMBERS & jwk.keys():
            raise invalid_dpop_proof("proof jwk contains private key material")
        if jwk.get("kty") != KEY_TYPES[alg]:
            raise invalid_dpop_proof("proof jwk key type does not match alg")
        # RFC 7518 §3.3: RSA keys below 2048 bits must not be used. Checked before the import,
        # which would otherwise emit a SecurityWarning on every such request.
        if jwk["kty"] == "RSA" and _modulus_bits(jwk.get("n")) < 2048:
            raise invalid_dpop_proof("proof jwk is an RSA key shorter than 2048 bits")
        try:
            key = JWKRegistry.import_key(jwk)
            self._registry.get_alg(alg).check_key(key)
        except (JoseError, ValueError, TypeError) as exc:
            raise invalid_dpop_proof("proof jwk is not a valid public key for alg") from exc
        return key

    def _check_iat(self, claims: dict[str, Any]) -> None:
        iat = claims.get("iat")
        if not isinstance(iat, int) or isinstance(iat, bool):
            raise invalid_dpop_proof("iat must be an integer")
        now = self._clock()
        # Compared, not subtracted: an int too large for a float must fail, not crash.
        if not now - self._window_s <= iat <= now + self._window_s:
            raise invalid_dpop_proof("iat is outside the acceptance window")

    def _check_nonce(self, claims: dict[str, Any]) -> str | None:
        nonce = claims.get("nonce")
        if self._nonces is None:
            return nonce if isinstance(nonce, str) else None
        if not isinstance(nonce, str) or not self._nonces.valid(nonce):
            # §8: the error carries a fresh nonce for the client's retry.
            raise use_dpop_nonce(self._nonces.issue())
        return nonce


def _single(proofs: Sequence[str]) -> str:
    # §4.3 step 1: more than one DPoP header makes the request ambiguous.
    if len(proofs) != 1:
        raise invalid_dpop_proof("request must carry exactly one DPoP header")
    return proofs[0]


def _modulus_bits(n: Any) -> int:
    try:
        return int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))).bit_length()
    except (TypeError, ValueError):
        return 0


def _check_header(header: dict[str, Any], algorithms: Sequence[str]) -> None:
    if header.get("typ") != PROOF_TYPE:
        raise invalid_dpop_proof(f"proof typ is not {PROOF_TYPE}")
    if header.get("alg") not in algorithms:
        raise invalid_dpop_proof("proof alg is not an allowed asymmetric algorithm")
    # RFC 7515 §4.1.11: DPoP defines no critical extension (RFC 7797's b64 included) to honor.
    if "crit" in header or "b64" in header:
        raise invalid_dpop_proof("proof uses critical header parameters")


def _claims(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except ValueError as exc:
        raise invalid_dpop_proof("proof payload is not JSON") from exc
    if not isinstance(claims, dict):
        raise invalid_dpop_proof("proof payload is not a JSON object")
    return claims


def _check_jti(claims: dict[str, Any]) -> str:
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 1 <= len(jti) <= _MAX_JTI_CHARS:
        raise invalid_dpop_proof(f"jti must be a string of 1 to {_MAX_JTI_CHARS} characters")
    return jti


def _check_request(claims: dict[str, Any], *, method: str, urls: Sequence[str]) -> None:
    if claims.get("htm") != method:
        raise invalid_dpop_proof("htm does not match the request method")
    htu = _normalized_or_none(claims.get("htu"))
    # A URL built from a garbled Host header must not stop the others from matching.
    if htu is None or htu not in {_normalized_or_none(url) for url in urls}:
        raise invalid_dpop_proof("htu does not match the request URL")


def _normalized_or_none(url: Any) -> str | None:
    try:
        return normalize_htu(url) if isinstance(url, str) else None
    except ValueError:
        return None


def _check_ath(claims: dict[str, Any], access_token: str | None) -> None:
    if access_token is None:
        return
    ath = claims.get("ath")
    if ath is None:
        raise invalid_dpop_proof("ath is required when an access token is presented")
    try:
        expected = access_token_hash(access_token)
    except UnicodeEncodeError as exc:
        raise invalid_dpop_proof("access token is not ASCII") from exc
    if ath != expected:
        raise invalid_dpop_proof("ath does not match the access token")


def _check_content_digest(claims: dict[str, Any], body: bytes | None) -> None:
    digest = claims.get("content_digest")
    if digest is None:
        return
    if body is None:
        raise invalid_dpop_proof("content_digest is present but the request has no body")
    # SEP-1932 drafts used both the RFC 9530 dictionary form and a bare base64url digest.
    if digest not in (content_digest(body), _b64url(hashlib.sha256(body).digest())):
        raise invalid_dpop_proof("content_digest does not match the request body")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a JWK, base64url without padding (§6.1 ``jkt``)."""
    return JWKRegistry.import_key(dict(jwk)).thumbprint()


def access_token_hash(token: str) -> str:
    """The ``ath`` claim (§4.2): base64url of the SHA-256 of the token's ASCII bytes."""
    return _b64url(hashlib.sha256(token.encode("ascii")).digest())


def normalize_htu(url: str) -> str:
    """``url`` as §4.3 step 9 compares it: RFC 3986 §6.2.2.1-2 and §6.2.3 normalized, without
    query or fragment. Raises ``ValueError`` if ``url`` is not absolute or has a bad port.
    """
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname
    if not scheme or not host:
        raise ValueError(f"not an absolute URL: {url!r}")
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = _PERCENT_ENCODED.sub(_normalize_escape, parts.path) or "/"
    return urlunsplit((scheme, netloc, path, "", ""))


def _normalize_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group()[1:], 16))
    return char if char in _UNRESERVED else match.group().upper()


def content_digest(body: bytes) -> str:
    """The ``content_digest`` claim for ``body``: an RFC 9530 ``Content-Digest`` value."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
