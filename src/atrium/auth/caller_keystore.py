"""The caller-assertion keys in the shared store (issue 18): every gateway replica signs with
the same keys, and every backend, on every host, knows them.

The private keys are stored sealed under the project's master key (purpose
``caller-assertion``; ``atrium.auth.sealed_keys``). At first use the project's
``.atrium/caller-keys.json`` is imported, so that backends already running keep accepting the
gateway, or, without the file, a new key is made; under the store's write lock, so replicas
starting together store one set. A second host with its own ``atrium init`` uses the store's keys.

Backends keep reading the public file (``caller-keys.pub.json``), so a server needs neither the
store nor the master key to check the gateway. Whoever runs backends writes it from the store:
the supervisor when it starts, before any server, and again whenever the keys change
(``published_caller_keys``: on PostgreSQL at once, through the store's change feed; everywhere
at each ``gateway.poll_s``); every gateway does the same for its own folder; and ``atrium admin
keys rotate --caller`` for the folder it runs in.

Rotation without a refused call (``CallerKeyStore.rotate``): the new key is stored verify-only
and goes into every public file at once; the gateways sign with it only ``signs_after_s``
later (``AssertionSigner``), once every supervisor has published it. That delay must cover the
slowest supervisor's poll and the clocks' disagreement, as for the access-token keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from atrium.auth.assertion import AssertionSigner, caller_key
from atrium.auth.caller_keys import (
    PUBLIC_FILE,
    private_jwk,
    publish_public_keys,
    read_private_keys,
)
from atrium.auth.keys import DEFAULT_SIGNS_AFTER_S
from atrium.auth.sealed_keys import HeldKey, KeyStoreError, Purpose, SealedKeys
from atrium.errors import AtriumError
from atrium.secretbox import SecretBox
from atrium.settings import Settings
from atrium.store import Store
from atrium.store.changes import Change, ChangeFeed
from atrium.store.keys import Added, KeyQueries, NewKey

logger = logging.getLogger(__name__)

PURPOSE = "caller-assertion"
CallerKeys = list[HeldKey[Ed25519PrivateKey]]


def _parsed(text: str, kid: str) -> Ed25519PrivateKey:
    try:
        return caller_key(text, kid).key
    except ValueError as exc:
        raise KeyStoreError(f"{exc}: refusing to load it") from None


CALLER_KEYS = Purpose(PURPOSE, "caller-assertion key", _parsed, "atrium admin keys rotate --caller")


class CallerKeyStore:
    """The project's caller-assertion keys in ``store``, and its public file."""

    def __init__(
        self,
        queries: KeyQueries,
        box: SecretBox,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state_dir = settings.state_dir
        self._issuer = settings.issuer
        self._clock = clock
        self._keys = SealedKeys(queries, box, CALLER_KEYS, self._first_keys)

    @classmethod
    def of(
        cls, settings: Settings, store: Store, *, clock: Callable[[], float] = time.time
    ) -> CallerKeyStore:
        return cls(store.keys, SecretBox.load(settings), settings, clock=clock)

    async def load(self) -> CallerKeys:
        """The live keys, newest first, the first ones stored if there are none yet, and their
        public halves published."""
        keys = await self._keys.load()
        self._write(keys)
        return keys

    async def publish(self) -> CallerKeys:
        """The live keys as the store holds them now, their public halves published."""
        keys = await self._keys.live()
        self._write(keys)
        return keys

    async def current(self) -> CallerKeys | None:
        """``publish`` for a poll: None, and the reason logged, when the store cannot be read
        or a key there cannot be opened (the keys held and the file stay as they are)."""
        try:
            return await self.publish()
        except AtriumError as exc:
            logger.error("caller-assertion keys not reloaded: %s", exc)
            return None

    async def signer(self) -> AssertionSigner:
        """The gateway's signer over the store's keys, reloading from them (``reload``)."""
        keys = await self.load()
        return AssertionSigner(self._issuer, keys, clock=self._clock, source=self.current)

    async def rotate(self, *, keep: int = 2, signs_after_s: float = DEFAULT_SIGNS_AFTER_S) -> Added:
        """Store a new key that signs ``signs_after_s`` from now on; keep the newest ``keep``;
        publish the new set in this folder at once."""
        jwk = private_jwk(Ed25519PrivateKey.generate())
        new = NewKey(jwk["kid"], json.dumps(jwk))
        added = await self._keys.add(new, keep=keep, signs_after_s=signs_after_s)
        await self.publish()
        return added

    def _write(self, keys: CallerKeys) -> None:
        try:
            if publish_public_keys(
                self._state_dir, self._issuer, [private_jwk(held.key) for held in keys]
            ):
                logger.info("caller-assertion keys published: %s", ", ".join(k.kid for k in keys))
        except OSError as exc:
            where = self._state_dir / PUBLIC_FILE
            raise KeyStoreError(f"cannot write {where}: {exc.strerror or exc}") from None

    def _first_keys(self) -> list[NewKey]:
        """The key file's keys (signing key first), or one new key without a file."""
        try:
            found = read_private_keys(self._state_dir)
            keys = [caller_key(json.dumps(jwk), str(jwk.get("kid", ""))) for jwk in found or []]
        except ValueError as exc:
            raise KeyStoreError(f"cannot import the caller-assertion keys: {exc}") from None
        if not keys:
            jwk = private_jwk(Ed25519PrivateKey.generate())
            return [NewKey(jwk["kid"], json.dumps(jwk))]
        logger.info("importing %d caller-assertion keys of %s", len(keys), self._state_dir)
        return [NewKey(held.kid, json.dumps(private_jwk(held.key))) for held in keys]


@dataclass(frozen=True)
class Publishing:
    """The keys being published, and the change feed that wakes the publisher (None on
    SQLite, where the poll alone does)."""

    keys: CallerKeyStore
    changes: ChangeFeed | None


@contextlib.asynccontextmanager
async def published_caller_keys(
    settings: Settings, store: Store | None = None
) -> AsyncIterator[Publishing]:
    """The public file written from the store before the block runs (a ``KeyStoreError`` or
    ``StoreError`` if it cannot be), and kept current while it does: for whoever starts
    backends. Opens a store of its own when not given one."""
    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            store = await Store.open(settings)
            stack.push_async_callback(store.close)
        keys = CallerKeyStore.of(settings, store)
        await keys.load()
        wake = asyncio.Event()
        follow = asyncio.create_task(_follow(keys, settings.poll_s, wake), name="caller-keys")
        stack.push_async_callback(_stopped, follow)
        feed = None
        if ChangeFeed.supported(store.engine):

            def heard(change: Change) -> None:
                if change == "auth":  # key writes announce "auth" (atrium.store.keys)
                    wake.set()

            feed = ChangeFeed(store.engine, heard)
            listen = asyncio.create_task(feed.run(), name="caller-keys-changes")
            stack.push_async_callback(_stopped, listen)
        yield Publishing(keys, feed)


async def _follow(keys: CallerKeyStore, poll_s: float, wake: asyncio.Event) -> None:
    """Publish again at each change heard, and at every poll."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), poll_s)
        wake.clear()
        try:
            await keys.current()
        except Exception:  # the top of a task: the next poll tries again
            logger.exception("publishing the caller-assertion keys failed")


async def _stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
