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

from sqlalchemy import ColumnElement, Row, Select, case, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

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


def _usage_query(
    since: datetime,
    keys: tuple[ColumnElement[Any], ...],
    *,
    tools_only: bool,
    subject: str | None = None,
) -> Select[Any]:
    """One scan: window functions rank each group's durations (both SQLite 3.25+ and
    PostgreSQL have them; ``percentile_cont`` is PostgreSQL's only), then one GROUP BY."""
    scan = select(
        *keys,
        audit_events.c.outcome,
        audit_events.c.origin,
        audit_events.c.duration_ms,
        func.row_number()
        .over(partition_by=keys, order_by=audit_events.c.duration_ms)
        .label("position"),
        func.count().over(partition_by=keys).label("n"),
    ).where(audit_events.c.at >= since)
    if tools_only:
        scan = scan.where(audit_events.c.tool.is_not(None))
    if subject is not None:
        scan = scan.where(audit_events.c.subject == subject)
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
