"""Typed queries on ``secrets``: values stored sealed, per owner (issue 14, the marketplace).

An owner is a user's OAuth ``sub`` or ``PROJECT_OWNER``, the project's own secrets, which the
``$secret`` references of server YAML read (``atrium.registry.secrets``). This module never
writes or logs a value in the clear: it hands values to ``atrium.secretbox`` to be sealed and
opened, and a ``SecretRecord`` carries metadata only.

- ``create`` adds a secret at version 1 (``AlreadyExists`` if the owner has that name);
  ``replace`` gives an existing one a new value, version + 1, keeping when and by whom it was
  created (None if there is none); ``delete`` says whether there was one.
- ``reveal`` opens values; ``SecretUnreadable`` (``atrium.secretbox``) if one does not decrypt.
- Every write takes the lock ``secrets`` and seals inside it, with the ring re-read there: a
  rotation's re-encryption (``reencrypt``, under the same lock) therefore either comes after a
  write and re-seals its value, or before it and the write already sees the new key.
- The project's own ring is written for the first secret only when none is stored, checked
  under that lock (``SecretBox.start``): with secrets stored, a missing ring is a lost one, and
  storing goes no further than a ``SecretKeyError`` saying how to restore it.

``rotate_secret_key`` is the whole ``atrium admin keys rotate --secrets``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Row, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from atrium.secretbox import (
    Sealed,
    SecretBox,
    add_key,
    check_name,
    check_value,
    retire_keys,
    rotation_lock,
)
from atrium.settings import Settings
from atrium.store.errors import AlreadyExists
from atrium.store.keys import KeyQueries
from atrium.store.servers import Clock, utc_now
from atrium.store.tables import secrets
from atrium.store.transaction import reading, writing

# No OAuth ``sub`` Atrium issues starts with '@' (user ids are hex, operators ``operator:``).
PROJECT_OWNER = "@project"
LOCK = "secrets"
_METADATA: tuple[Column[Any], ...] = (
    secrets.c.owner,
    secrets.c.name,
    secrets.c.version,
    secrets.c.key_id,
    secrets.c.created_at,
    secrets.c.created_by,
    secrets.c.updated_at,
    secrets.c.updated_by,
)


@dataclass(frozen=True)
class SecretRecord:
    """A stored secret without its value; ``key_id`` names the key its value is sealed under."""

    owner: str
    name: str
    version: int
    key_id: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True)
class KeyRotation:
    """What ``rotate_secret_key`` did: the new key, how many values it re-sealed, the keys
    it dropped from the ring."""

    key_id: str
    reencrypted: int
    retired: tuple[str, ...]


class SecretQueries:
    """Add, change, read and delete secrets; every failure of the database is a
    ``StoreError``, a name or value that cannot be stored a ``ValueError``."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    async def create(
        self, owner: str, name: str, value: str, *, box: SecretBox, by: str
    ) -> SecretRecord:
        """Store a new secret at version 1; ``AlreadyExists`` if ``owner`` has ``name``."""
        _check(owner, name, value, by)
        now = self._clock()
        async with writing(self._engine, f"add secret {name}", lock=LOCK) as conn:
            if await _metadata(conn, owner, name) is not None:
                raise AlreadyExists(self._engine.url, "secret", name)
            if not box.written and await _none_stored(conn):
                box.start()
            sealed = box.seal(value, owner=owner, name=name)
            record = SecretRecord(owner, name, 1, sealed.key_id, now, by, now, by)
            await conn.execute(insert(secrets).values(**_columns(record, sealed)))
        return record

    async def replace(
        self, owner: str, name: str, value: str, *, box: SecretBox, by: str
    ) -> SecretRecord | None:
        """Give ``owner``'s secret ``name`` a new value and the next version; None if there
        is no such secret."""
        _check(owner, name, value, by)
        now = self._clock()
        async with writing(self._engine, f"change secret {name}", lock=LOCK) as conn:
            found = await _metadata(conn, owner, name)
            if found is None:
                return None
            sealed = box.seal(value, owner=owner, name=name)
            record = replace(
                found,
                version=found.version + 1,
                key_id=sealed.key_id,
                updated_at=now,
                updated_by=by,
            )
            await conn.execute(_row(owner, name).values(**_columns(record, sealed)))
        return record

    async def delete(self, owner: str, name: str) -> bool:
        """Delete ``owner``'s secret ``name``; False if there was none."""
        statement = delete(secrets).where(secrets.c.owner == owner, secrets.c.name == name)
        async with writing(self._engine, f"delete secret {name}") as conn:
            return (await conn.execute(statement)).rowcount == 1

    async def get(self, owner: str, name: str) -> SecretRecord | None:
        """The metadata of ``owner``'s secret ``name``, or None."""
        async with reading(self._engine, f"read secret {name}") as conn:
            return await _metadata(conn, owner, name)

    async def list(
        self, owner: str, names: Iterable[str] | None = None
    ) -> builtins.list[SecretRecord]:
        """The metadata of ``owner``'s secrets by name, only those in ``names`` if given."""
        query = select(*_METADATA).where(secrets.c.owner == owner).order_by(secrets.c.name)
        if names is not None:
            query = query.where(secrets.c.name.in_(sorted(set(names))))
        async with reading(self._engine, "list secrets") as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def reveal(self, owner: str, names: Iterable[str], *, box: SecretBox) -> dict[str, str]:
        """The values of those of ``names`` that ``owner`` has, by name."""
        query = select(secrets).where(
            secrets.c.owner == owner, secrets.c.name.in_(sorted(set(names)))
        )
        async with reading(self._engine, "read secret values") as conn:
            rows = (await conn.execute(query)).all()
        return {row.name: box.open(_sealed(row), owner=owner, name=row.name) for row in rows}

    async def reencrypt(self, box: SecretBox) -> int:
        """Seal every value not under ``box``'s current key under it (any key ``box`` holds
        opens the old one); how many were. Version and times stay: the values are the same."""
        async with writing(self._engine, "re-encrypt secrets", lock=LOCK) as conn:
            box.refresh()
            query = select(secrets).where(secrets.c.key_id != box.current)
            rows = (await conn.execute(query)).all()
            for row in rows:
                value = box.open(_sealed(row), owner=row.owner, name=row.name)
                sealed = box.seal(value, owner=row.owner, name=row.name)
                await conn.execute(
                    _row(row.owner, row.name).values(
                        key_id=sealed.key_id, nonce=sealed.nonce, ciphertext=sealed.ciphertext
                    )
                )
        return len(rows)

    async def key_ids(self) -> set[str]:
        """The ids of the keys some stored value is sealed under."""
        query = select(secrets.c.key_id).distinct()
        async with reading(self._engine, "list the keys of secrets") as conn:
            return {str(kid) for kid in (await conn.execute(query)).scalars()}


