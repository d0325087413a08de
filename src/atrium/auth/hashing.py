"""How secrets are kept: high-entropy tokens as SHA-256, passwords with argon2id.

Codes, refresh tokens and client secrets are 256-bit random values, so a fast hash cannot be
brute-forced and lets the store look them up by hash; people's passwords are low-entropy and
get argon2id (RFC 9106) with a per-hash salt.
"""

from __future__ import annotations

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
    login timing does not tell which user names exist."""
    return hash_password(secrets.token_urlsafe(16))
