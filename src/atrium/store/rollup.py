"""The audit trail summed per hour (``audit_usage``), and latency percentiles read from sums.

The audit writer adds a batch's sums in the same transaction as its rows (``add``), so the
usage page reads a week as hours of sums, not as every request in it (issue 16). A window
rarely starts on the hour: ``sums`` reads its first, partial hour from ``audit_events`` and the
whole hours after it from ``audit_usage`` in one query, so every count is that of the rows.
Whatever deletes audit rows one day (nothing does yet) must take their sums away here too.

Latency is kept as a histogram: a duration falls in a log-spaced bin, ``BINS_PER_E`` of them
to each factor of e (each 10.5 % wide), and each bin keeps its count, least and most duration. A
percentile (nearest rank, as ``UsageRow`` defines it) is read in the bin that holds its rank,
interpolated by rank between that bin's least and most duration (``percentile``): exact when
the bin holds one or two durations (or evenly spaced ones), and never off by more than the
bin is wide. Ranking every duration of a week, as the page did, cost a sort of all of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    CompoundSelect,
    Float,
    Index,
    Insert,
    Integer,
    Select,
    SmallInteger,
    String,
    Table,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import Function, FunctionElement

from atrium.store.tables import audit_events, metadata

BINS_PER_E = 10
LEAST_MS = 0.001  # shorter durations share the lowest bin (ln 0 has no value)
MOST_MS = 1e12  # longer ones the highest
HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KEY = ("hour", "server", "tool_call", "tool", "subject", "latency_bin")
SUMS = ("requests", "errors", "in_app", "total_ms", "min_ms", "max_ms")
SQLITE_LATENCY_BIN = "atrium_latency_bin"  # registered on every connection: store.sqlite

# One row per hour, server, tool, caller and latency bin (migration 0012). A request that is not
# a ``tools/call`` has ``tool_call`` false and ``tool`` ''; no caller is ``subject`` ''.
# Clustered on the key (SQLite ``WITHOUT ROWID``): the hours of a window are one range.
audit_usage = Table(
    "audit_usage",
    metadata,
    Column("hour", BigInteger, primary_key=True),  # its first second, since 1970 (UTC)
    Column("server", String(64), primary_key=True),
    Column("tool_call", Boolean, primary_key=True),
    Column("tool", String(128), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("latency_bin", SmallInteger, primary_key=True),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("in_app", Integer, nullable=False),
    Column("total_ms", Float, nullable=False),
    Column("min_ms", Float, nullable=False),
    Column("max_ms", Float, nullable=False),
    Index("ix_audit_usage_subject_hour", "subject", "hour"),
    sqlite_with_rowid=False,
)


def latency_bin(ms: float) -> int:
    """The histogram bin of a duration: ``floor(ln(ms) * BINS_PER_E)``."""
    bounded = min(ms, MOST_MS) if ms >= LEAST_MS else LEAST_MS  # NaN too: the lowest bin
    return math.floor(math.log(bounded) * BINS_PER_E)


def hour_of(moment: datetime) -> int:
    """The first second of the hour ``moment`` is in, since 1970."""
    return (moment - EPOCH) // HOUR * 3600


def percentile(bins: Sequence[tuple[int, float, float]], percent: int, total: int) -> float:
    """The nearest-rank ``percent`` percentile (the ceil(p·n)-th duration) of ``total``
    durations in bins, in bin order, each as (count, least, most): interpolated by rank
    within the bin that holds it."""
    rank = max((percent * total + 99) // 100, 1)
    for count, least, most in bins:
        if rank <= count:
            return least if count == 1 else least + (most - least) * (rank - 1) / (count - 1)
        rank -= count
    return bins[-1][2]


class Epoch(FunctionElement[int]):
    """Whole seconds since 1970 of a ``UTCDateTime`` column, in each dialect's own words."""

    type = BigInteger()
    inherit_cache = True


