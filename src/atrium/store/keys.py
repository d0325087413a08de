"""Typed queries on ``signing_keys``: the keys Atrium signs with, shared by every replica
(issue 18, scale-out).

One row per key of a ``purpose``: ``access-token`` (the OAuth access tokens',
``atrium.auth.keystore``), ``session`` (the HMAC key of sessions and forms,
``atrium.auth.session_keys``), ``caller-assertion`` (the gateway's keys towards backends,
``atrium.auth.caller_keystore``). A key's private half (a JWK as JSON, or the session key)
is only ever stored sealed (``atrium.secretbox``: AES-256-GCM under the project's master key
``key_id``, ``nonce``, ``ciphertext`` with its tag), with the purpose and the ``kid`` as
associated data: a sealed value altered, or copied into another key's row, does not open. A
key verifies from the moment it is stored and may sign from ``signs_from``; once
``retired_at`` is set it does neither, and its private half is erased from the row.

- ``ensure`` stores a purpose's first keys when it has none; ``add`` stores one more and retires
  those beyond the newest ``keep``. Both hold the lock ``signing-keys`` (two replicas starting
  together store one first key) and announce an ``auth`` change in their transaction
  (``atrium.store.changes``), so that gateways and supervisors on PostgreSQL reload at once.
- ``reencrypt`` and ``key_ids`` serve a rotation of the master key
  (``atrium.store.secrets.rotate_secret_key``): every key is re-sealed under the new master
  key before the old one leaves the ring, under the same lock as the writes, with the ring
  re-read there, as the secrets are.

This module seals and opens nothing itself but through the ``SecretBox`` it is handed, and
never logs a key; which key signs, and parsing a key, are ``atrium.auth.sealed_keys``' and its
users'.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CheckConstraint, Column, LargeBinary, Row, String, Table, insert, select
from sqlalchemy import update as update_rows
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from atrium.secretbox import Sealed, SecretBox
from atrium.store.changes import announce
from atrium.store.servers import Clock, utc_now
from atrium.store.tables import UTCDateTime, metadata, secrets
from atrium.store.transaction import reading, writing

LOCK = "signing-keys"
# A private JWK is well under 1 KiB; SecretBox refuses anything over 64 KiB anyway.
KID_LENGTH = 64

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("purpose", String(32), primary_key=True),
    Column("kid", String(KID_LENGTH), primary_key=True),
    # NULL once retired: the private half is erased with the key's last use.
    Column("key_id", String(32), nullable=True),
    Column("nonce", LargeBinary, nullable=True),
    Column("ciphertext", LargeBinary, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("signs_from", UTCDateTime, nullable=False),
    Column("retired_at", UTCDateTime, nullable=True),
    CheckConstraint(
        "retired_at IS NOT NULL OR (key_id IS NOT NULL AND nonce IS NOT NULL"
        " AND ciphertext IS NOT NULL)",
        name="sealed",
    ),
)


@dataclass(frozen=True)
class NewKey:
    """A key to store: its ``kid`` and its private JWK as JSON (sealed before it is stored)."""

    kid: str
    private: str

    def __repr__(self) -> str:
        return f"NewKey(kid={self.kid!r})"  # never the private half, not even in a traceback


@dataclass(frozen=True)
class StoredKey:
    """A stored key; ``sealed`` is None once it is retired (its private half erased)."""

    purpose: str
    kid: str
    created_at: datetime
    signs_from: datetime
    retired_at: datetime | None
    sealed: Sealed | None


@dataclass(frozen=True)
class Added:
    """What ``add`` did: the new key, the keys it retired, and whether no key left may sign
    before the new key's ``signs_from`` (the one signing was retired: ``early``)."""

    key: StoredKey
    retired: tuple[str, ...]
    early: bool


def sealing_owner(purpose: str) -> str:
    """The owner a key of ``purpose`` is sealed for (associated data; no secret's owner starts
    with '@signing-key', so a sealed secret is no key and a key no secret)."""
    return f"@signing-key:{purpose}"


