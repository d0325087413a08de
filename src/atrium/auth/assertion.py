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

Keys live in the project's state folder: ``caller-keys.json`` (private JWK Set, mode 0600, read
by the gateway) and ``caller-keys.pub.json`` (public JWK Set with the issuer, read by every
backend). The first key signs, every key verifies. A backend reads the public set when it
starts and again whenever the file has changed (one ``stat`` per request), so a rotation needs
no restart of the backends and a key rotated out is refused at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HEADER = "Atrium-Caller-Assertion"
HEADER_BYTES = HEADER.lower().encode("latin-1")
TYPE = "atrium-caller+jwt"
ALGORITHM = "EdDSA"
LIFETIME_S = 60
# Clock skew tolerated between the gateway and a backend on another host.
LEEWAY_S = 5
PRIVATE_FILE = "caller-keys.json"
PUBLIC_FILE = "caller-keys.pub.json"
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


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- keys ---------------------------------------------------------------------------------


def _private_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    public = key.public_key().public_bytes_raw()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(public).decode("ascii")}
    # RFC 7638 thumbprint: the required members in lexicographic order, no spaces.
    canonical = json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode("ascii")
    kid = _b64(hashlib.sha256(canonical).digest()).decode("ascii")
    private = _b64(key.private_bytes_raw()).decode("ascii")
    return {**jwk, "d": private, "kid": kid, "alg": ALGORITHM, "use": "sig"}


def _public_member(jwk: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in jwk.items() if k != "d"}


def _write(path: Path, data: dict[str, Any], mode: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(json.dumps(data, indent=2) + "\n")
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def ensure_caller_keys(state_dir: Path, issuer: str) -> tuple[Path, bool]:
    """Create the key pair files if missing (and keep the public file's issuer current);
    the private file's path and whether it was created."""
    private = state_dir / PRIVATE_FILE
    created = not private.exists()
    if created:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write(private, {"keys": [_private_jwk(Ed25519PrivateKey.generate())]}, 0o600)
    _publish(state_dir, issuer)
    return private, created


def rotate_caller_keys(state_dir: Path, issuer: str, *, keep: int = 2) -> str:
    """Put a new key first, keep the newest ``keep``; the new ``kid``.

    The public set is written first, so a backend knows the new key before any assertion
    signed with it can reach it.
    """
    private = state_dir / PRIVATE_FILE
    ensure_caller_keys(state_dir, issuer)
    data = json.loads(private.read_text(encoding="utf-8"))
    new = _private_jwk(Ed25519PrivateKey.generate())
    keys = [new, *data["keys"]][: max(keep, 1)]
    _write(
        state_dir / PUBLIC_FILE,
        {"issuer": issuer, "keys": [_public_member(k) for k in keys]},
        0o644,
    )
    _write(private, {"keys": keys}, 0o600)
    return str(new["kid"])


def _publish(state_dir: Path, issuer: str) -> None:
    private = json.loads((state_dir / PRIVATE_FILE).read_text(encoding="utf-8"))
    public = {"issuer": issuer, "keys": [_public_member(k) for k in private["keys"]]}
    path = state_dir / PUBLIC_FILE
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = None
    if current != public:
        _write(path, public, 0o644)


def public_keys(state_dir: Path) -> dict[str, Any]:
    """The public JWK Set (with the issuer) as backends read it."""
    data: dict[str, Any] = json.loads((state_dir / PUBLIC_FILE).read_text(encoding="utf-8"))
    return data


@dataclass(frozen=True)
class KeyFile:
    """A JWK Set file as read once, with the (mtime, size) that tells when it has changed."""

    data: dict[str, Any]
    stamp: tuple[int, int]

    @classmethod
    def read(cls, path: Path) -> KeyFile:
        stamp = cls.stamp_of(path)  # first: a change made while reading shows at the next look
        return cls(json.loads(path.read_text(encoding="utf-8")), stamp)

    @staticmethod
    def stamp_of(path: Path) -> tuple[int, int]:
        status = path.stat()
        return status.st_mtime_ns, status.st_size


# -- signing (the gateway) -----------------------------------------------------------------


class AssertionSigner:
    """Signs one assertion per forwarded request with the first key of the private set."""

    def __init__(
        self, path: Path, issuer: str, private: KeyFile, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.issuer = issuer
        self.clock = clock
        self._use(private)

    @classmethod
    def load(
        cls, state_dir: Path, issuer: str, *, clock: Callable[[], float] = time.time
    ) -> AssertionSigner:
        """The project's signer: its private key file read, and made on first use."""
        path, _ = ensure_caller_keys(state_dir, issuer)
        return cls(path, issuer, KeyFile.read(path), clock=clock)

    def _use(self, private: KeyFile) -> None:
        jwk = private.data["keys"][0]
        self._key = Ed25519PrivateKey.from_private_bytes(_unb64(jwk["d"]))
        header = {"alg": ALGORITHM, "typ": TYPE, "kid": jwk["kid"]}
        self._prefix = _b64(orjson.dumps(header)) + b"."
        self.kid = str(jwk["kid"])
        self._stamp = private.stamp

    def reload_if_changed(self) -> bool:
        """Pick up ``atrium admin keys rotate --caller`` made while the gateway runs."""
        if KeyFile.stamp_of(self.path) == self._stamp:
            return False
        self._use(KeyFile.read(self.path))
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
        now = int(self.clock())
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
        signing_input = self._prefix + _b64(orjson.dumps(claims))
        return (signing_input + b"." + _b64(self._key.sign(signing_input))).decode("ascii")


# -- verifying (the backends) --------------------------------------------------------------


class AssertionVerifier:
    """Checks an assertion for one server against the public key file the gateway wrote."""

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
                keys[str(jwk["kid"])] = Ed25519PublicKey.from_public_bytes(_unb64(jwk["x"]))
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
            signature = _unb64(signature_part)
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
        value = orjson.loads(_unb64(part))
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
