"""How secrets are kept: high-entropy tokens as SHA-256, passwords with argon2id.

Codes, refresh tokens and client secrets are 256-bit random values, so a fast hash cannot be
brute-forced and lets the store look them up by hash; people's passwords are low-entropy and
get argon2id (RFC 9106) with a per-hash salt.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # argon2 loads with the first password, not with every token's hash
    from argon2 import PasswordHasher


@functools.cache
def _passwords() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(token), stored_hash)


def hash_password(password: str) -> str:
    return _passwords().hash(password)


def password_matches(password: str, stored_hash: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _passwords().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_password_hash() -> str:
    """Verifying against this when the user is unknown keeps the answer time the same, so
    login timing does not tell which user names exist.

    An argon2 hash in the PHC string format with the hasher's own type and parameters, a
    random salt and a random digest: verifying a password against it runs the whole key
    derivation, as against a stored hash, and fails. Made without running argon2 (a real hash
    of a random password cost every process that loaded the authorization server ~0.2 s of CPU
    and 64 MiB, issue 17), and no password has this digest but by chance."""
    from argon2.low_level import ARGON2_VERSION

    hasher = _passwords()
    salt, digest = secrets.token_bytes(hasher.salt_len), secrets.token_bytes(hasher.hash_len)
    return (
        f"$argon2{hasher.type.name.lower()}$v={ARGON2_VERSION}"
        f"$m={hasher.memory_cost},t={hasher.time_cost},p={hasher.parallelism}"
        f"${_b64(salt)}${_b64(digest)}"
    )


def _b64(data: bytes) -> str:
    """The PHC string format's base64: the standard alphabet, unpadded."""
    return base64.b64encode(data).decode("ascii").rstrip("=")
