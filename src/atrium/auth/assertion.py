"""Caller assertions: the gateway tells a backend who calls, and proves that it said so.

The gateway is the only way in (ARCHITECTURE.md, "Trust between the gateway and the backends").
On every request it forwards, it attaches a short-lived JWT (RFC 7519) in the
``Atrium-Caller-Assertion`` header: ``iss`` the gateway's issuer URL, ``aud`` the server's
name, ``sub`` (absent for an anonymous caller), ``client_id``, ``scope``, ``origin``
(``in-app`` | ``external``), ``rid`` (the request id), ``iat``, ``exp`` (at most 60 s later) and
a ``jti``. Every backend Atrium runs verifies it before any tool code runs, and takes each one
once: a leaked assertion cannot be replayed to a backend to go around the gateway.

The signature is EdDSA with Ed25519 (RFC 8037): a key pair of its own, never the OAuth signing
key, so a backend that holds the public half can mint neither access tokens nor assertions.
An Ed25519 signature costs a few tens of microseconds, so the gateway signs one per request
and caches nothing that would outlive its ``exp``.

The private keys live in the store, sealed, the same for every gateway replica
(``atrium.auth.caller_keystore``); backends read the public set from the project's state folder,
``caller-keys.pub.json`` (``atrium.auth.caller_keys``), which the supervisor that runs them
writes from the store. Every key in the public set verifies; the gateway signs with the newest
whose ``signs_from`` has passed, so a rotated-in key reaches every backend before anything
signed with it. A backend reads the public set when it starts and again whenever the file has
changed (one ``stat`` per request), so a rotation needs no restart of the backends and a key
rotated out is refused at once.
"""

from __future__ import annotations

import binascii
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from atrium.auth.caller_keys import ALGORITHM as ALGORITHM
from atrium.auth.caller_keys import PRIVATE_FILE as PRIVATE_FILE
from atrium.auth.caller_keys import PUBLIC_FILE as PUBLIC_FILE
from atrium.auth.caller_keys import KeyFile, b64, private_jwk, read_private_keys, thumbprint, unb64
from atrium.auth.caller_keys import ensure_caller_keys as ensure_caller_keys
from atrium.auth.caller_keys import public_keys as public_keys
from atrium.auth.caller_keys import rotate_caller_keys as rotate_caller_keys
from atrium.auth.sealed_keys import HeldKey, signing_of

HEADER = "Atrium-Caller-Assertion"
HEADER_BYTES = HEADER.lower().encode("latin-1")
TYPE = "atrium-caller+jwt"
LIFETIME_S = 60
# Clock skew tolerated between the gateway and a backend on another host.
LEEWAY_S = 5
MAX_ASSERTION = 4096

Origin = Literal["in-app", "external"]

logger = logging.getLogger(__name__)


class InvalidAssertion(Exception):
    """An assertion that does not prove its caller; the message says why, for the log."""


@dataclass(frozen=True)
class CallerIdentity:
    """Who calls this tool, as the gateway established it.

    ``subject`` is the user (or, for a client-credentials token, the client) and ``None`` for an
    anonymous caller; ``scopes`` are what the access token granted; ``origin`` tells Atrium's own
    callers (``in-app``: the CLI, agents) from external OAuth clients; ``request_id`` is the
    gateway's, as in the audit trail (``atrium infra logs audit <request-id>``).
    """

    server: str
    subject: str | None
    client_id: str | None
    scopes: frozenset[str]
    origin: Origin
    request_id: str

    @property
    def anonymous(self) -> bool:
        return self.subject is None

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes


# -- signing (the gateway) -----------------------------------------------------------------


@dataclass(frozen=True)
class _Signing:
    """A caller key ready to sign: its JWS header encoded once."""

    key: Ed25519PrivateKey
    prefix: bytes

    @classmethod
    def of(cls, held: HeldKey[Ed25519PrivateKey]) -> HeldKey[_Signing]:
        header = {"alg": ALGORITHM, "typ": TYPE, "kid": held.kid}
        prefix = b64(orjson.dumps(header)) + b"."
        return HeldKey(held.kid, cls(held.key, prefix), held.signs_from)


# Where a signer finds its keys again (``AssertionSigner.reload``): the keys as they are now,
# newest first, or None to keep the ones held.
KeySource = Callable[[], Awaitable[Sequence[HeldKey[Ed25519PrivateKey]] | None]]


