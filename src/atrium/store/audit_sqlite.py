"""Audit batches on SQLite in one hop to a thread of their own (issue 17).

Through SQLAlchemy on aiosqlite a batch costs about eleven round trips between the event loop
and aiosqlite's thread (``BEGIN``, the insert, the rollup, ``COMMIT``, each cursor's fetch and
close), each a queue put, a thread wake-up and a self-pipe write: on a 2-core machine that was
~130 µs of CPU per record at 25 records a batch, as much as the rest of the gateway's work on a
call. Here the whole batch is one function run in one thread on a ``sqlite3`` connection of its
own: ~45 µs a record (``bench/audit_write.py``).

The statements and the time format are SQLAlchemy's own (compiled from the tables and the
column types of ``atrium.store.tables``), so what is stored is what ``AuditQueries`` stored
through SQLAlchemy; only the arguments' JSON is written by orjson (``storable`` with
``json_text``: the same JSON, without spaces and with UTF-8 unescaped). Errors are translated
as ``atrium.store.errors`` does: the database refusing the rows is ``RecordRefused``, anything
else a ``StoreError``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Dialect

from atrium.store.audit_rows import FIELDS, RecordRefused
from atrium.store.errors import StoreError
from atrium.store.rollup import KEY, SUMS, upsert
from atrium.store.tables import audit_events

BUSY_TIMEOUT_S = 5.0  # as aiosqlite's connections (sqlite3's default)
# The rows, not the database: a constraint, or a value sqlite3 cannot bind (an int past 64 bits).
_REFUSALS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, OverflowError)


@dataclass(frozen=True)
class _Statements:
    """The insert and the rollup's upsert as SQLAlchemy compiles them for the dialect, with
    the order of their parameters, and its conversion of a time."""

    insert: str
    insert_order: list[str]
    upsert: str
    upsert_order: list[str]
    at: Callable[[Any], Any]

    @cached_property
    def values(self) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
        """A row's values in the insert's order, in one call."""
        return itemgetter(*self.insert_order)

    @cached_property
    def at_index(self) -> int:
        return self.insert_order.index("at")

    @classmethod
    def compiled(cls, dialect: Dialect) -> _Statements:
        events = insert(audit_events).compile(dialect=dialect, column_keys=FIELDS)
        usage = upsert(dialect.name).compile(dialect=dialect, column_keys=[*KEY, *SUMS])
        at_type = audit_events.c.at.type.dialect_impl(dialect)
        at: Callable[[Any], Any] | None = at_type.bind_processor(dialect)
        return cls(
            str(events),
            list(events.positiontup or ()),
            str(usage),
            list(usage.positiontup or ()),
            at or (lambda value: value),
        )


class SqliteAuditWriter:
    """Writes ``storable`` rows and their rollup to the SQLite file at ``path``. Nothing is
    compiled, no thread started, no connection opened before the first batch: every ``Store``
    has one, and most (a CLI command's, a server's) never write an audit record."""

    def __init__(self, path: Path, dialect: Dialect, url: str) -> None:
        self._path = path
        self._dialect = dialect
        self._url = url
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="audit-sqlite")
        self._connection: sqlite3.Connection | None = None

    @cached_property
    def _statements(self) -> _Statements:
        return _Statements.compiled(self._dialect)

    async def write(
        self, rows: Sequence[Mapping[str, Any]], usage: Sequence[Mapping[str, Any]]
    ) -> None:
        """Insert ``rows`` (``storable`` with ``json_text``) and add ``usage``
        (``rollup.increments``) in one transaction."""
        statements = self._statements
        events = [self._bound(statements, row) for row in rows]
        sums = [tuple(each[name] for name in statements.upsert_order) for each in usage]
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._write, statements, events, sums)
        except _REFUSALS as exc:
            raise RecordRefused(self._url, self._action(rows), str(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreError(self._url, self._action(rows), str(exc) or type(exc).__name__) from exc

    async def close(self) -> None:
        if self._connection is not None:  # no batch is being written: the store is closing
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)

    @staticmethod
    def _action(rows: Sequence[Any]) -> str:
        return f"write {len(rows)} audit records"

    @staticmethod
    def _bound(statements: _Statements, row: Mapping[str, Any]) -> list[Any]:
        """``row`` (``storable`` with ``json_text``: the arguments are JSON text already) as
        the insert's parameters, its time as SQLAlchemy writes it."""
        values = list(statements.values(row))
        values[statements.at_index] = statements.at(values[statements.at_index])
        return values

    # -- in the writer's thread -----------------------------------------------------------

    def _connected(self) -> sqlite3.Connection:
        if self._connection is None:
            # isolation_level None: no implicit BEGIN of the driver's; ours is IMMEDIATE, taking
            # the write lock at once (``atrium.store.transaction``).
            connection = sqlite3.connect(
                self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA foreign_keys=ON")
            # The store is in WAL mode (``atrium.store.sqlite``), where NORMAL syncs at each
            # checkpoint rather than each commit: a commit outlives a killed process, as the
            # journal's ``os.write`` does (``atrium.gateway.journal``); an operating system
            # that fails may lose the last commits, as it loses the journal's last lines.
            connection.execute("PRAGMA synchronous=NORMAL")
            self._connection = connection
        return self._connection

    def _write(
        self,
        statements: _Statements,
        events: list[list[Any]],
        sums: list[tuple[Any, ...]],
    ) -> None:
        connection = self._connected()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(statements.insert, events)
            if sums:
                connection.executemany(statements.upsert, sums)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
