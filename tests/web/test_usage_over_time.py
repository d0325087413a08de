"""The audit trail summed per time bucket, as the console's usage page draws it, on SQLite and
PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from atrium.store import Store
from atrium.store.audit import AuditEvent

HOUR = datetime(2026, 5, 1, 12, tzinfo=UTC)


def _event(minute: int, **extra: Any) -> AuditEvent:
    fields: dict[str, Any] = {"server": "tools", "method": "tools/call", "tool": "echo"}
    fields.update(extra)
    at = HOUR + timedelta(minutes=minute, seconds=30)
    return AuditEvent(request_id=f"r{minute:04d}", at=at, **fields)


async def test_requests_are_summed_per_bucket_and_server(store: Store) -> None:
    await store.audit.add_many(
        [
            _event(1, duration_ms=10.0),
            _event(4, duration_ms=30.0, outcome="tool_error", origin="in-app"),
            _event(7, duration_ms=5.0),
            _event(8, server="other", tool="peek", duration_ms=1.0),
            _event(-20, duration_ms=99.0),  # before the window
        ]
    )

    points = await store.audit.usage_over_time(HOUR, 300, "server")

    found = [(p.start.minute, p.keys["server"], p.requests, p.errors, p.in_app) for p in points]
    assert found == [(0, "tools", 2, 1, 1), (5, "other", 1, 0, 0), (5, "tools", 1, 0, 0)]
    assert points[0].start == HOUR
    assert (points[0].avg_ms, points[0].max_ms, points[0].external) == (20.0, 30.0, 1)


async def test_tool_buckets_count_tool_calls_of_one_server_and_caller(store: Store) -> None:
    await store.audit.add_many(
        [
            _event(1, subject="ada"),
            _event(2, subject="ada", tool="peek"),
            _event(3, subject="bob"),
            _event(4, subject="ada", tool=None, method="tools/list"),
            _event(5, subject="ada", server="other"),
        ]
    )

    points = await store.audit.usage_over_time(HOUR, 3600, "tool", subject="ada", server="tools")

    assert [(p.keys, p.requests) for p in points] == [
        ({"server": "tools", "tool": "echo"}, 1),
        ({"server": "tools", "tool": "peek"}, 1),
    ]
