"""PostgreSQL specifics: the configured schema and advisory locks.

``Settings.database_schema`` puts Atrium's tables in their own schema, so one database can hold
several installations (or test runs). The schema is the *only* entry of the connection's
``search_path``: with ``public`` after it, a table missing from the schema would silently
resolve to one of the same name in ``public`` (PostgreSQL docs, "The Schema Search Path").
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateSchema


def connect_args(schema: str | None) -> dict[str, Any]:
    """asyncpg arguments that make ``schema`` the search path of every connection."""
    if schema is None:
        return {}
    return {"server_settings": {"search_path": quote_identifier(schema)}}


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier, so any spelling means exactly that schema."""
    return '"' + name.replace('"', '""') + '"'


async def ensure_schema(conn: AsyncConnection, schema: str) -> None:
    """Create ``schema`` unless it exists.

    Looked up first: ``CREATE SCHEMA IF NOT EXISTS`` still demands the CREATE privilege on the
    database, which a schema provisioned by an administrator should not need.
    """
    found = await conn.scalar(
        text("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :name"), {"name": schema}
    )
    if found is None:
        await conn.execute(CreateSchema(schema))


async def advisory_xact_lock(conn: AsyncConnection, name: str) -> None:
    """Hold the advisory lock ``name`` until the current transaction ends.

    Advisory locks are per database, not per schema: installations sharing a database
    serialize these (rare, short) writes, which is harmless.
    """
    await conn.execute(select(func.pg_advisory_xact_lock(lock_key(name))))


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (``hash()`` changes between processes)."""
    digest = hashlib.blake2b(f"atrium:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
