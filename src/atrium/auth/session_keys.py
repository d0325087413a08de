"""The session key in the shared store (issue 18): one key for every replica, on every host.

The session key signs the console's session cookie, the CSRF tokens and the pending
authorization request of the OAuth pages (``atrium.auth.signed``), the DPoP nonces
(``SessionNonces``), and seals the ``Mcp-Session-Id`` the gateway hands out
(``atrium.gateway.sessions``). Each must open on whichever replica the next request reaches,
so every process holds the store's keys (purpose ``session``), sealed there under the
project's master key like the access-token keys (``atrium.auth.sealed_keys``).

First use (``SessionKeyStore.load``): with no key stored, ``.atrium/session-key`` is imported,
so that the sessions and sealed ids of before the upgrade stay valid, or, without the file, a
new key is made; under the store's write lock, so replicas starting together store one. A
second host with its own ``atrium init`` (its own file) uses the store's key, not its own.

Rotation (``atrium admin keys rotate --session``): a leaked session key lets anyone forge a
console session, so it can be replaced. The new key is stored verify-only and signs only
``signs_after_s`` later, once every replica holds it (each reloads at its poll, on PostgreSQL
at once); the previous keys (the newest ``keep``) still verify, so the sessions, forms in
progress and legacy MCP sessions of the last hours stay valid until a later rotation retires
them. A key's ``kid`` is a fingerprint that tells nothing about it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from atrium.auth.keys import DEFAULT_SIGNS_AFTER_S
from atrium.auth.sealed_keys import KeyStoreError, Purpose, SealedKeys
from atrium.auth.signed import SessionKeys, new_session_key, read_session_key, session_key_ok
from atrium.errors import AtriumError
from atrium.secretbox import SecretBox
from atrium.settings import Settings
from atrium.store import Store
from atrium.store.keys import Added, KeyQueries, NewKey

logger = logging.getLogger(__name__)

PURPOSE = "session"
_ID_LABEL = b"atrium session key id\x00"


def session_kid(key: bytes) -> str:
    """The id of ``key``: 16 hex digits of SHA-256 over a label and the key."""
    return hashlib.sha256(_ID_LABEL + key).hexdigest()[:16]


def _parsed(text: str, kid: str) -> bytes:
    key = text.encode("utf-8")
    if not session_key_ok(key) or session_kid(key) != kid:
        raise KeyStoreError(f"session key {kid} is not a session key whose id is its fingerprint")
    return key


SESSION_KEYS = Purpose(PURPOSE, "session key", _parsed, "atrium admin keys rotate --session")


class SessionKeyStore:
    """The project's session keys in ``store``, opened with ``box``."""

    def __init__(
        self,
        queries: KeyQueries,
        box: SecretBox,
        state_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state_dir = state_dir
        self._clock = clock
        self._keys = SealedKeys(queries, box, SESSION_KEYS, self._first_keys)

    @classmethod
    def of(
        cls, settings: Settings, store: Store, *, clock: Callable[[], float] = time.time
    ) -> SessionKeyStore:
        return cls(store.keys, SecretBox.load(settings), settings.state_dir, clock=clock)

    async def load(self) -> SessionKeys:
        """The session keys, the first one stored first if there is none yet."""
        return SessionKeys(await self._keys.load(), clock=self._clock)

    async def reload(self, keys: SessionKeys) -> bool:
        """Bring ``keys`` in line with the store; whether anything changed. When the store
        cannot be read, or a key there cannot be opened, keep what ``keys`` holds, and say why."""
        try:
            found = await self._keys.live()
        except AtriumError as exc:
            logger.error("session keys not reloaded, keeping the %d held: %s", len(keys.all), exc)
            return False
        if [(k.kid, k.signs_from) for k in found] == [(k.kid, k.signs_from) for k in keys.entries]:
            return False
        keys.replace(found)
        return True

    async def rotate(self, *, keep: int = 2, signs_after_s: float = DEFAULT_SIGNS_AFTER_S) -> Added:
        """Store a new key that signs ``signs_after_s`` from now on; keep the newest ``keep``."""
        key = new_session_key()
        new = NewKey(session_kid(key), key.decode("ascii"))
        return await self._keys.add(new, keep=keep, signs_after_s=signs_after_s)

    def _first_keys(self) -> list[NewKey]:
        try:
            found = read_session_key(self._state_dir)
        except ValueError as exc:
            raise KeyStoreError(f"cannot import the session key: {exc}") from None
        if found is None:
            found = new_session_key()
        else:
            logger.info("importing the session key of %s into the store", self._state_dir)
        return [NewKey(session_kid(found), found.decode("ascii"))]
