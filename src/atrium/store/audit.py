"""Typed queries on ``audit_events``: the gateway's record of every JSON-RPC request.

Written in batches (one INSERT of many rows) by the gateway's background writer, read newest
first by ``atrium infra logs request list`` and ``infra logs audit``, and summed per server,
tool or client by ``atrium infra usage``.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Row,
    Select,
    case,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from atrium.store.tables import audit_events
from atrium.store.transaction import reading, writing

Outcome = Literal["ok", "tool_error", "jsonrpc_error", "http_error"]
Origin = Literal["external", "in-app"]
UsageBy = Literal["server", "tool", "client"]

# The columns each ``UsageBy`` groups on: a tool's name means something only with its server.
_USAGE_KEYS = {
    "server": (audit_events.c.server,),
    "tool": (audit_events.c.server, audit_events.c.tool),
    "client": (audit_events.c.client_id,),
}


@dataclass(kw_only=True)
class AuditEvent:
    """One JSON-RPC request through the gateway, as recorded."""

    request_id: str
    server: str
    method: str | None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    tool: str | None = None
    arguments: Any = None
    caller: str = "anonymous"
    # The OAuth identity behind the call, when a token was presented: its ``sub`` and client.
    subject: str | None = None
    client_id: str | None = None
    origin: Origin = "external"
    outcome: Outcome = "ok"
    status: int = 200
    error: str | None = None
    duration_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


@dataclass(kw_only=True)
class AuditRecord(AuditEvent):
    """A stored ``AuditEvent`` with its row id (ids grow with time: newest is largest)."""

    id: int


@dataclass(frozen=True, kw_only=True)
class UsageRow:
    """The requests of one group (a server, a server's tool, a client) since some time.

    ``errors`` counts every outcome but ``ok``, tool errors included. Latencies are in ms;
    ``p50_ms`` and ``p95_ms`` are nearest-rank percentiles (a duration that was measured).
    """

    keys: dict[str, str | None]
    requests: int
    errors: int
    in_app: int
    external: int
    avg_ms: float
    p50_ms: float
    p95_ms: float
    max_ms: float


@dataclass(frozen=True, kw_only=True)
class UsagePoint:
    """The requests of one group in one time bucket (``start``: its first second, UTC)."""

    start: datetime
    keys: dict[str, str | None]
    requests: int
    errors: int
    in_app: int
    avg_ms: float
    max_ms: float

    @property
    def external(self) -> int:
        return self.requests - self.in_app


class _Epoch(FunctionElement[int]):
    """Whole seconds since 1970 of a ``UTCDateTime`` column, in each dialect's own words."""

    type = BigInteger()
    inherit_cache = True


@compiles(_Epoch, "sqlite")
def _epoch_sqlite(element: _Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(_Epoch, "postgresql")
def _epoch_postgresql(element: _Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(floor(extract(epoch FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


@dataclass(frozen=True, kw_only=True)
class AuditSearch:
    """What the web console's audit page filters on; ``None`` filters nothing."""

    server: str | None = None
    tool: str | None = None
    subject: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None  # keyset: only ids below this

    def conditions(self) -> builtins.list[ColumnElement[bool]]:
        c = audit_events.c
        found: builtins.list[ColumnElement[bool]] = [
            column == value
            for column, value in (
                (c.server, self.server),
                (c.tool, self.tool),
                (c.subject, self.subject),
                (c.outcome, self.outcome),
            )
            if value is not None
        ]
        if self.since is not None:
            found.append(c.at >= self.since)
        if self.until is not None:
            found.append(c.at < self.until)
        if self.before is not None:
            found.append(c.id < self.before)
        return found


_FIELDS = [c.name for c in audit_events.columns if c.name != "id"]


class AuditQueries:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add_many(self, events: Sequence[AuditEvent]) -> None:
        """Insert every event in one transaction."""
        if not events:
            return
        rows = [{name: getattr(event, name) for name in _FIELDS} for event in events]
        async with writing(self._engine, f"write {len(rows)} audit records") as conn:
            await conn.execute(insert(audit_events), rows)

    async def list_recent(
        self,
        limit: int = 20,
        *,
        server: str | None = None,
        since: datetime | None = None,
        subject: str | None = None,
    ) -> builtins.list[AuditRecord]:
        """The ``limit`` newest records, newest first, optionally of one server, since a time,
        or of one caller (``subject``)."""
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(max(limit, 1))
        if server is not None:
            query = query.where(audit_events.c.server == server)
        if subject is not None:
            query = query.where(audit_events.c.subject == subject)
        if since is not None:
            query = query.where(audit_events.c.at >= since)
        async with reading(self._engine, "list audit records") as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def tool_calls(
        self,
        limit: int | None = None,
        *,
        server: str | None = None,
        since: datetime | None = None,
        subject: str | None = None,
        failed_only: bool = False,
    ) -> builtins.list[AuditRecord]:
        """The ``limit`` newest ``tools/call`` records (all when ``None``), oldest first;
        optionally of one server, since a time, of one caller, or only those not ``ok``."""
        query = (
            select(audit_events)
            .where(audit_events.c.tool.is_not(None))
            .order_by(audit_events.c.id.desc())
        )
        if limit is not None:
            query = query.limit(max(limit, 1))
        if server is not None:
            query = query.where(audit_events.c.server == server)
        if subject is not None:
            query = query.where(audit_events.c.subject == subject)
        if since is not None:
            query = query.where(audit_events.c.at >= since)
        if failed_only:
            query = query.where(audit_events.c.outcome != "ok")
        async with reading(self._engine, "list tool calls") as conn:
            return [_record(row) for row in await conn.execute(query)][::-1]

    async def for_request(
        self, request_id: str, *, subject: str | None = None
    ) -> builtins.list[AuditRecord]:
        """Every record of one HTTP request (a batch holds several), in order; with
        ``subject``, only if that caller made it."""
        query = (
            select(audit_events)
            .where(audit_events.c.request_id == request_id)
            .order_by(audit_events.c.id)
        )
        if subject is not None:
            query = query.where(audit_events.c.subject == subject)
        async with reading(self._engine, f"read audit records of request {request_id}") as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def search(self, limit: int, search: AuditSearch) -> builtins.list[AuditRecord]:
        """Up to ``limit`` records matching ``search``, newest first; a page of many is read
        by keyset (``before``: the last id of the page before), never by offset."""
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(max(limit, 1))
        for condition in search.conditions():
            query = query.where(condition)
        async with reading(self._engine, "search audit records") as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def usage(
        self, since: datetime, by: UsageBy = "server", *, subject: str | None = None
    ) -> builtins.list[UsageRow]:
        """Requests since ``since`` summed per group, busiest first; ``by="tool"`` counts only
        ``tools/call`` requests; with ``subject``, only that caller's."""
        query = _usage_query(since, _USAGE_KEYS[by], tools_only=by == "tool", subject=subject)
        async with reading(self._engine, "sum the audit records") as conn:
            return [_usage_row(row, by) for row in await conn.execute(query)]

    async def usage_over_time(
        self,
        since: datetime,
        bucket_s: int,
        by: UsageBy = "server",
        *,
        subject: str | None = None,
        server: str | None = None,
    ) -> builtins.list[UsagePoint]:
        """Requests since ``since`` per time bucket of ``bucket_s`` seconds (aligned on the
        epoch) and group, oldest bucket first; a bucket with no request is not returned.
        ``by="tool"`` counts only ``tools/call``; ``subject`` and ``server`` filter."""
        keys = _USAGE_KEYS[by]
        size = literal_column(str(int(bucket_s)), BigInteger())
        bucket = (_Epoch(audit_events.c.at) // size * size).label("bucket")
        query = (
            select(
                bucket,
                *keys,
                func.count().label("requests"),
                _count_where(audit_events.c.outcome != "ok").label("errors"),
                _count_where(audit_events.c.origin == "in-app").label("in_app"),
                func.avg(audit_events.c.duration_ms).label("avg_ms"),
                func.max(audit_events.c.duration_ms).label("max_ms"),
            )
            .where(audit_events.c.at >= since)
            .group_by(bucket, *keys)
            .order_by(bucket, *keys)
        )
        if by == "tool":
            query = query.where(audit_events.c.tool.is_not(None))
        if subject is not None:
            query = query.where(audit_events.c.subject == subject)
        if server is not None:
            query = query.where(audit_events.c.server == server)
        async with reading(self._engine, "sum the audit records over time") as conn:
            return [_point(row, by) for row in await conn.execute(query)]


def _point(row: Row[Any], by: UsageBy) -> UsagePoint:
    data = row._mapping
    return UsagePoint(
        start=datetime.fromtimestamp(int(data["bucket"]), UTC),
        keys={key.name: data[key.name] for key in _USAGE_KEYS[by]},
        requests=int(data["requests"]),
        errors=int(data["errors"]),
        in_app=int(data["in_app"]),
        avg_ms=round(float(data["avg_ms"]), 3),
        max_ms=float(data["max_ms"]),
    )


def _usage_query(
    since: datetime,
    keys: tuple[ColumnElement[Any], ...],
    *,
    tools_only: bool,
    subject: str | None = None,
) -> Select[Any]:
    """One scan: window functions rank each group's durations (both SQLite 3.25+ and
    PostgreSQL have them; ``percentile_cont`` is PostgreSQL's only), then one GROUP BY.

    The window's rows are read first, by time, into a materialized CTE (SQLite 3.35+,
    PostgreSQL 12+): left to itself, SQLite ranks them by walking an index on the group's
    column in order, which reads the whole table to keep an hour of it."""
    c = audit_events.c
    recent = select(*keys, c.outcome, c.origin, c.duration_ms).where(c.at >= since)
    if tools_only:
        recent = recent.where(c.tool.is_not(None))
    if subject is not None:
        recent = recent.where(c.subject == subject)
    window = recent.cte("recent").prefix_with("MATERIALIZED")
    parts = [window.c[key.name] for key in keys]
    scan = select(
        *parts,
        window.c.outcome,
        window.c.origin,
        window.c.duration_ms,
        func.row_number().over(partition_by=parts, order_by=window.c.duration_ms).label("position"),
        func.count().over(partition_by=parts).label("n"),
    )
    ranked = scan.subquery()
    group = [ranked.c[key.name] for key in keys]
    position, n, duration = ranked.c.position, ranked.c.n, ranked.c.duration_ms
    requests = func.count().label("requests")
    return (
        select(
            *group,
            requests,
            _count_where(ranked.c.outcome != "ok").label("errors"),
            _count_where(ranked.c.origin == "in-app").label("in_app"),
            func.avg(duration).label("avg_ms"),
            # Nearest rank: the ceil(p * n)-th duration, in integer arithmetic.
            func.max(case((position == (n + 1) // 2, duration))).label("p50_ms"),
            func.max(case((position == (95 * n + 99) // 100, duration))).label("p95_ms"),
            func.max(duration).label("max_ms"),
        )
        .group_by(*group)
        .order_by(requests.desc(), *group)
    )


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.sum(case((condition, 1), else_=0))


def _usage_row(row: Row[Any], by: UsageBy) -> UsageRow:
    data = row._mapping
    names = [key.name for key in _USAGE_KEYS[by]]
    return UsageRow(
        keys={name: data[name] for name in names},
        requests=int(data["requests"]),
        errors=int(data["errors"]),
        in_app=int(data["in_app"]),
        external=int(data["requests"]) - int(data["in_app"]),
        avg_ms=round(float(data["avg_ms"]), 3),
        p50_ms=float(data["p50_ms"]),
        p95_ms=float(data["p95_ms"]),
        max_ms=float(data["max_ms"]),
    )


def _record(row: Row[Any]) -> AuditRecord:
    return AuditRecord(**row._mapping)
