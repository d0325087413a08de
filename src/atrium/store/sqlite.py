"""SQLite specifics: a private database file, WAL, foreign keys, and our own ``BEGIN``.

The file holds users, clients and tokens, so its folder is 0700 and the file 0600, created
before SQLite opens it (SQLite would create it with the umask's mode). SQLite creates the
``-wal`` and ``-shm`` files with the database file's mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.store.transaction import WRITE_OPTION


def database_path(url: URL) -> Path | None:
    """The file an SQLite URL names, or None for an in-memory or URI database."""
    database = url.database
    if (
        not database
        or database == ":memory:"
        or url.query.get("uri")
        or database.startswith("file:")
    ):
        return None
    return Path(database)


def prepare_file(path: Path) -> None:
    """Create the folder (0700) and an empty database file (0600) unless they exist.

    An existing folder or file keeps its mode: it belongs to the user.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def install_hooks(engine: AsyncEngine) -> None:
    """Set the pragmas on every new connection and let SQLAlchemy emit BEGIN.

    The sqlite3 driver's legacy transaction control never begins a transaction before SELECT
    or DDL, so neither reads nor migrations would be transactional; SQLAlchemy's documented
    remedy ("Transactions with SQLite and the sqlite3 driver") is to switch the driver's own
    BEGIN off and emit it from the ``begin`` event.
    """
    event.listen(engine.sync_engine, "connect", _on_connect)
    event.listen(engine.sync_engine, "begin", _on_begin)


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers go on while one process writes; foreign keys are off by default.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _on_begin(conn: Connection) -> None:
    writing = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")
