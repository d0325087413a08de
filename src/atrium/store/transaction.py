"""Write transactions that cannot race another process doing the same write.

A write that first reads (is this name stored yet?) must hold its lock from the read on.
SQLite: ``BEGIN IMMEDIATE`` takes the write lock at once; a deferred ``BEGIN`` would fail with
``SQLITE_BUSY`` when another writer committed in between (SQLite docs, "Transaction"). PostgreSQL:
a transaction-scoped advisory lock named for what is written, released at commit or rollback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from atrium.store import postgres

# Execution option read by the SQLite ``begin`` hook (atrium.store.sqlite) to begin IMMEDIATE.
WRITE_OPTION = "atrium_write"


@asynccontextmanager
async def write_transaction(engine: AsyncEngine, lock: str) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that holds the write lock ``lock``; commits on success."""
    async with engine.connect() as conn:
        await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            if conn.dialect.name == "postgresql":
                await postgres.advisory_xact_lock(conn, lock)
            yield conn
