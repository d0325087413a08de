"""SQLite specifics: a private database file, WAL, foreign keys, and our own ``BEGIN``.

The database is meant to hold credentials (users, clients, tokens), so its folder is 0700
and the file 0600, created before SQLite opens it (SQLite would create it with the umask's
mode). SQLite gives the ``-wal`` and ``-shm`` files the database file's mode.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.store.rollup import SQLITE_LATENCY_BIN, latency_bin
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

    The file is built aside and linked into place already in WAL mode: switching the journal
    mode needs an exclusive lock, and fails at once with SQLITE_BUSY (no busy timeout) when
    processes opening a new database together all try it. ``os.link`` never replaces a file
    another process linked first. An existing folder or file keeps its mode: it is the user's.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        return
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".new")
    os.close(fd)
    try:
        with closing(sqlite3.connect(temporary)) as database:
            database.execute("PRAGMA journal_mode=WAL")
        with suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


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
        # WAL lets readers go on while one process writes; a file made by prepare_file is WAL
        # already, and asking again would take the exclusive lock for nothing.
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0] != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        # Off by default in SQLite, per connection.
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
    # The audit rollup's latency bins, computed in SQL as its writer computes them in Python.
    dbapi_connection.create_function(SQLITE_LATENCY_BIN, 1, latency_bin, deterministic=True)


def _on_begin(conn: Connection) -> None:
    writing = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")
