"""Audit batches on SQLite in one hop (``atrium.store.audit_sqlite``): what they store is what
SQLAlchemy stored, row for row and sum for sum, and a batch the database refuses is refused
whole, as ``RecordRefused``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from atrium.settings import load_settings
from atrium.store import Store
from atrium.store.audit import AuditEvent, AuditQueries
from atrium.store.audit_rows import RecordRefused

AT = datetime(2026, 5, 1, 9, 59, 59, 999_999, tzinfo=UTC)


def varied() -> list[AuditEvent]:
    """Records that differ in every column the writer converts or sums on."""
    return [
        AuditEvent(request_id="r1", server="tools", method="initialize", at=AT),
        AuditEvent(
            request_id="r2",
            server="tools",
            method="tools/call",
            tool="echo",
            arguments={"text": "é ☃ \U0001f600", "n": [1, 2.5, None, True], "nan": float("nan")},
            at=AT + timedelta(microseconds=1),
            caller="alice",
            subject="5f0c2a",
            client_id="https://app.example/client.json",
            duration_ms=3.25,
        ),
        AuditEvent(
            request_id="r3",
            server="other",
            method="tools/call",
            tool="fail",
            arguments={},
            at=AT.astimezone(timezone(timedelta(hours=-5))),  # stored as UTC
            origin="in-app",
            outcome="tool_error",
            error="it broke\x00",
            duration_ms=1200.0,
        ),
        AuditEvent(request_id="r4", server="tools", method=None, at=AT, status=413),
    ]


async def stored(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with store.engine.connect() as conn:
        events = (await conn.exec_driver_sql("SELECT * FROM audit_events ORDER BY id")).all()
        usage = await conn.exec_driver_sql("SELECT * FROM audit_usage ORDER BY 1, 2, 3, 4, 5, 6")
        sums = [tuple(row) for row in usage.all()]
    # The arguments' JSON is orjson's in one and the json module's in the other: same JSON.
    rows = [(*row[:6], orjson.loads(row[6]), *row[7:]) for row in map(tuple, events)]
    return rows, sums


async def test_one_hop_stores_what_sqlalchemy_stored(tmp_path: Path) -> None:
    found = []
    for direct in (True, False):
        settings = load_settings(tmp_path / str(direct), environ={})
        async with await Store.open(settings) as store:
            queries = AuditQueries(store.engine, direct=direct)
            try:
                await queries.add_many(varied()[:2])
                await queries.add_many(varied()[2:])
                found.append(await stored(store))
                recent = await queries.list_recent()
            finally:
                await queries.close()
        assert [r.request_id for r in recent] == ["r4", "r3", "r2", "r1"]
        assert recent[-1].at == AT

    assert found[0] == found[1]
    assert len(found[0][0]) == 4
    assert len(found[0][1]) >= 3


async def test_a_batch_the_database_refuses_is_refused_whole(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    async with await Store.open(settings) as store:
        good = AuditEvent(request_id="good", server="tools", method="ping")
        bad = AuditEvent(request_id="bad", server="tools", method="ping", caller=None)  # type: ignore[arg-type]

        with pytest.raises(RecordRefused, match="NOT NULL"):
            await store.audit.add_many([good, bad])
        await store.audit.add_many([good])  # the connection is usable after the rollback

        assert [r.request_id for r in await store.audit.list_recent()] == ["good"]
