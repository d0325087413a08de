"""A purpose's keys as the store holds them, sealed, opened for one process (issue 18).

What the access-token signing keys (``atrium.auth.keystore``), the session key
(``atrium.auth.session_keys``) and the caller-assertion keys (``atrium.auth.caller_keystore``)
share: one ring per purpose in ``signing_keys`` (``atrium.store.keys``), every private half
sealed under the project's master key (``atrium.secretbox``), so every replica on every host
holds the same keys once it holds the same master key.

- First use (``SealedKeys.load``): with no key of the purpose stored, ``first()`` gives the keys
  to store, under the store's write lock (replicas starting together store one set): the
  project's old key file imported, so that what was signed before still verifies, or a new key.
- A key verifies from the moment it is stored and signs from its ``signs_from``
  (``signing_of``): a rotation (``SealedKeys.add``) reaches every process verify-only first.
- Each stored key is parsed by the purpose (``parse``), which refuses a key that is not what
  its ``kid`` says.

Errors: ``KeyStoreError`` (a stored key does not open under the master key held, or is not a
key of its purpose), ``SecretKeyError`` (no master key), ``StoreError`` (the database).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Generic, TypeVar

from atrium.errors import AtriumError
from atrium.secretbox import SECRET_KEY_VARIABLE, SecretBox, SecretUnreadable

if TYPE_CHECKING:  # the store loads when keys are opened, not for ``HeldKey`` (``atrium init``)
    from atrium.store.keys import Added, KeyQueries, NewKey, StoredKey

K = TypeVar("K")


class KeyStoreError(AtriumError):
    """A stored key cannot be used; the message names it and says what to do."""


@dataclass(frozen=True)
class HeldKey(Generic[K]):
    """A key a process holds: it verifies, and may sign from ``signs_from`` (seconds since the
    epoch)."""

    kid: str
    key: K
    signs_from: float = 0.0


def signing_of(held: Sequence[HeldKey[K]], now: float) -> HeldKey[K]:
    """The key that signs at ``now`` of ``held`` (newest first): the newest whose
    ``signs_from`` has passed; if none has (the key signing was retired by a second rotation
    within the first's delay, or this host's clock is behind), the first to come."""
    for entry in held:
        if entry.signs_from <= now:
            return entry
    return min(held, key=lambda entry: entry.signs_from)


@dataclass(frozen=True)
class Purpose(Generic[K]):
    """What one kind of key is: its ``purpose`` in the store, how messages name one
    (``what``), how its sealed text becomes a key (``parse(text, kid)``, raising
    ``KeyStoreError``), and the command that rotates it."""

    purpose: str
    what: str
    parse: Callable[[str, str], K]
    rotate_command: str


class SealedKeys(Generic[K]):
    """The keys of one ``Purpose`` in the store, opened with ``box``."""

    def __init__(
        self,
        queries: KeyQueries,
        box: SecretBox,
        purpose: Purpose[K],
        first: Callable[[], Sequence[NewKey]],
    ) -> None:
        self._queries = queries
        self._box = box
        self._purpose = purpose
        self._first = first
        # A kid names one key: opened once, it never needs opening again.
        self._opened: dict[str, K] = {}

    async def load(self) -> list[HeldKey[K]]:
        """The live keys, newest first, the first ones stored if there are none yet."""
        await self._queries.ensure(self._purpose.purpose, self._first, box=self._box)
        return await self.live()

    async def live(self) -> list[HeldKey[K]]:
        """The live keys, newest first, each opened (``KeyStoreError`` if one does not)."""
        stored = await self._queries.list(self._purpose.purpose)
        if not stored:
            raise KeyStoreError(f"the store holds no {self._purpose.what}")
        return [HeldKey(s.kid, self._open(s), s.signs_from.timestamp()) for s in stored]

    async def add(self, new: NewKey, *, keep: int, signs_after_s: float) -> Added:
        """Store ``new``, signing ``signs_after_s`` from now on; keep the newest ``keep``."""
        if signs_after_s < 0:
            raise ValueError("a new key cannot sign before it is stored")
        # Open the stored keys first: a new key sealed under another master key than theirs
        # would be one no replica holding theirs can open.
        await self.load()
        after = timedelta(seconds=signs_after_s)
        purpose = self._purpose.purpose
        return await self._queries.add(purpose, new, box=self._box, signs_after=after, keep=keep)

    def _open(self, stored: StoredKey) -> K:
        from atrium.store.keys import sealing_owner

        if (opened := self._opened.get(stored.kid)) is not None:
            return opened
        assert stored.sealed is not None, "a live key is sealed (ck_signing_keys_sealed)"
        owner = sealing_owner(self._purpose.purpose)
        try:
            text = self._box.open(stored.sealed, owner=owner, name=stored.kid)
        except SecretUnreadable:
            raise self._unreadable(stored) from None
        key = self._opened[stored.kid] = self._purpose.parse(text, stored.kid)
        return key

    def _unreadable(self, stored: StoredKey) -> KeyStoreError:
        assert stored.sealed is not None
        master, what, command = (
            stored.sealed.key_id,
            self._purpose.what,
            self._purpose.rotate_command,
        )
        if master not in self._box.key_ids:
            where = self._box.path or SECRET_KEY_VARIABLE
            return KeyStoreError(
                f"{what} {stored.kid} in the store is sealed under master key {master},"
                f" which {where} does not hold: give every replica of the project the same"
                f" master key ({SECRET_KEY_VARIABLE}, or the same key ring file)"
            )
        return KeyStoreError(
            f"{what} {stored.kid} in the store was altered or belongs to another key (it"
            " does not open under the master key that sealed it): refusing to load it. Find out"
            f" who could write to the database, then retire it with `{command}`"
        )
