"""Revoked access tokens (RFC 7009 §2, and whole grant families after a reuse).

Access tokens are JWTs checked without a database round trip, so each gateway replica keeps
the live revocations in memory and reloads them when the store's fingerprint moves (one cheap
query per poll). The replica that takes a revocation applies it at once.
"""

from __future__ import annotations

import logging

from atrium.auth.tokens import AccessClaims
from atrium.store import Store

logger = logging.getLogger(__name__)


class RevocationList:
    def __init__(self) -> None:
        self._keys: dict[str, str] = {}
        self._fingerprint: object = None

    def add(self, key: str, kind: str) -> None:
        self._keys[key] = kind

    def revoked(self, claims: AccessClaims) -> bool:
        if not self._keys:
            return False
        return claims.jti in self._keys or (
            claims.family is not None and claims.family in self._keys
        )

    async def refresh(self, store: Store) -> bool:
        fingerprint = await store.grants.revocations_fingerprint()
        if fingerprint == self._fingerprint:
            return False
        self._keys = dict(await store.grants.active_revocations())
        self._fingerprint = fingerprint
        return True
