"""The connections every query runs on, with driver errors translated to ``StoreError``.

- ``reading``: a connection for SELECTs (no transaction is committed).
- ``writing``: a transaction that commits when the block ends without an error.
- ``writing(..., lock=...)``: a write that first reads (is this name stored yet?) must hold its
  lock from the read on. SQLite: ``BEGIN IMMEDIATE`` takes the write lock at once; a deferred
  ``BEGIN`` would fail with ``SQLITE_BUSY`` when another writer committed in between (SQLite
  docs, "Transaction"). PostgreSQL: a transaction-scoped advisory lock named for what is
  written, released at commit or rollback.

``action`` says what the block does ("list servers"): a failure is reported as
"cannot <action>" (``atrium.store.errors``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from atrium.store import postgres
from atrium.store.errors import translated

# Execution option read by the SQLite ``begin`` hook (atrium.store.sqlite) to begin IMMEDIATE.
WRITE_OPTION = "atrium_write"


@asynccontextmanager
async def reading(engine: AsyncEngine, action: str) -> AsyncIterator[AsyncConnection]:
    """A connection to read with; driver errors inside the block become ``StoreError``."""
    with translated(engine.url, action):
        async with engine.connect() as conn:
            yield conn


@asynccontextmanager
async def writing(
    engine: AsyncEngine, action: str, *, lock: str | None = None
) -> AsyncIterator[AsyncConnection]:
    """A transaction that commits on success, holding the write lock ``lock`` if given;
    driver errors inside the block become ``StoreError``."""
    with translated(engine.url, action):
        if lock is None:
            async with engine.begin() as conn:
                yield conn
        else:
            async with write_transaction(engine, lock) as conn:
                yield conn


@asynccontextmanager
async def write_transaction(engine: AsyncEngine, lock: str) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that holds the write lock ``lock``; commits on success.

    Errors are not translated: the caller (``writing``, the migrations) does that.
    """
    async with engine.connect() as conn:
        await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            if conn.dialect.name == "postgresql":
                await postgres.advisory_xact_lock(conn, lock)
            yield conn
