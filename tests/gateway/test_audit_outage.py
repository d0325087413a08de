"""The store refusing writes for a while (issue 18): calls are answered all the same, and once
it takes writes again every answered call has its one audit record, none lost, none twice.

SQLite: another connection holds the write lock (``BEGIN IMMEDIATE``) past the store's busy
timeout. PostgreSQL: a trigger refuses every insert into ``audit_events`` as a server that
cannot take connections does (SQLSTATE 57P03).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx2
import pytest
from sqlalchemy.engine import make_url

from atrium.settings import Settings
from atrium.store import Store
from atrium.store.sqlite import database_path
from tests.conftest import POSTGRES_URL
from tests.gateway.conftest import Backend
from tests.gateway.helpers import call_modern, running_gateway, save_servers
from tests.polling import until
from tests.processes import free_port


@asynccontextmanager
async def refusing_audit_writes(settings: Settings) -> AsyncIterator[None]:
    """The store refuses every audit insert until the block ends."""
    if settings.database_schema:
        async with _postgres_refusing(settings.database_schema):
            yield
        return
    path = database_path(make_url(settings.database_url))
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@asynccontextmanager
async def _postgres_refusing(schema: str) -> AsyncIterator[None]:
    connection = await asyncpg.connect(POSTGRES_URL)
    table = f'"{schema}".audit_events'
    try:
        await connection.execute(
            f"""CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'the store is down' USING ERRCODE = '57P03'; END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON {table}
            FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse()"""
        )
        yield
        await connection.execute(f"DROP TRIGGER refuse ON {table}")
    finally:
        await connection.close()


async def test_calls_answered_while_the_store_refuses_writes_are_recorded_once_it_recovers(
    database_settings: Settings,
    backend: Backend,
    http: httpx2.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="atrium.gateway.audit")
    async with await Store.open(database_settings) as store:
        await save_servers(store, backend.port, free_port())
        async with running_gateway(database_settings, store) as gateway:
            url = gateway.url("tools")
            before = await call_modern(http, url, "echo", {"text": "before"})
            await gateway.audit(before.headers["x-request-id"])

            async with refusing_audit_writes(database_settings):
                during: list[httpx2.Response] = []
                for _ in range(4):
                    calls = [call_modern(http, url, "echo", {"text": f"{n}"}) for n in range(5)]
                    during += await asyncio.gather(*calls)

                def refused() -> bool:
                    failures = [m for m in caplog.messages if m.startswith("writing ")]
                    return len(failures) >= tries

                # On PostgreSQL, longer than a writer that gives up after a few tries would
                # wait; SQLite's busy timeout makes each try last 5 s: one is enough there.
                tries = 4 if database_settings.database_schema else 1
                await until(refused, what=f"the store to refuse {tries} tries", timeout_s=40)
                assert not await gateway.parts.audit.settled(0.1)

            assert await gateway.parts.audit.settled(30)
            stored = Counter(r.request_id for r in await store.audit.list_recent(1000))

    assert {response.status_code for response in during} == {200}
    answered = [before, *during]
    assert stored == Counter(response.headers["x-request-id"] for response in answered)
