"""The access-token signing keys in the shared store (issue 18): one key set for every replica.

Every process of a project, on every host, signs and verifies with the keys the store holds
(``atrium.store.keys``), their private halves sealed under the project's master key
(``atrium.secretbox``: ``ATRIUM_SECRET_KEY`` or the ring file; every replica needs the same).
A token minted by one replica verifies on every other, and a second host with its own
``atrium init`` uses the first host's keys rather than its own.

First use (``KeyStore.load``): with no key stored, the project's ``.atrium/signing-keys.json``
is imported, so that tokens issued before the upgrade keep verifying, or, with no file, a new
key is made; under the store's write lock, so replicas starting together store one set. From
then on the file is neither read nor written: it stays on disk, its key the store's first,
until a rotation retires it.

Rotation without a 401 window (``KeyStore.rotate``): the new key is stored verify-only, signing
from ``signs_after_s`` later, and announced (on PostgreSQL every gateway reloads at once; each
also polls the store every ``poll_s``). ``signs_after_s`` must cover the slowest replica's
reload plus the clocks' disagreement: every process signs with the newest key whose
``signs_from`` has passed on its own clock (``KeySet.signing``), so none signs with a key
another cannot verify yet. The newest ``keep`` keys stay; the older ones are retired: their
tokens refused everywhere at the next reload, their private halves erased from the store.

Errors: ``KeyStoreError`` (a stored key does not open: the wrong master key, or a row altered),
``SecretKeyError`` (no master key to open them with), ``StoreError`` (the database).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from atrium.auth.keys import (
    DEFAULT_SIGNS_AFTER_S,
    KeySet,
    SigningKey,
    new_signing_key,
    read_key_file,
)
from atrium.auth.sealed_keys import HeldKey, KeyStoreError, Purpose, SealedKeys
from atrium.errors import AtriumError
from atrium.secretbox import SecretBox
from atrium.settings import Settings
from atrium.store import Store
from atrium.store.keys import Added, KeyQueries, NewKey

logger = logging.getLogger(__name__)

PURPOSE = "access-token"

__all__ = ["PURPOSE", "KeyState", "KeyStore", "KeyStoreError", "key_states", "project_keys"]


@dataclass(frozen=True)
class KeyState:
    """A stored key as ``atrium admin keys list`` shows it."""

    kid: str
    created_at: datetime
    signs_from: datetime
    retired_at: datetime | None

    def describe(self, now: datetime, signing: str | None) -> str:
        """``signing``: the kid of the key that signs now (``signing_kid``)."""
        if self.retired_at is not None:
            return f"retired {_when(self.retired_at)}"
        if self.kid == signing:
            return "signs"
        if self.signs_from > now:
            return f"verify-only until {_when(self.signs_from)}"
        return "verify-only"


class KeyStore:
    """The project's access-token keys in ``store``, opened with ``box``."""

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
        self._keys = SealedKeys(queries, box, ACCESS_TOKEN_KEYS, self._first_keys)

    @classmethod
    def of(
        cls, settings: Settings, store: Store, *, clock: Callable[[], float] = time.time
    ) -> KeyStore:
        return cls(store.keys, SecretBox.load(settings), settings.state_dir, clock=clock)

    async def load(self) -> KeySet:
        """The key set, the first keys stored first if there are none yet."""
        return KeySet(_signing_keys(await self._keys.load()), clock=self._clock)

    async def refresh(self, keys: KeySet) -> bool:
        """Bring ``keys`` in line with the store; whether anything changed."""
        found = _signing_keys(await self._keys.live())
        if [(k.kid, k.signs_from) for k in found] == [(k.kid, k.signs_from) for k in keys.entries]:
            return False
        keys.replace(found)
        return True

    async def reload(self, keys: KeySet) -> bool:
        """``refresh`` for the gateway's poll: when the store cannot be read, or a key there
        cannot be opened, keep verifying and signing with what ``keys`` holds, and say why."""
        try:
            return await self.refresh(keys)
        except AtriumError as exc:
            logger.error("signing keys not reloaded, keeping the %d held: %s", len(keys.keys), exc)
            return False

    async def rotate(self, *, keep: int = 2, signs_after_s: float = DEFAULT_SIGNS_AFTER_S) -> Added:
        """Store a new key that signs ``signs_after_s`` from now on; keep the newest ``keep``."""
        key = new_signing_key()
        new = NewKey(str(key["kid"]), json.dumps(key))
        return await self._keys.add(new, keep=keep, signs_after_s=signs_after_s)

    def _first_keys(self) -> list[NewKey]:
        """The key file's keys (signing key first), or one new key without a file."""
        try:
            found = read_key_file(self._state_dir)
        except ValueError as exc:
            raise KeyStoreError(f"cannot import the signing keys: {exc}") from None
        if found is None:
            key = new_signing_key()
            return [NewKey(str(key["kid"]), json.dumps(key))]
        keys = [_parsed(json.dumps(item), str(item.get("kid", ""))) for item in found]
        logger.info("importing %d signing keys from %s into the store", len(keys), self._state_dir)
        return [NewKey(str(key.kid), json.dumps(key.as_dict(private=True))) for key in keys]


def _signing_keys(held: list[HeldKey[ECKey]]) -> list[SigningKey]:
    return [SigningKey(entry.key, entry.signs_from) for entry in held]


async def key_states(store: Store, purpose: str = PURPOSE) -> list[KeyState]:
    """Every key of ``purpose`` stored, retired ones included, newest first (no master key
    needed)."""
    stored = await store.keys.list(purpose, retired=True)
    return [KeyState(s.kid, s.created_at, s.signs_from, s.retired_at) for s in stored]


def signing_kid(states: Sequence[KeyState], now: datetime) -> str | None:
    """The kid of the key that signs at ``now`` (``KeySet.signing``'s rule); ``states``
    newest first."""
    live = [state for state in states if state.retired_at is None]
    for state in live:
        if state.signs_from <= now:
            return state.kid
    first = min(live, key=lambda state: state.signs_from, default=None)
    return None if first is None else first.kid


def project_keys(settings: Settings) -> KeySet:
    """The project's key set for a synchronous caller (the CLI, a token minted outside the
    gateway): the store is opened for the read, on a thread of its own, so that this works
    inside a running event loop too (which it blocks meanwhile: a gateway has ``auth.keys``)."""

    async def read() -> KeySet:
        async with await Store.open(settings) as store:
            return await KeyStore.of(settings, store).load()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="atrium-keys") as pool:
        return pool.submit(asyncio.run, read()).result()


def _parsed(text: str, kid: str) -> ECKey:
    """The private ES256 key ``text`` holds, whose thumbprint must be ``kid``: a stored key
    is what its id says, or it is refused."""
    try:
        key = ECKey.import_key(json.loads(text))
        good = key.is_private and key.curve_name == "P-256" and key.thumbprint() == kid
    except (JoseError, ValueError, TypeError):
        good = False
    if not good:
        raise KeyStoreError(
            f"signing key {kid or '(no kid)'} is not a private P-256 key whose RFC 7638"
            " thumbprint is its kid: refusing to load it"
        )
    return key


ACCESS_TOKEN_KEYS = Purpose(PURPOSE, "signing key", _parsed, "atrium admin keys rotate")


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")
