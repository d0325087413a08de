"""Typed queries on ``oauth_clients``: who may ask the authorization server for tokens.

Three kinds: ``dynamic`` clients registered themselves (RFC 7591, open to anyone, so they are
counted and, if never used, forgotten); ``confidential`` ones were configured with a secret
(stored as the hash the caller made, RFC 6749 §2.3.1); ``metadata`` ones are known by the URL
of their Client ID Metadata Document. A revoked client stays stored, so its id is never reused.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.store.errors import AlreadyExists
from atrium.store.servers import Clock, utc_now
from atrium.store.tables import oauth_clients
from atrium.store.transaction import reading, writing

ClientKind = Literal["dynamic", "confidential", "metadata"]

_LOCK = "oauth_clients"


@dataclass(frozen=True, kw_only=True)
class ClientRecord:
    """One OAuth client. ``metadata`` is its registered metadata as answered to it.

    ``scope`` (space-separated) bounds what it may ever be granted; None sets no such bound.
    ``created_at`` left None is set to the store's now; ``last_used_at`` and ``revoked_at``
    start empty whatever is given, and change through ``touch`` and ``revoke``.
    """

    client_id: str
    kind: ClientKind
    redirect_uris: list[str]
    grant_types: list[str]
    application_type: str
    token_endpoint_auth_method: str
    metadata: dict[str, Any]
    name: str | None = None
    secret_hash: str | None = None
    scope: str | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    # The secret before the last rotation, and until when it still authenticates.
    previous_secret_hash: str | None = None
    previous_secret_expires_at: datetime | None = None


class ClientQueries:
    """Read and write ``ClientRecord``s; every failure of the database is a ``StoreError``."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    async def add(self, record: ClientRecord) -> None:
        """Store a new client; ``AlreadyExists`` if its ``client_id`` is taken."""
        row = _values(record) | {"created_at": record.created_at or self._clock()}
        exists = select(oauth_clients.c.client_id).where(
            oauth_clients.c.client_id == record.client_id
        )
        async with writing(self._engine, f"add client '{record.client_id}'", lock=_LOCK) as conn:
            if (await conn.execute(exists)).first() is not None:
                raise AlreadyExists(self._engine.url, "client", record.client_id)
            await conn.execute(insert(oauth_clients).values(**row))

    async def get(self, client_id: str) -> ClientRecord | None:
        """The client ``client_id``, revoked or not, or None."""
        query = select(oauth_clients).where(oauth_clients.c.client_id == client_id)
        async with reading(self._engine, f"read client '{client_id}'") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def list(self, kind: ClientKind | None = None) -> builtins.list[ClientRecord]:
        """Every client (of ``kind``, if given), revoked ones too, oldest first."""
        query = select(oauth_clients).order_by(
            oauth_clients.c.created_at, oauth_clients.c.client_id
        )
        if kind is not None:
            query = query.where(oauth_clients.c.kind == kind)
        async with reading(self._engine, "list clients") as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def revoke(self, client_id: str) -> bool:
        """Mark the client revoked (a second revoke keeps the first time); False if unknown."""
        statement = (
            update(oauth_clients)
            .where(oauth_clients.c.client_id == client_id, oauth_clients.c.revoked_at.is_(None))
            .values(revoked_at=self._clock())
        )
        exists = select(oauth_clients.c.client_id).where(oauth_clients.c.client_id == client_id)
        async with writing(self._engine, f"revoke client '{client_id}'", lock=_LOCK) as conn:
            if (await conn.execute(statement)).rowcount == 1:
                return True
            return (await conn.execute(exists)).first() is not None

    async def rotate_secret(
        self, client_id: str, secret_hash: str, overlap: timedelta
    ) -> ClientRecord | None:
        """Give a live client that has a secret a new one (its hash); the current one becomes
        the previous secret until ``overlap`` from now (a zero overlap ends it at once, and a
        second rotation ends the one before). The client as it is now, or None if no live
        client with a secret is ``client_id``."""
        keeps = overlap > timedelta(0)
        statement = (
            update(oauth_clients)
            .where(
                oauth_clients.c.client_id == client_id,
                oauth_clients.c.secret_hash.is_not(None),
                oauth_clients.c.revoked_at.is_(None),
            )
            .values(
                secret_hash=secret_hash,
                previous_secret_hash=oauth_clients.c.secret_hash if keeps else None,
                previous_secret_expires_at=self._clock() + overlap if keeps else None,
            )
        )
        query = select(oauth_clients).where(oauth_clients.c.client_id == client_id)
        async with writing(self._engine, f"rotate the secret of client '{client_id}'") as conn:
            if (await conn.execute(statement)).rowcount != 1:
                return None
            row = (await conn.execute(query)).one()
        return _record(row)

    async def touch(self, client_id: str) -> None:
        """Record that the client was issued a token now (an unknown id changes nothing)."""
        statement = (
            update(oauth_clients)
            .where(oauth_clients.c.client_id == client_id)
            .values(last_used_at=self._clock())
        )
        async with writing(self._engine, f"touch client '{client_id}'") as conn:
            await conn.execute(statement)

    async def count(self, kind: ClientKind) -> int:
        """How many clients of ``kind`` are not revoked: the cap on dynamic registration."""
        query = select(func.count()).where(
            oauth_clients.c.kind == kind, oauth_clients.c.revoked_at.is_(None)
        )
        async with reading(self._engine, f"count {kind} clients") as conn:
            return int(await conn.scalar(query) or 0)

    async def delete_unused(self, kind: ClientKind, older_than: datetime) -> int:
        """Delete the clients of ``kind`` created before ``older_than`` and never used.

        Anyone may register (RFC 7591 §3); registrations that never led to a token would
        otherwise pile up against the cap. Returns how many were deleted.
        """
        statement = delete(oauth_clients).where(
            oauth_clients.c.kind == kind,
            oauth_clients.c.last_used_at.is_(None),
            oauth_clients.c.created_at < older_than,
        )
        async with writing(self._engine, f"delete unused {kind} clients", lock=_LOCK) as conn:
            result = await conn.execute(statement)
        return result.rowcount

    async def delete_oldest_unused(self, kind: ClientKind, count: int) -> int:
        """Delete up to ``count`` clients of ``kind`` that were never used, oldest first.

        Makes room under the cap on registration: whoever floods it evicts its own unused
        registrations, never a client that obtained a token. Returns how many were deleted.
        """
        oldest = (
            select(oauth_clients.c.client_id)
            .where(
                oauth_clients.c.kind == kind,
                oauth_clients.c.last_used_at.is_(None),
                oauth_clients.c.revoked_at.is_(None),
            )
            .order_by(oauth_clients.c.created_at, oauth_clients.c.client_id)
            .limit(count)
        )
        async with writing(
            self._engine, f"delete the oldest unused {kind} clients", lock=_LOCK
        ) as conn:
            victims = list(await conn.scalars(oldest))
            if not victims:
                return 0
            statement = delete(oauth_clients).where(oauth_clients.c.client_id.in_(victims))
            result = await conn.execute(statement)
        return result.rowcount


def _values(record: ClientRecord) -> dict[str, Any]:
    return {
        "client_id": record.client_id,
        "kind": record.kind,
        "name": record.name,
        "secret_hash": record.secret_hash,
        "redirect_uris": record.redirect_uris,
        "grant_types": record.grant_types,
        "application_type": record.application_type,
        "token_endpoint_auth_method": record.token_endpoint_auth_method,
        "scope": record.scope,
        "metadata": record.metadata,
    }


def _record(row: Row[Any]) -> ClientRecord:
    return ClientRecord(**row._mapping)
