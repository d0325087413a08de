"""Access tokens: JWTs in the RFC 9068 profile, signed with the project's key set.

An access token names its issuer, subject, client, audience (RFC 8707 ``resource``), scope,
lifetime and a ``jti`` for revocation; a DPoP-bound token carries ``cnf.jkt`` (RFC 9449 §6.1);
``fid`` names the grant family, so revoking a family (a reused refresh token or code) revokes
its access tokens too. The header ``typ`` is ``at+jwt`` (RFC 9068 §2.1), which the verifier
requires, so an ID token or a DPoP proof can never pass for an access token (§4).

A token is accepted only while the key that signed it is in the key set: a rotated-out key
(``atrium admin keys rotate``) ends its tokens, remembered ones included. Its lifetime
(``exp - iat``) may not exceed ``MAX_LIFETIME_S``, the longest Atrium issues, so every
revocation can be forgotten once that long has passed since it was made.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError

from atrium.auth.errors import invalid_token
from atrium.auth.keys import KeySet

ACCESS_TOKEN_TYPE = "at+jwt"
ALGORITHM = "ES256"
# Clock skew tolerated between replicas when checking exp/iat (RFC 7519 §4.1.4 "leeway").
LEEWAY_S = 30
# The longest lifetime Atrium issues: ``atrium admin token issue --ttl`` allows up to 30 days;
# the token endpoint's ``oauth.access_token_ttl_s`` is at most one day (settings.py).
MAX_LIFETIME_S = 30 * 86400
_REQUIRED = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id")
# What TokenIssuer writes; anything else in a header (``crit`` above all, RFC 7515 §4.1.11)
# is refused rather than interpreted.
_HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})


@dataclass(frozen=True)
class AccessClaims:
    issuer: str
    subject: str
    audience: tuple[str, ...]
    client_id: str
    scopes: frozenset[str]
    jti: str
    issued_at: int
    expires_at: int
    jkt: str | None = None
    family: str | None = None

    @property
    def scope(self) -> str:
        return " ".join(sorted(self.scopes))

    def to_introspection(self) -> dict[str, Any]:
        """RFC 7662 §2.2 members of an active token."""
        result: dict[str, Any] = {
            "active": True,
            "iss": self.issuer,
            "sub": self.subject,
            "aud": list(self.audience),
            "client_id": self.client_id,
            "scope": self.scope,
            "jti": self.jti,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "token_type": "DPoP" if self.jkt else "Bearer",
        }
        if self.jkt:
            result["cnf"] = {"jkt": self.jkt}
        return result


class TokenIssuer:
    def __init__(
        self, keys: KeySet, issuer: str, *, ttl_s: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.ttl_s = ttl_s
        self.clock = clock

    def mint(
        self,
        *,
        subject: str,
        client_id: str,
        audience: Sequence[str],
        scopes: Sequence[str],
        jkt: str | None = None,
        family: str | None = None,
    ) -> tuple[str, AccessClaims]:
        now = int(self.clock())
        claims = AccessClaims(
            issuer=self.issuer,
            subject=subject,
            audience=tuple(audience),
            client_id=client_id,
            scopes=frozenset(scopes),
            jti=secrets.token_urlsafe(16),
            issued_at=now,
            expires_at=now + self.ttl_s,
            jkt=jkt,
            family=family,
        )
        payload: dict[str, Any] = {
            "iss": claims.issuer,
            "sub": claims.subject,
            "aud": list(claims.audience) if len(claims.audience) != 1 else claims.audience[0],
            "client_id": claims.client_id,
            "scope": claims.scope,
            "jti": claims.jti,
            "iat": now,
            "exp": claims.expires_at,
        }
        if jkt:
            payload["cnf"] = {"jkt": jkt}
        if family:
            payload["fid"] = family
        key = self.keys.signing
        header = {"alg": ALGORITHM, "typ": ACCESS_TOKEN_TYPE, "kid": key.kid}
        return jwt.encode(header, payload, key, algorithms=[ALGORITHM]), claims


class TokenVerifier:
    """Checks signature, ``typ``, issuer and lifetime; audience and scope are the caller's.

    Verified tokens are remembered (bounded) until they expire: an ECDSA verification costs
    more than the rest of a proxied request's bookkeeping, and a client reuses its token. A
    remembered token still needs its key in the current key set (one dict lookup), so a key
    rotated out ends its tokens at the next reload of the set, remembered or not.
    """

    def __init__(
        self,
        keys: KeySet,
        issuer: str,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = 4096,
        max_lifetime_s: int = MAX_LIFETIME_S,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.clock = clock
        self.max_lifetime_s = max_lifetime_s
        # token -> (its claims, the kid that signed it)
        self._cache: OrderedDict[str, tuple[AccessClaims, str]] = OrderedDict()
        self._cache_size = cache_size

    def verify(self, token: str) -> AccessClaims:
        now = self.clock()
        cached = self._cache.get(token)
        if cached is None:
            cached = self._decode(token, now)
            self._cache[token] = cached
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        claims, kid = cached
        if self.keys.get(kid) is None:
            self._cache.pop(token, None)
            raise invalid_token("the access token was signed by a key no longer in use")
        if claims.expires_at + LEEWAY_S <= now:
            self._cache.pop(token, None)
            raise invalid_token("the access token has expired")
        return claims

    def _decode(self, token: str, now: float) -> tuple[AccessClaims, str]:
        if len(token) > 8192 or token.count(".") != 2:
            raise invalid_token("the access token is not a JWT")
        try:
            header = jws.extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, TypeError, UnicodeError):
            raise invalid_token("the access token is not a JWT") from None
        kid = _checked_header(header)
        key = self.keys.get(kid)
        if key is None:
            raise invalid_token("the access token was signed by an unknown key")
        try:
            decoded = jwt.decode(token, key, algorithms=[ALGORITHM])
        except (JoseError, ValueError, TypeError) as exc:
            raise invalid_token(f"the access token is invalid ({exc.__class__.__name__})") from None
        return _claims(decoded.claims, self.issuer, now, self.max_lifetime_s), kid


def _checked_header(header: dict[str, Any]) -> str:
    """The ``kid`` of a header that is exactly what TokenIssuer writes; else invalid_token."""
    # alg is pinned: "none" or an HMAC keyed with our public key never get this far.
    if header.get("alg") != ALGORITHM or header.get("typ") != ACCESS_TOKEN_TYPE:
        raise invalid_token("the token is not an access token (alg ES256, typ at+jwt)")
    kid = header.get("kid")
    # A list or an object is no key id (RFC 7515 §4.1.4: a string), and no dict key either.
    if not isinstance(kid, str) or not kid:
        raise invalid_token("the access token's header has no key id (kid)")
    if not header.keys() <= _HEADER_MEMBERS:
        raise invalid_token("the access token's header has members Atrium does not write")
    return kid


def _claims(raw: dict[str, Any], issuer: str, now: float, max_lifetime_s: int) -> AccessClaims:
    missing = [name for name in _REQUIRED if name not in raw]
    if missing:
        raise invalid_token(f"the access token lacks {', '.join(missing)}")
    if raw["iss"] != issuer:
        raise invalid_token("the access token was issued by another authorization server")
    exp, iat = raw["exp"], raw["iat"]
    if not isinstance(exp, int) or not isinstance(iat, int):
        raise invalid_token("exp and iat must be integers")
    if exp + LEEWAY_S <= now:
        raise invalid_token("the access token has expired")
    if iat - LEEWAY_S > now:
        raise invalid_token("the access token was issued in the future")
    if exp - iat > max_lifetime_s:
        raise invalid_token("the access token lives longer than any Atrium issues")
    audience = raw["aud"]
    if not isinstance(audience, str) and not (
        isinstance(audience, list) and all(isinstance(item, str) for item in audience)
    ):
        raise invalid_token("aud must be a string or a list of strings")
    audiences = (audience,) if isinstance(audience, str) else tuple(audience)
    cnf = raw.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return AccessClaims(
        issuer=raw["iss"],
        subject=str(raw["sub"]),
        audience=audiences,
        client_id=str(raw["client_id"]),
        scopes=frozenset(str(raw.get("scope", "")).split()),
        jti=str(raw["jti"]),
        issued_at=iat,
        expires_at=exp,
        jkt=str(jkt) if jkt else None,
        family=str(raw["fid"]) if raw.get("fid") else None,
    )