class AssertionSigner:
    """Signs one assertion per forwarded request, with the newest key whose ``signs_from``
    has passed (``signing_of``): a rotated-in key signs only once every backend knows it."""

    def __init__(
        self,
        issuer: str,
        keys: Sequence[HeldKey[Ed25519PrivateKey]],
        *,
        clock: Callable[[], float] = time.time,
        source: KeySource | None = None,
    ) -> None:
        self.issuer = issuer
        self.clock = clock
        self._source = source
        self._held: tuple[HeldKey[Ed25519PrivateKey], ...] = ()
        self._signing: tuple[HeldKey[_Signing], ...] = ()
        self.replace(keys)

    @classmethod
    def load(
        cls, state_dir: Path, issuer: str, *, clock: Callable[[], float] = time.time
    ) -> AssertionSigner:
        """A signer over the key file of ``state_dir`` (made if missing), its first key
        signing: for tools and tests that sign outside a gateway, which signs with the store's
        keys (``atrium.auth.caller_keystore``)."""
        ensure_caller_keys(state_dir, issuer)
        found = read_private_keys(state_dir)
        assert found is not None, "ensure_caller_keys wrote it"
        return cls(
            issuer, [caller_key(json.dumps(jwk), str(jwk["kid"])) for jwk in found], clock=clock
        )

    def replace(self, keys: Sequence[HeldKey[Ed25519PrivateKey]]) -> None:
        """Hold ``keys`` (newest first) from now on."""
        if not keys:
            raise ValueError("a signer needs at least one key")
        self._signing = tuple(_Signing.of(held) for held in keys)  # read first by ``sign``
        self._held = tuple(keys)

    @property
    def keys(self) -> tuple[HeldKey[Ed25519PrivateKey], ...]:
        return self._held

    @property
    def kid(self) -> str:
        """The kid of the key that signs now."""
        return signing_of(self._held, self.clock()).kid

    async def reload(self) -> bool:
        """Hold the keys the source has now; whether they changed (never, without a source)."""
        if self._source is None:
            return False
        found = await self._source()
        if found is None or [(k.kid, k.signs_from) for k in found] == [
            (k.kid, k.signs_from) for k in self._held
        ]:
            return False
        self.replace(found)
        return True

    def sign(
        self,
        *,
        server: str,
        subject: str | None,
        client_id: str | None,
        scopes: frozenset[str],
        origin: Origin,
        request_id: str,
    ) -> str:
        at = self.clock()
        now = int(at)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": server,
            "iat": now,
            "exp": now + LIFETIME_S,
            "jti": secrets.token_urlsafe(12),
            "origin": origin,
            "rid": request_id,
            "scope": " ".join(sorted(scopes)),
        }
        if subject is not None:
            claims["sub"] = subject
        if client_id is not None:
            claims["client_id"] = client_id
        signing = signing_of(self._signing, at).key
        signing_input = signing.prefix + b64(orjson.dumps(claims))
        return (signing_input + b"." + b64(signing.key.sign(signing_input))).decode("ascii")


def caller_key(text: str, kid: str) -> HeldKey[Ed25519PrivateKey]:
    """The private Ed25519 key the JWK ``text`` holds, whose RFC 7638 thumbprint must be
    ``kid``: a stored or imported key is what its id says, or it is refused (``ValueError``)."""
    try:
        jwk = json.loads(text)
        key = Ed25519PrivateKey.from_private_bytes(unb64(jwk["d"]))
        good = (
            jwk.get("kty") == "OKP"
            and jwk.get("crv") == "Ed25519"
            and thumbprint(private_jwk(key)) == kid
        )
    except (ValueError, TypeError, KeyError, binascii.Error):
        good = False
    if not good:
        raise ValueError(
            f"caller-assertion key {kid or '(no kid)'} is not a private Ed25519 key whose"
            " RFC 7638 thumbprint is its kid"
        )
    return HeldKey(kid, key)


# -- verifying (the backends) --------------------------------------------------------------


