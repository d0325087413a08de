"""The audit trail summed per hour (``atrium.store.rollup``): whatever the usage page reads from
the sums must be what the rows say, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select

from atrium.store import Store, StoreError
from atrium.store.audit import AuditEvent, UsageBy, UsageRow
from atrium.store.migrate import alembic_config
from atrium.store.rollup import BINS_PER_E, audit_usage, latency_bin
from atrium.store.tables import audit_events

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
BIN_WIDTH = math.exp(1 / BINS_PER_E) - 1  # how far a percentile read from a bin may be off
KEYS: dict[UsageBy, Callable[[AuditEvent], tuple[str | None, ...]]] = {
    "server": lambda event: (event.server,),
    "tool": lambda event: (event.server, event.tool),
    "client": lambda event: (event.client_id,),
}


def random_events(seed: int, count: int, *, days: float = 8) -> list[AuditEvent]:
    rng = random.Random(seed)
    events = []
    for index in range(count):
        tool = rng.choice([None, "echo", "peek", "sum"])
        events.append(
            AuditEvent(
                request_id=f"r{seed}-{index}",
                server=rng.choice(["alpha", "beta", "gamma"]),
                method="tools/call" if tool else "tools/list",
                tool=tool,
                subject=rng.choice([None, "ada", "bob"]),
                client_id=rng.choice([None, "cli", "https://app.example/client.json"]),
                origin=rng.choice(["external", "in-app"]),
                outcome=rng.choice(["ok", "ok", "ok", "tool_error", "http_error"]),
                at=NOW - timedelta(seconds=rng.uniform(0, days * 86400)),
                duration_ms=rng.lognormvariate(2.5, 1.2),
            )
        )
    return events


def nearest_rank(durations: list[float], percent: int) -> float:
    ordered = sorted(durations)
    return ordered[max((percent * len(ordered) + 99) // 100, 1) - 1]


def expected_usage(
    events: Iterable[AuditEvent], since: datetime, by: UsageBy, subject: str | None = None
) -> dict[tuple[str | None, ...], list[AuditEvent]]:
    """The rows of each group, as the audit table holds them: what ``usage`` must sum."""
    groups: dict[tuple[str | None, ...], list[AuditEvent]] = defaultdict(list)
    for event in events:
        if event.at < since or (by == "tool" and event.tool is None):
            continue
        if subject is not None and event.subject != subject:
            continue
        groups[KEYS[by](event)].append(event)
    return groups


def assert_row_is_the_rows(row: UsageRow, rows: list[AuditEvent]) -> None:
    durations = [event.duration_ms for event in rows]
    assert row.requests == len(rows)
    assert row.errors == sum(event.outcome != "ok" for event in rows)
    assert row.in_app == sum(event.origin == "in-app" for event in rows)
    assert row.external == row.requests - row.in_app
    assert row.max_ms == max(durations)
    assert row.avg_ms == pytest.approx(sum(durations) / len(durations), abs=1e-3)
    for percent, found in ((50, row.p50_ms), (95, row.p95_ms)):
        exact = nearest_rank(durations, percent)
        assert abs(found - exact) <= exact * BIN_WIDTH, (percent, found, exact)


@pytest.mark.parametrize("by", ["server", "tool", "client"])
async def test_usage_sums_are_the_rows_for_windows_on_and_off_the_hour(
    store: Store, by: UsageBy
) -> None:
    events = random_events(16, 600)
    await store.audit.add_many(events)
    rng = random.Random(by)
    starts = [NOW - timedelta(hours=24), NOW - timedelta(days=7)]  # on the hour: sums alone
    starts += [NOW - timedelta(seconds=rng.uniform(60, 7 * 86400)) for _ in range(4)]

    for since in starts:
        for subject in (None, "ada"):
            rows = await store.audit.usage(since, by, subject=subject)
            expected = expected_usage(events, since, by, subject)
            assert {tuple(row.keys.values()) for row in rows} == set(expected), since
            for row in rows:
                assert_row_is_the_rows(row, expected[tuple(row.keys.values())])
            assert [row.requests for row in rows] == sorted(
                (row.requests for row in rows), reverse=True
            )


async def test_percentiles_are_exact_when_their_bin_holds_one_duration(store: Store) -> None:
    # Ten durations a factor of 2 apart: each alone in its bin.
    durations = [2.0**power for power in range(10)]
    await store.audit.add_many(
        [
            AuditEvent(request_id=f"r{n}", server="tools", method=None, at=NOW, duration_ms=ms)
            for n, ms in enumerate(durations)
        ]
    )

    (row,) = await store.audit.usage(NOW - timedelta(minutes=30), "server")

    assert (row.p50_ms, row.p95_ms) == (nearest_rank(durations, 50), nearest_rank(durations, 95))


async def test_the_busiest_are_the_first_rows_of_usage_and_every_group_is_counted(
    store: Store,
) -> None:
    events = random_events(17, 400)
    await store.audit.add_many(events)
    since = NOW - timedelta(days=3, minutes=17)

    every = await store.audit.usage(since, "tool")
    top, groups = await store.audit.busiest(since, "tool", 5)
    none, no_groups = await store.audit.busiest(NOW + timedelta(hours=1), "tool", 5)

    assert groups == len(every) == 9  # three servers, three tools each
    assert top == every[:5]
    assert (none, no_groups) == ([], 0)


def expected_points(
    events: Iterable[AuditEvent], since: datetime, bucket_s: int, by: UsageBy
) -> dict[tuple[int, tuple[str | None, ...]], list[AuditEvent]]:
    found: dict[tuple[int, tuple[str | None, ...]], list[AuditEvent]] = defaultdict(list)
    for event in events:
        if event.at >= since and (by != "tool" or event.tool is not None):
            bucket = math.floor(event.at.timestamp()) // bucket_s * bucket_s
            found[(bucket, KEYS[by](event))].append(event)
    return found


@pytest.mark.parametrize(
    ("bucket_s", "offset_s"), [(300, 0), (3600, 0), (21600, 0), (3600, 1234), (21600, 4321)]
)
async def test_points_over_time_are_the_rows_of_each_bucket(
    store: Store, bucket_s: int, offset_s: int
) -> None:
    events = random_events(18, 500, days=3)
    await store.audit.add_many(events)
    start = (NOW - timedelta(days=2)).timestamp() // bucket_s * bucket_s  # as the page asks
    since = datetime.fromtimestamp(start + offset_s, UTC)

    points = await store.audit.usage_over_time(since, bucket_s, "server")

    expected = expected_points(events, since, bucket_s, "server")
    assert [(int(p.start.timestamp()), tuple(p.keys.values())) for p in points] == sorted(expected)
    for point in points:
        rows = expected[(int(point.start.timestamp()), tuple(point.keys.values()))]
        assert (point.requests, point.errors, point.in_app) == (
            len(rows),
            sum(event.outcome != "ok" for event in rows),
            sum(event.origin == "in-app" for event in rows),
        )
        assert point.max_ms == max(event.duration_ms for event in rows)


async def test_points_of_all_but_the_busiest_groups_are_summed_per_bucket(store: Store) -> None:
    events = random_events(19, 500, days=3)
    await store.audit.add_many(events)
    since = datetime.fromtimestamp((NOW - timedelta(days=2)).timestamp() // 3600 * 3600, UTC)

    every = await store.audit.usage_over_time(since, 3600, "tool")
    kept = await store.audit.usage_over_time(since, 3600, "tool", busiest=2)

    calls: dict[tuple[str | None, ...], int] = defaultdict(int)
    for point in every:
        calls[tuple(point.keys.values())] += point.requests
    busiest = sorted(calls, key=lambda keys: (-calls[keys], keys))[:2]
    own = [p for p in kept if p.keys["server"] is not None]
    rest = [p for p in kept if p.keys["server"] is None]
    assert own == [p for p in every if tuple(p.keys.values()) in busiest]
    others: dict[datetime, int] = defaultdict(int)
    for point in every:
        if tuple(point.keys.values()) not in busiest:
            others[point.start] += point.requests
    assert {p.start: p.requests for p in rest} == others
    assert all(p.keys == {"server": None, "tool": None} for p in rest)


async def rollup_rows(store: Store) -> list[tuple[Any, ...]]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(select(audit_usage).order_by(*audit_usage.primary_key))
        return [tuple(row) for row in rows]


async def test_writers_at_the_same_time_add_up(store: Store) -> None:
    # Every writer adds to the same few rows: one hour, server, tool and caller, two bins.
    def batch(writer: int) -> list[AuditEvent]:
        return [
            AuditEvent(
                request_id=f"w{writer}-{n}",
                server="tools",
                method="tools/call",
                tool="echo",
                subject="ada",
                at=NOW + timedelta(seconds=n),
                duration_ms=5.0 if n % 2 else 50.0,
                outcome="tool_error" if n % 5 == 0 else "ok",
            )
            for n in range(100)
        ]

    await asyncio.gather(*(store.audit.add_many(batch(writer)) for writer in range(6)))

    rows = await rollup_rows(store)
    assert [(row[5], row[6], row[7]) for row in rows] == [
        (latency_bin(5.0), 300, 60),
        (latency_bin(50.0), 300, 60),
    ]
    assert [(row[9], row[10], row[11]) for row in rows] == [
        (1500.0, 5.0, 5.0),
        (15000.0, 50.0, 50.0),
    ]


async def test_a_batch_the_store_refuses_leaves_no_sums_either(store: Store) -> None:
    good = AuditEvent(request_id="good", server="tools", method=None, at=NOW)
    # No request id: the rows' insert fails, and their sums alone would not.
    broken = AuditEvent(request_id=None, server="tools", method=None, at=NOW)  # type: ignore[arg-type]

    with pytest.raises(StoreError):
        await store.audit.add_many([good, broken])

    assert await rollup_rows(store) == []
    async with store.engine.connect() as conn:
        assert (await conn.execute(select(audit_events))).all() == []


async def test_the_upgrade_fills_the_sums_as_the_writer_keeps_them(store: Store) -> None:
    await store.audit.add_many(random_events(20, 300))
    written = await rollup_rows(store)

    async with store.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0011"))
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
    filled = await rollup_rows(store)

    assert len(filled) == len(written)
    for row, expected in zip(filled, written, strict=True):
        keys_and_counts, total, least_most = row[:9], row[9], row[10:]
        assert keys_and_counts == expected[:9]
        assert total == pytest.approx(expected[9])
        assert least_most == expected[10:]