class KeyQueries:
    """Store, list, retire and re-seal signing keys; database failures are ``StoreError``."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    async def list(self, purpose: str, *, retired: bool = False) -> builtins.list[StoredKey]:
        """The keys of ``purpose``, newest first; the retired ones too when ``retired``."""
        query = _newest_first(select(signing_keys).where(signing_keys.c.purpose == purpose))
        if not retired:
            query = query.where(signing_keys.c.retired_at.is_(None))
        async with reading(self._engine, f"list the {purpose} signing keys") as conn:
            return [_stored(row) for row in await conn.execute(query)]

    async def ensure(
        self, purpose: str, first: Callable[[], Sequence[NewKey]], *, box: SecretBox
    ) -> bool:
        """Store ``first()`` (newest first; the first signs at once) if ``purpose`` has no key
        yet; whether it did. Read without the lock first: most calls find keys."""
        async with reading(self._engine, f"look for {purpose} signing keys") as conn:
            if await _has_keys(conn, purpose):
                return False
        async with writing(self._engine, f"store the first {purpose} key", lock=LOCK) as conn:
            if await _has_keys(conn, purpose):
                return False  # another process stored them while this one waited for the lock
            await _start(conn, box)
            now = self._clock()
            for index, new in enumerate(first()):
                # Older keys of an imported set are older by a microsecond each: "newest" is
                # the set's own order.
                at = now - timedelta(microseconds=index)
                await _insert(conn, box, purpose, new, created_at=at, signs_from=at)
            await announce(conn, "auth")
        return True

    async def add(
        self, purpose: str, new: NewKey, *, box: SecretBox, signs_after: timedelta, keep: int
    ) -> Added:
        """Store ``new``, signing from ``signs_after`` from now on; retire the keys of
        ``purpose`` beyond the newest ``keep`` (the new one included)."""
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        async with writing(self._engine, f"add a {purpose} signing key", lock=LOCK) as conn:
            await _start(conn, box)
            now = self._clock()
            key = await _insert(
                conn, box, purpose, new, created_at=now, signs_from=now + signs_after
            )
            query = select(signing_keys).where(
                signing_keys.c.purpose == purpose, signing_keys.c.retired_at.is_(None)
            )
            live = [_stored(row) for row in await conn.execute(_newest_first(query))]
            retired = tuple(old.kid for old in live[keep:])
            if retired:
                await conn.execute(_retiring(purpose, retired, now))
            await announce(conn, "auth")
        early = all(kept.signs_from > now for kept in live[:keep])
        return Added(key, retired, early)

    async def reencrypt(self, box: SecretBox) -> int:
        """Seal every live key not under ``box``'s current master key under it; how many were.
        For a rotation of the master key (``atrium.store.secrets.rotate_secret_key``)."""
        async with writing(self._engine, "re-seal the signing keys", lock=LOCK) as conn:
            box.refresh()
            query = select(signing_keys).where(
                signing_keys.c.retired_at.is_(None), signing_keys.c.key_id != box.current
            )
            rows = (await conn.execute(query)).all()
            for row in rows:
                owner = sealing_owner(row.purpose)
                value = box.open(_sealed(row), owner=owner, name=row.kid)
                sealed = box.seal(value, owner=owner, name=row.kid)
                await conn.execute(_key(row.purpose, row.kid).values(**_sealed_columns(sealed)))
        return len(rows)

    async def key_ids(self) -> set[str]:
        """The ids of the master keys some live signing key is sealed under."""
        query = select(signing_keys.c.key_id).where(signing_keys.c.key_id.is_not(None)).distinct()
        async with reading(self._engine, "list the master keys of signing keys") as conn:
            return {str(kid) for kid in (await conn.execute(query)).scalars()}


async def _has_keys(conn: AsyncConnection, purpose: str) -> bool:
    query = select(signing_keys.c.kid).where(signing_keys.c.purpose == purpose).limit(1)
    return (await conn.execute(query)).first() is not None


async def _start(conn: AsyncConnection, box: SecretBox) -> None:
    """Write the project's own master key ring for the first sealed value only: with anything
    sealed already, a missing ring is a lost one (``SecretBox.start``), and sealing goes no
    further than the ``SecretKeyError`` saying how to restore it."""
    if box.written:
        return
    sealed_key = select(signing_keys.c.kid).where(signing_keys.c.key_id.is_not(None)).limit(1)
    secret = select(secrets.c.name).limit(1)
    if (await conn.execute(sealed_key)).first() is None and (
        await conn.execute(secret)
    ).first() is None:
        box.start()


async def _insert(
    conn: AsyncConnection,
    box: SecretBox,
    purpose: str,
    new: NewKey,
    *,
    created_at: datetime,
    signs_from: datetime,
) -> StoredKey:
    if not new.kid or len(new.kid) > KID_LENGTH:
        raise ValueError(f"a key id must be 1 to {KID_LENGTH} characters")
    # Sealed here, under the lock, with the ring re-read by ``seal``: a master-key rotation's
    # ``reencrypt`` comes wholly before this write (which then sees the new key) or after it.
    sealed = box.seal(new.private, owner=sealing_owner(purpose), name=new.kid)
    key = StoredKey(purpose, new.kid, created_at, signs_from, None, sealed)
    values = {"purpose": purpose, "kid": new.kid, "created_at": created_at}
    values |= {"signs_from": signs_from, **_sealed_columns(sealed)}
    await conn.execute(insert(signing_keys).values(**values))
    return key


def _retiring(purpose: str, kids: Sequence[str], now: datetime) -> Any:
    erased = {"key_id": None, "nonce": None, "ciphertext": None}
    return (
        update_rows(signing_keys)
        .where(signing_keys.c.purpose == purpose, signing_keys.c.kid.in_(kids))
        .values(retired_at=now, **erased)
    )


def _key(purpose: str, kid: str) -> Any:
    return update_rows(signing_keys).where(
        signing_keys.c.purpose == purpose, signing_keys.c.kid == kid
    )


def _newest_first(query: Any) -> Any:
    return query.order_by(signing_keys.c.created_at.desc(), signing_keys.c.kid)


def _sealed_columns(sealed: Sealed) -> dict[str, Any]:
    return {"key_id": sealed.key_id, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext}


def _sealed(row: Row[Any]) -> Sealed:
    return Sealed(row.key_id, bytes(row.nonce), bytes(row.ciphertext))


def _stored(row: Row[Any]) -> StoredKey:
    sealed = None if row.ciphertext is None else _sealed(row)
    return StoredKey(row.purpose, row.kid, row.created_at, row.signs_from, row.retired_at, sealed)