class AssertionVerifier:
    """Checks an assertion for one server against the project's public key file."""

    def __init__(
        self,
        path: Path,
        server: str | frozenset[str],
        public: KeyFile,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``server``: the name assertions must be addressed to (``aud``); a set of names
        for a process that one registry routes to under several names."""
        self.path = path
        self.servers = frozenset({server}) if isinstance(server, str) else server
        self.clock = clock
        self._seen = _SeenOnce()
        self._use(public)

    @classmethod
    def load(
        cls, path: Path, server: str | frozenset[str], *, clock: Callable[[], float] = time.time
    ) -> AssertionVerifier:
        """A verifier over the public key file at ``path``, read now."""
        return cls(path, server, KeyFile.read(path), clock=clock)

    def _use(self, public: KeyFile) -> None:
        keys = {}
        for jwk in public.data["keys"]:
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
                keys[str(jwk["kid"])] = Ed25519PublicKey.from_public_bytes(unb64(jwk["x"]))
        if not keys:
            raise ValueError(f"{self.path} holds no Ed25519 key")
        self._keys, self.issuer = keys, str(public.data["issuer"])
        self._stamp = public.stamp

    def _current(self) -> None:
        """Follow the key file: a rotation adds keys and drops old ones at once (one ``stat``
        per request); a file that cannot be read keeps the keys already known."""
        try:
            if KeyFile.stamp_of(self.path) != self._stamp:
                self._use(KeyFile.read(self.path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("cannot reload the caller-assertion keys %s: %s", self.path, exc)

    def verify(self, assertion: str | None) -> CallerIdentity:
        if not assertion:
            raise InvalidAssertion(f"no {HEADER} header")
        if len(assertion) > MAX_ASSERTION or assertion.count(".") != 2:
            raise InvalidAssertion("the assertion is not a compact JWS")
        header_part, payload_part, signature_part = assertion.split(".")
        header = _json_object(header_part, "header")
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or header.get("typ") != TYPE or not isinstance(kid, str):
            raise InvalidAssertion("the assertion's header is not alg EdDSA, typ " + TYPE)
        self._current()
        key = self._keys.get(kid)
        if key is None:
            raise InvalidAssertion("the assertion was signed by an unknown key")
        try:
            signature = unb64(signature_part)
            key.verify(signature, f"{header_part}.{payload_part}".encode("ascii"))
        except (InvalidSignature, ValueError, binascii.Error, UnicodeError):
            raise InvalidAssertion("the assertion's signature is not valid") from None
        identity, jti, exp = self._identity(_json_object(payload_part, "payload"))
        # Single use: an assertion a backend has seen (leaked by a careless tool, say) cannot
        # be replayed to it to go around the gateway's policy, rate limits and audit.
        if not self._seen.first(jti, exp + LEEWAY_S, self.clock()):
            raise InvalidAssertion("the assertion was used before")
        return identity

    def _identity(self, claims: dict[str, Any]) -> tuple[CallerIdentity, str, int]:
        if claims.get("iss") != self.issuer:
            raise InvalidAssertion("the assertion comes from another gateway (iss)")
        server = claims.get("aud")
        if not isinstance(server, str) or server not in self.servers:
            raise InvalidAssertion(f"the assertion is for server {server!r} (aud)")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise InvalidAssertion("the assertion's iat and exp must be integers")
        now = self.clock()
        if exp + LEEWAY_S <= now:
            raise InvalidAssertion("the assertion has expired")
        if iat - LEEWAY_S > now or exp - iat > LIFETIME_S:
            raise InvalidAssertion("the assertion's lifetime is not acceptable")
        subject, client_id = claims.get("sub"), claims.get("client_id")
        scope, origin, rid = claims.get("scope", ""), claims.get("origin"), claims.get("rid")
        jti = claims.get("jti")
        if not (
            _optional_str(subject)
            and _optional_str(client_id)
            and isinstance(scope, str)
            and origin in ("in-app", "external")
            and isinstance(rid, str)
            and isinstance(jti, str)
            and 0 < len(jti) <= 64
        ):
            raise InvalidAssertion("the assertion's claims are malformed")
        identity = CallerIdentity(
            server=server,
            subject=subject,
            client_id=client_id,
            scopes=frozenset(scope.split()),
            origin=origin,
            request_id=rid,
        )
        return identity, jti, exp


def _optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(unb64(part))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidAssertion(f"the assertion's {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise InvalidAssertion(f"the assertion's {what} is not a JSON object")
    return value


class _SeenOnce:
    """The ``jti`` of every assertion still within its lifetime: a few hundred bytes each,
    forgotten once expired, so memory follows the request rate of the last minute."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._next_sweep = 0.0

    def first(self, jti: str, until: float, now: float) -> bool:
        if now >= self._next_sweep:
            self._until = {k: t for k, t in self._until.items() if t > now}
            self._next_sweep = now + LEEWAY_S
        if jti in self._until:
            return False
        self._until[jti] = until
        return True
