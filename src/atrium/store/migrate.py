"""Bring the database to the newest schema with Alembic, at every start.

Alembic is configured here rather than by an ``alembic.ini``: the migrations ship inside the
package, and ``migrations/env.py`` runs them on the connection handed over in
``config.attributes["connection"]`` (Alembic cookbook, "Sharing a Connection across one or more
programmatic migration commands"). The upgrade runs in one write transaction, so two processes
starting together migrate one after the other (see ``atrium.store.transaction``).

Alembic's ``CommandError`` (a revision it does not know: a database from a newer Atrium) becomes
a ``StoreError`` here, where Alembic runs, so that nothing else loads Alembic to catch it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.store import postgres
from atrium.store.errors import StoreError, reason
from atrium.store.transaction import write_transaction

if TYPE_CHECKING:  # Alembic loads only when there is something to migrate
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATION_LOCK = "migrations"
# The newest revision: a database already there is opened without loading Alembic (every
# server process and CLI command opens the store). tests/store/test_migrations.py checks it.
HEAD_REVISION = "0013"
# What a StoreError from opening the store says could not be done (``Store.open``).
ACTION = "open and migrate the database"


def alembic_config(connection: Connection) -> Config:
    """An Alembic ``Config`` for the packaged migrations, bound to ``connection``."""
    from alembic.config import Config

    config = Config()
    # Config options go through ConfigParser interpolation, where "%" is special.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, schema: str | None) -> None:
    """Create ``schema`` if it is missing (PostgreSQL), then upgrade to the head revision
    (``StoreError`` when Alembic refuses, as for a revision it does not know)."""
    if await _at_head(engine, schema):
        return
    from alembic.util import CommandError

    try:
        async with write_transaction(engine, MIGRATION_LOCK) as conn:
            if schema is not None:
                await postgres.ensure_schema(conn, schema)
            await conn.run_sync(_upgrade_to_head)
    except CommandError as exc:
        raise StoreError(engine.url, ACTION, reason(exc)) from exc


async def _at_head(engine: AsyncEngine, schema: str | None) -> bool:
    """Whether the database is at ``HEAD_REVISION`` already (any doubt: no, migrate)."""
    table = f'"{schema}".alembic_version' if schema is not None else "alembic_version"
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(text(f"SELECT version_num FROM {table}"))).all()
    except SQLAlchemyError:
        return False
    return [row[0] for row in versions] == [HEAD_REVISION]


def _upgrade_to_head(connection: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
