"""Revoked access tokens (RFC 7009 §2, and whole grant families after a reuse), and subjects
whose every token issued so far is revoked (a user disabled, deleted, narrowed, re-passworded).

Access tokens are JWTs checked without a database round trip, so each gateway replica keeps
the live revocations in memory and reloads them when the store's fingerprint moves (one cheap
query per poll, or at once when ``atrium admin`` asks the running gateway to). The replica that
takes a revocation applies it at once.

A subject revocation compares the token's ``iat`` (whole seconds, RFC 7519 §4.1.6) with the
moment of the revocation: a token issued in that same second is revoked too, whether minted
just before or just after. Refusing a token minted a few milliseconds after the change is the
side to err on; the client gets a new one.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from atrium.auth.access_tokens import MAX_LIFETIME_S, AccessClaims
from atrium.store import Store

logger = logging.getLogger(__name__)


class RevocationList:
    def __init__(self) -> None:
        self._keys: dict[str, str] = {}
        # subject -> POSIX time: its tokens issued (iat) until then are revoked
        self._subjects: dict[str, float] = {}
        self._fingerprint: object = None
        # One refresh at a time: a slow poll must not put back a list older than the one a
        # prompt refresh (``atrium admin`` poking the gateway) has just loaded.
        self._refreshing = asyncio.Lock()

    def add(self, key: str, kind: str) -> None:
        self._keys[key] = kind

    def revoked(self, claims: AccessClaims) -> bool:
        if self._keys and (
            claims.jti in self._keys or (claims.family is not None and claims.family in self._keys)
        ):
            return True
        until = self._subjects.get(claims.subject)
        return until is not None and claims.issued_at <= until

    async def refresh(self, store: Store) -> bool:
        async with self._refreshing:
            fingerprint = await store.grants.revocations_fingerprint()
            if fingerprint == self._fingerprint:
                return False
            keys: dict[str, str] = dict(await store.grants.active_revocations())
            subjects = await store.grants.active_subject_revocations()
            self._keys = keys
            self._subjects = {subject: at.timestamp() for subject, at in subjects.items()}
            self._fingerprint = fingerprint
            return True


async def revoke_subject(store: Store, subject: str, *, revoke_refresh: bool) -> None:
    """Revoke every access token issued to ``subject`` so far and its pending codes; with
    ``revoke_refresh``, its refresh tokens too (the grants end, not only the tokens).

    Call it after the change that prompted it (a role, a password) is stored: a token minted
    in between from the old state is then issued before the revocation, and revoked by it.
    """
    # Every token so revoked expires within MAX_LIFETIME_S of its iat; the record can go then.
    keep_for = timedelta(seconds=MAX_LIFETIME_S)
    await store.grants.revoke_subject(subject, keep_for, revoke_refresh=revoke_refresh)
    logger.info("revoked the tokens of %s", subject)