@compiles(Epoch, "sqlite")
def _epoch_sqlite(element: Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(Epoch, "postgresql")
def _epoch_postgresql(element: Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(floor(extract(epoch FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


class LatencyBin(FunctionElement[int]):
    """``latency_bin`` of a duration column in SQL. SQLite runs the Python function itself
    (not every SQLite has ``ln``), so its bins are the writer's to the bit; PostgreSQL's
    ``ln`` is the C library's ``log``, as Python's is."""

    type = SmallInteger()
    inherit_cache = True


@compiles(LatencyBin, "sqlite")
def _latency_bin_sqlite(element: LatencyBin, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{SQLITE_LATENCY_BIN}({compiler.process(element.clauses, **kw)})"


@compiles(LatencyBin, "postgresql")
def _latency_bin_postgresql(element: LatencyBin, compiler: SQLCompiler, **kw: Any) -> str:
    ms = f"LEAST(GREATEST({compiler.process(element.clauses, **kw)}, {LEAST_MS}), {MOST_MS})"
    return f"CAST(floor(ln({ms}) * {BINS_PER_E}) AS INTEGER)"


def increments(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``audit_events`` rows as the sums to add to ``audit_usage``: one per key, in key order,
    the order every writer takes the rows' locks in (two replicas never deadlock)."""
    found: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        ms = row["duration_ms"]
        tool, subject = row["tool"], row["subject"]
        key = (
            hour_of(row["at"]),
            row["server"],
            tool is not None,
            tool or "",
            subject or "",
            latency_bin(ms),
        )
        error, in_app = int(row["outcome"] != "ok"), int(row["origin"] == "in-app")
        sums = found.get(key)
        if sums is None:
            found[key] = [1, error, in_app, ms, ms, ms]
        else:
            sums[0] += 1
            sums[1] += error
            sums[2] += in_app
            sums[3] += ms
            sums[4] = min(sums[4], ms)
            sums[5] = max(sums[5], ms)
    return [
        dict(zip(KEY + SUMS, (*key, *sums), strict=True)) for key, sums in sorted(found.items())
    ]


async def add(conn: AsyncConnection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Add the sums of ``rows`` (just inserted into ``audit_events``) in ``conn``'s transaction."""
    values = increments(rows)
    if values:
        await conn.execute(upsert(conn.dialect.name), values)


@cache
def upsert(dialect: str) -> Insert:
    c = audit_usage.c
    if dialect == "postgresql":
        statement: Any = postgresql.insert(audit_usage)
        least, most = "least", "greatest"
    else:  # SQLite's min and max of two arguments are scalar functions
        statement = sqlite.insert(audit_usage)
        least, most = "min", "max"
    new = statement.excluded
    upserted: Insert = statement.on_conflict_do_update(
        index_elements=list(KEY),
        set_={
            "requests": c.requests + new.requests,
            "errors": c.errors + new.errors,
            "in_app": c.in_app + new.in_app,
            "total_ms": c.total_ms + new.total_ms,
            "min_ms": Function(least, c.min_ms, new.min_ms),
            "max_ms": Function(most, c.max_ms, new.max_ms),
        },
    )
    return upserted


@dataclass(frozen=True, kw_only=True)
class Scope:
    """Which requests to sum: since a time; of one caller (``subject``), of one server, or
    only of some groups (``groups``: values of the keys summed on, never ``None``)."""

    since: datetime
    subject: str | None = None
    server: str | None = None
    groups: Sequence[tuple[str, ...]] | None = None


def sums(
    scope: Scope,
    keys: Sequence[str],
    *,
    bucket_s: int | None = None,
    bins: bool = False,
    figures: Sequence[str] = SUMS,
) -> Select[Any]:
    """The requests of ``scope`` summed per ``keys`` (columns of ``audit_events``; with
    ``tool``, only ``tools/call`` requests count), per time bucket of ``bucket_s`` seconds
    (``bucket``: its first second) and per latency bin when asked; in group order, with
    ``figures`` (of ``SUMS``: each costs a little per request summed).

    Whole hours come from ``audit_usage`` when it has the keys and the buckets are whole
    hours; whatever is before the first of them (or everything), from ``audit_events``."""
    split: datetime | None = _first_whole_hour(scope.since)
    whole_hours = bucket_s is None or bucket_s % 3600 == 0
    if not whole_hours or not set(keys) <= {"server", "tool"}:
        split = None
    shape = _Shape(keys, bucket_s, bins, figures)
    parts = [] if split == scope.since else [_from_events(scope, shape, split)]
    if split is not None:
        parts.append(_from_rollup(scope, shape, hour_of(split)))
    source = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
    group = [source.c[name] for name in shape.names]
    return (
        select(*group, *(_summed(source.c[name]) for name in figures))
        .group_by(*group)
        .order_by(*group)
    )


def _summed(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A figure of many rows: the least of the least durations, the most of the most, the sum
    of any other."""
    if column.key == "min_ms":
        return func.min(column).label("min_ms")
    if column.key == "max_ms":
        return func.max(column).label("max_ms")
    return func.sum(column).label(column.key)


def busiest(scope: Scope, keys: Sequence[str], limit: int) -> Select[Any]:
    """The keys of the ``limit`` groups of ``sums(scope, keys)`` with the most requests (then
    by key), each with ``groups``: how many groups there are in all."""
    totals = sums(scope, keys, figures=["requests"]).order_by(None).subquery()
    group = [totals.c[name] for name in keys]
    return (
        select(*group, func.count().over().label("groups"))
        .order_by(totals.c.requests.desc(), *group)
        .limit(limit)
    )


def busiest_over_time(
    scope: Scope, keys: Sequence[str], bucket_s: int, limit: int
) -> CompoundSelect[Any]:
    """``sums(scope, keys, bucket_s=bucket_s)`` of the ``limit`` groups with the most requests
    in all (then by key), and the sums of every other group together per bucket, their keys
    ``NULL``: a chart draws a line for a few groups, and all of them in its totals."""
    figures = [name for name in SUMS if name != "min_ms"]
    points = sums(scope, keys, bucket_s=bucket_s, figures=figures).order_by(None).cte("points")
    group = [points.c[name] for name in keys]
    top = (
        select(*group)
        .group_by(*group)
        .order_by(func.sum(points.c.requests).desc(), *group)
        .limit(limit)
    )
    chosen = group[0].in_(top) if len(group) == 1 else tuple_(*group).in_(top)
    kept = select(points.c.bucket, *group, *(points.c[name] for name in figures)).where(chosen)
    rest = (
        select(
            points.c.bucket,
            *(cast(null(), String()).label(name) for name in keys),
            *(_summed(points.c[name]) for name in figures),
        )
        .where(~chosen)
        .group_by(points.c.bucket)
    )
    return union_all(kept, rest).order_by(
        literal_column("bucket"), *(literal_column(k) for k in keys)
    )


def _first_whole_hour(since: datetime) -> datetime:
    start = EPOCH + timedelta(seconds=hour_of(since))
    return start if start == since else start + HOUR


@dataclass(frozen=True)
class _Shape:
    """What ``sums`` groups on and sums: the columns each part of its union selects."""

    keys: Sequence[str]
    bucket_s: int | None
    bins: bool
    figures: Sequence[str]

    @property
    def names(self) -> list[str]:
        """The columns grouped on, in order: the bucket, the keys, the latency bin."""
        bucket = ["bucket"] if self.bucket_s else []
        return [*bucket, *self.keys, *(["latency_bin"] if self.bins else [])]


def _from_events(scope: Scope, shape: _Shape, until: datetime | None) -> Select[Any]:
    c = audit_events.c
    columns: list[ColumnElement[Any]] = [c[name] for name in shape.keys]
    if shape.bucket_s:
        size = literal_column(str(int(shape.bucket_s)), BigInteger())
        columns.append((Epoch(c.at) // size * size).label("bucket"))
    if shape.bins:
        columns.append(LatencyBin(c.duration_ms).label("latency_bin"))
    figures: dict[str, ColumnElement[Any]] = {
        "requests": literal_column("1", Integer()),
        "errors": case((c.outcome != "ok", 1), else_=0),
        "in_app": case((c.origin == "in-app", 1), else_=0),
    }
    columns += [figures.get(name, c.duration_ms).label(name) for name in shape.figures]
    query = select(*columns).where(c.at >= scope.since)
    if until is not None:
        query = query.where(c.at < until)
    if "tool" in shape.keys:
        query = query.where(c.tool.is_not(None))
    return _filtered(query, scope, shape.keys, c.subject, c.server)


def _from_rollup(scope: Scope, shape: _Shape, hour: int) -> Select[Any]:
    c = audit_usage.c
    columns: list[ColumnElement[Any]] = [c[name] for name in shape.keys]
    if shape.bucket_s:
        size = literal_column(str(int(shape.bucket_s)), BigInteger())
        columns.append((c.hour // size * size).label("bucket"))
    if shape.bins:
        columns.append(c.latency_bin)
    query = select(*columns, *(c[name] for name in shape.figures)).where(c.hour >= hour)
    if "tool" in shape.keys:
        query = query.where(c.tool_call)
    return _filtered(query, scope, shape.keys, c.subject, c.server)


def _filtered(
    query: Select[Any],
    scope: Scope,
    keys: Sequence[str],
    subject: ColumnElement[Any],
    server: ColumnElement[Any],
) -> Select[Any]:
    if scope.subject is not None:
        query = query.where(subject == scope.subject)
    if scope.server is not None:
        query = query.where(server == scope.server)
    if scope.groups is not None:
        columns = [query.selected_columns[name] for name in keys]
        if len(columns) == 1:
            query = query.where(columns[0].in_([group[0] for group in scope.groups]))
        else:
            query = query.where(tuple_(*columns).in_(list(scope.groups)))
    return query