async def rotate_secret_key(queries: SecretQueries, settings: Settings) -> KeyRotation:
    """A new current key for the project's ring, every value re-sealed under it, then the
    keys no value uses dropped. Until the re-encryption has committed, the old keys stay in
    the ring, so a failure half way leaves every value readable (run it again). The signing
    keys in the store (``atrium.store.keys``) are sealed under the same ring: re-sealed too."""
    keys = KeyQueries(queries._engine)
    box = SecretBox.load(settings)
    if not box.written and not await _in_use(queries, keys):
        box.start()  # nothing is stored: no ring yet is no ring lost
    with rotation_lock(settings):
        box = add_key(settings)
        count = await queries.reencrypt(box)
        await keys.reencrypt(box)
        retired = retire_keys(settings, await _in_use(queries, keys))
    return KeyRotation(box.current, count, tuple(retired))


async def _in_use(queries: SecretQueries, keys: KeyQueries) -> set[str]:
    return await queries.key_ids() | await keys.key_ids()


def _check(owner: str, name: str, value: str, by: str) -> None:
    check_name(name)
    check_value(value)
    for what, text in (("owner", owner), ("by", by)):
        # SQLite stores an overlong string whole where PostgreSQL refuses it: refused on both.
        if not text or len(text) > 255:
            raise ValueError(f"{what} must be 1 to 255 characters, not {len(text)}")


async def _none_stored(conn: AsyncConnection) -> bool:
    return (await conn.execute(select(secrets.c.name).limit(1))).first() is None


def _row(owner: str, name: str) -> Any:
    return update(secrets).where(secrets.c.owner == owner, secrets.c.name == name)


async def _metadata(conn: AsyncConnection, owner: str, name: str) -> SecretRecord | None:
    query = select(*_METADATA).where(secrets.c.owner == owner, secrets.c.name == name)
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)


def _columns(record: SecretRecord, sealed: Sealed) -> dict[str, Any]:
    values = {column.name: getattr(record, column.name) for column in _METADATA}
    return values | {"nonce": sealed.nonce, "ciphertext": sealed.ciphertext}


def _record(row: Row[Any]) -> SecretRecord:
    return SecretRecord(**row._mapping)


def _sealed(row: Row[Any]) -> Sealed:
    return Sealed(row.key_id, bytes(row.nonce), bytes(row.ciphertext))
