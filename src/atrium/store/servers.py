"""Typed queries on ``mcp_servers``: the registry's stored copy of each server's YAML."""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from atrium.store.changes import announce
from atrium.store.tables import mcp_servers
from atrium.store.transaction import reading, writing

Clock = Callable[[], datetime]

# Named for the table it guards: writers of other tables do not wait on it.
_LOCK = "mcp_servers"

_UPDATE_BY_NAME = update(mcp_servers).where(mcp_servers.c.name == bindparam("match"))


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ServerRecord:
    """One stored server. ``config`` is its validated YAML as plain JSON.

    ``created_at`` and ``updated_at`` are set by the store; ``save`` ignores the values given.
    """

    name: str
    config: dict[str, Any]
    enabled: bool
    transport: str
    port: int | None
    source: str | None
    disabled_reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ServerQueries:
    """Read and write ``ServerRecord``s; every failure of the database is a ``StoreError``."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    async def list(self) -> builtins.list[ServerRecord]:
        """Every stored server, ordered by name."""
        async with reading(self._engine, "list servers") as conn:
            result = await conn.execute(select(mcp_servers).order_by(mcp_servers.c.name))
            return [_record(row) for row in result]

    async def fingerprint(self) -> tuple[int, datetime | None]:
        """Row count and newest ``updated_at``: changes whenever any server is saved or deleted."""
        query = select(func.count(), func.max(mcp_servers.c.updated_at))
        async with reading(self._engine, "read the servers' fingerprint") as conn:
            count, newest = (await conn.execute(query)).one()
        return int(count), newest

    async def get(self, name: str) -> ServerRecord | None:
        """The server called ``name``, or None."""
        query = select(mcp_servers).where(mcp_servers.c.name == name)
        async with reading(self._engine, f"read server '{name}'") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def save(self, records: Sequence[ServerRecord]) -> None:
        """Insert or update every record in one transaction: all are saved, or none.

        An update keeps ``created_at``; every saved record gets ``updated_at`` = now. Written
        as select-then-insert/update under the table's write lock rather than a dialect's
        upsert, so the same code runs on SQLite and PostgreSQL.
        """
        repeated = sorted(name for name, n in Counter(r.name for r in records).items() if n > 1)
        if repeated:
            raise ValueError(f"server names given more than once: {', '.join(repeated)}")
        if not records:
            return
        now = self._clock()
        async with writing(self._engine, "save servers", lock=_LOCK) as conn:
            await _upsert(conn, records, now)
            await announce(conn, "registry")

    async def delete(self, names: Sequence[str]) -> int:
        """Delete the servers called ``names``; return how many existed."""
        if not names:
            return 0
        statement = delete(mcp_servers).where(mcp_servers.c.name.in_(names))
        async with writing(self._engine, "delete servers", lock=_LOCK) as conn:
            result = await conn.execute(statement)
            await announce(conn, "registry")
        return result.rowcount


async def _upsert(conn: AsyncConnection, records: Sequence[ServerRecord], now: datetime) -> None:
    names = [record.name for record in records]
    stored = set(
        await conn.scalars(select(mcp_servers.c.name).where(mcp_servers.c.name.in_(names)))
    )
    new = [r for r in records if r.name not in stored]
    changed = [r for r in records if r.name in stored]
    if new:
        rows = [_values(r) | {"created_at": now, "updated_at": now} for r in new]
        await conn.execute(insert(mcp_servers), rows)
    if changed:
        await conn.execute(_UPDATE_BY_NAME, [_changes(r) | {"updated_at": now} for r in changed])


def _values(record: ServerRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "config": record.config,
        "enabled": record.enabled,
        "transport": record.transport,
        "port": record.port,
        "source": record.source,
        "disabled_reason": record.disabled_reason,
    }


def _changes(record: ServerRecord) -> dict[str, Any]:
    # Parameters for _UPDATE_BY_NAME: "match" picks the row, the other keys are the SET clause.
    values = _values(record)
    values["match"] = values.pop("name")
    return values


def _record(row: Row[Any]) -> ServerRecord:
    return ServerRecord(**row._mapping)
