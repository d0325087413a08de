"""PKCE (RFC 7636), S256 only: OAuth 2.1 §4.1.1 forbids ``plain`` where S256 is possible.

A verifier is 43..128 characters of the unreserved set (§4.1); the challenge is
base64url(SHA-256(verifier)) without padding (§4.2), 43 characters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from atrium.auth.errors import invalid_grant, invalid_request

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_challenge(challenge: str | None, method: str | None) -> str:
    """The authorization request's challenge, or ``invalid_request`` (downgrades included)."""
    if not challenge:
        raise invalid_request("code_challenge is required (PKCE, RFC 7636)")
    if method != "S256":
        raise invalid_request("code_challenge_method must be S256 (plain is not accepted)")
    if not _CHALLENGE.match(challenge):
        raise invalid_request("code_challenge must be 43 base64url characters (S256)")
    return challenge


def verify(verifier: str | None, challenge: str) -> None:
    if not verifier or not _VERIFIER.match(verifier):
        raise invalid_grant("code_verifier must be 43-128 unreserved characters (RFC 7636 §4.1)")
    if not hmac.compare_digest(challenge_of(verifier), challenge):
        raise invalid_grant("code_verifier does not match the code_challenge")
