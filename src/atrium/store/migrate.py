"""Bring the database to the newest schema with Alembic, at every start.

Alembic is configured here rather than by an ``alembic.ini``: the migrations ship inside the
package, and ``migrations/env.py`` runs them on the connection handed over in
``config.attributes["connection"]`` (Alembic cookbook, "Sharing a Connection across one or more
programmatic migration commands"). The upgrade runs in one write transaction, so two processes
starting together migrate one after the other (see ``atrium.store.transaction``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.store import postgres
from atrium.store.transaction import write_transaction

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATION_LOCK = "migrations"


def alembic_config(connection: Connection) -> Config:
    """An Alembic ``Config`` for the packaged migrations, bound to ``connection``."""
    config = Config()
    # Config options go through ConfigParser interpolation, where "%" is special.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, schema: str | None) -> None:
    """Create ``schema`` if it is missing (PostgreSQL), then upgrade to the head revision."""
    async with write_transaction(engine, MIGRATION_LOCK) as conn:
        if schema is not None:
            await postgres.ensure_schema(conn, schema)
        await conn.run_sync(_upgrade_to_head)


def _upgrade_to_head(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
