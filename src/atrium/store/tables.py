"""The database schema as SQLAlchemy Core tables; Alembic migrations must build exactly this.

``tests/store/test_migrations.py`` compares the migrated database with ``metadata``, so a change
here needs a new revision in ``migrations/versions/``. Constraint names follow one convention
because Alembic can only drop or alter a constraint it can name (Alembic docs, "The Importance
of Naming Constraints").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime`` on every database.

    PostgreSQL stores ``timestamptz``; SQLite has no such type and hands back naive values, so
    values are written as UTC and read back with UTC attached. A naive value is refused rather
    than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store only timezone-aware values")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


mcp_servers = Table(
    "mcp_servers",
    metadata,
    Column("name", String(64), primary_key=True),
    # Stored whole and read whole: plain JSON (not JSONB) keeps key order alike on both databases.
    Column("config", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("transport", String(16), nullable=False),
    Column("port", Integer, nullable=True),
    Column("source", String, nullable=True),
    Column("disabled_reason", String, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("port IS NULL OR port BETWEEN 1 AND 65535", name="port_range"),
)


# What an MCP server produced and kept: each run of the atrium server's CLI tool, for now.
artifacts = Table(
    "artifacts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("server", String(64), nullable=False),
    Column("tool", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("title", String, nullable=False),
    Column("content", JSON, nullable=False),
    # Indexed: list_recent reads the newest first.
    Column("created_at", UTCDateTime, nullable=False, index=True),
)


# One row per JSON-RPC request through the gateway (and per refused HTTP request); written in
# batches by the gateway's audit writer, read by `atrium infra logs`.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # One HTTP request (X-Request-Id) may carry a batch of JSON-RPC requests: not unique.
    Column("request_id", String(32), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("server", String(64), nullable=False),
    Column("method", String(128), nullable=True),
    Column("tool", String(128), nullable=True),
    Column("arguments", JSON, nullable=True),
    Column("caller", String(255), nullable=False),
    Column("client_id", String(255), nullable=True),
    Column("origin", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status", Integer, nullable=False),
    Column("error", String, nullable=True),
    Column("duration_ms", Float, nullable=False),
)
