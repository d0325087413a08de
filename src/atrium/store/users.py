"""Typed queries on ``users``: the people who sign in at the authorization endpoint.

A user's ``id`` is the ``sub`` of the tokens issued to them (OpenID Connect Core §2: never
reassigned), so a rename or a new password keeps it. ``password_hash`` is the argon2 hash the
caller made; this layer stores and returns it, and never sees a password. Usernames are
compared exactly: the caller normalises them.

``session_epoch`` is the generation of the user's sign-in sessions: a session cookie is good only
while it names the current one. A new role, password or disabling moves it (so does signing out,
``end_sessions``): a stolen or forgotten session ends with the change that should end it.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.store.errors import AlreadyExists
from atrium.store.servers import Clock, utc_now
from atrium.store.tables import users
from atrium.store.transaction import reading, writing

_LOCK = "users"


@dataclass(frozen=True, kw_only=True)
class UserRecord:
    """One user; ``created_at`` and ``updated_at`` left None are set to the store's now."""

    id: str
    username: str
    password_hash: str
    role: str
    disabled: bool = False
    session_epoch: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class UserQueries:
    """Read and write ``UserRecord``s; every failure of the database is a ``StoreError``."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    async def add(self, record: UserRecord) -> None:
        """Store a new user; ``AlreadyExists`` if its username (or id) is taken."""
        created = record.created_at or self._clock()
        row = _values(record) | {"created_at": created, "updated_at": record.updated_at or created}
        taken = select(users.c.username).where(
            or_(users.c.username == record.username, users.c.id == record.id)
        )
        async with writing(self._engine, f"add user '{record.username}'", lock=_LOCK) as conn:
            if (await conn.execute(taken)).first() is not None:
                raise AlreadyExists(self._engine.url, "user", record.username)
            await conn.execute(insert(users).values(**row))

    async def get(self, user_id: str) -> UserRecord | None:
        """The user whose id (token ``sub``) is ``user_id``, or None."""
        return await self._one(users.c.id == user_id, f"read user {user_id}")

    async def by_username(self, username: str) -> UserRecord | None:
        """The user called ``username``, or None."""
        return await self._one(users.c.username == username, f"read user '{username}'")

    async def list(self) -> builtins.list[UserRecord]:
        """Every user, disabled ones too, ordered by username."""
        query = select(users).order_by(users.c.username)
        async with reading(self._engine, "list users") as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def set_role(self, username: str, role: str) -> bool:
        """Give the user ``role``; False if there is no such user."""
        return await self._change(username, "set the role of", role=role)

    async def set_disabled(self, username: str, disabled: bool) -> bool:
        """Disable (or enable again) the user; False if there is no such user."""
        return await self._change(username, "disable or enable", disabled=disabled)

    async def set_password(self, username: str, password_hash: str) -> bool:
        """Replace the user's password hash; False if there is no such user."""
        return await self._change(username, "set the password of", password_hash=password_hash)

    async def end_sessions(self, user_id: str) -> bool:
        """End every sign-in session of the user ``user_id``; False if there is no such user."""
        statement = (
            update(users)
            .where(users.c.id == user_id)
            .values(session_epoch=users.c.session_epoch + 1)
        )
        async with writing(self._engine, f"end the sessions of user {user_id}") as conn:
            result = await conn.execute(statement)
        return result.rowcount == 1

    async def delete(self, username: str) -> UserRecord | None:
        """Delete the user called ``username``; the deleted record, or None if there was none."""
        async with writing(self._engine, f"delete user '{username}'", lock=_LOCK) as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).first()
            if row is not None:
                await conn.execute(delete(users).where(users.c.username == username))
        return None if row is None else _record(row)

    async def count(self) -> int:
        """How many users are stored, disabled ones included."""
        async with reading(self._engine, "count users") as conn:
            return int(await conn.scalar(select(func.count()).select_from(users)) or 0)

    async def _one(self, condition: ColumnElement[bool], action: str) -> UserRecord | None:
        async with reading(self._engine, action) as conn:
            row = (await conn.execute(select(users).where(condition))).first()
        return None if row is None else _record(row)

    async def _change(self, username: str, action: str, **values: Any) -> bool:
        # Every change here alters what the user may do: their sessions end with it.
        statement = (
            update(users)
            .where(users.c.username == username)
            .values(**values, session_epoch=users.c.session_epoch + 1, updated_at=self._clock())
        )
        async with writing(self._engine, f"{action} user '{username}'") as conn:
            result = await conn.execute(statement)
        return result.rowcount == 1


def _values(record: UserRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "username": record.username,
        "password_hash": record.password_hash,
        "role": record.role,
        "disabled": record.disabled,
        "session_epoch": record.session_epoch,
    }


def _record(row: Row[Any]) -> UserRecord:
    return UserRecord(**row._mapping)
