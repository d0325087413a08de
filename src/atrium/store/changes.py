"""Changes every gateway of a store must see at once: PostgreSQL ``LISTEN``/``NOTIFY``.

Gateways keep what they check on every request in memory: the revocation list, the signing
keys, the server registry. Each polls the store for changes (``gateway.poll_s``), but a
revocation must not wait for a poll on the other replicas. So the write that revokes a token,
disables a user or changes the registry also announces it (``announce``) in its own
transaction: PostgreSQL delivers the notification at commit, never for a rolled-back write,
and to every session listening on the channel (``ChangeFeed``), on every host. Supervisors
listen too: a change of the keys (``auth``, announced by every key write, ``atrium.store.keys``)
has them write the new public caller keys for their backends (``atrium.auth.caller_keystore``).

Why not Redis pub/sub: the announcement would be a second write after the commit, with a
window where one happened and not the other (a crash between them, Redis down); ``NOTIFY`` is
part of the transaction. Every installation that scales out shares PostgreSQL; SQLite serves
one host, where the control channel tells the local gateway and the poll does the rest.

The channel is per schema (``atrium_changes_<schema>``): installations sharing one database in
different schemas do not wake each other. The payload is the kind of change (``Change``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Literal, get_args

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

logger = logging.getLogger(__name__)

Change = Literal["auth", "registry"]
CHANNEL_PREFIX = "atrium_changes_"
RETRY_S = (0.5, 1.0, 2.0, 5.0)

_NOTIFY = text("SELECT pg_notify(:prefix || current_schema(), :change)")


async def announce(conn: AsyncConnection, change: Change) -> None:
    """Have every listening gateway hear of ``change`` when ``conn``'s transaction commits."""
    if conn.dialect.name == "postgresql":
        await conn.execute(_NOTIFY, {"prefix": CHANNEL_PREFIX, "change": change})


class ChangeFeed:
    """One connection of the pool, held to ``LISTEN``; ``on_change`` hears every change.

    A lost connection is opened again (backing off up to 5 s); meanwhile the poll covers.
    After each (re)connection ``on_change`` hears every kind once, for what it may have missed.
    """

    def __init__(self, engine: AsyncEngine, on_change: Callable[[Change], None]) -> None:
        self._engine = engine
        self._on_change = on_change
        self.listening = asyncio.Event()  # set while a connection listens (for tests, health)
        self.connections = 0  # connections that have listened so far

    @staticmethod
    def supported(engine: AsyncEngine) -> bool:
        return engine.dialect.name == "postgresql"

    async def run(self) -> None:
        """Listen until cancelled."""
        failures = 0
        while True:
            try:
                await self._listen_once()
                failures = 0
            except Exception as exc:  # noqa: BLE001 (the top of a task: SQLAlchemy's, asyncpg's own)
                delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                logger.warning("listening for store changes failed (%s); again in %gs", exc, delay)
                await asyncio.sleep(delay)

    async def _listen_once(self) -> None:
        async with self._engine.connect() as conn:
            try:
                raw = await conn.get_raw_connection()
                # On the driver's connection itself, outside any transaction: a LISTEN inside
                # one would wait for its commit, and so would every notification.
                listener: Any = raw.driver_connection  # asyncpg.Connection
                channel = f"{CHANNEL_PREFIX}{await listener.fetchval('SELECT current_schema()')}"
                lost = asyncio.Event()
                await listener.add_listener(channel, self._heard)
                listener.add_termination_listener(lambda _conn: lost.set())
                self.connections += 1
                self.listening.set()
                for change in get_args(Change):  # what changed while nobody listened
                    self._on_change(change)
                try:
                    await lost.wait()
                finally:
                    self.listening.clear()
            finally:
                # Never back into the pool: it is listening, or broken.
                with contextlib.suppress(Exception):
                    await conn.invalidate()

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload in get_args(Change):
            self._on_change(payload)  # type: ignore[arg-type]  # checked just above
        else:
            logger.warning("ignoring an unknown store change %r", payload[:100])
