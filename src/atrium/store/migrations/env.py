"""Alembic's environment script: run the migrations on the connection Atrium hands over.

Only ``atrium.store.migrate`` runs migrations; it passes a connection already inside a
transaction that holds the migration lock, so Alembic joins that transaction rather than
opening its own. There is no offline (SQL script) mode.

A new revision is written by hand in ``versions/`` (copy the newest one; use
``op.batch_alter_table`` to alter SQLite tables); ``tests/store/test_migrations.py`` fails
until the migrated schema equals ``atrium.store.tables.metadata``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from atrium.store.tables import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("Atrium's migrations run through atrium.store.migrate, not the alembic CLI")
run_migrations(_connection)
