"""Typed queries on ``audit_events``: the gateway's record of every JSON-RPC request.

Written in batches (one INSERT of many rows) by the gateway's background writer, with their
hourly sums (``atrium.store.rollup``) in the same transaction; read newest first by ``atrium
infra logs request list`` and ``infra logs audit``, and summed per server, tool or client by
``atrium infra usage`` and the console's usage page.

A batch the database refuses for what it holds (a value, a constraint) raises
``RecordRefused``; any other failure is the database's own (it is down, locked, unreachable),
and the writer retries. A record refused alone is stored ``reduced`` (``audit_rows``).
``stored_request_ids``
lets the writer replay its journal without storing twice what was committed just before a
crash (``atrium.gateway.journal``).
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, CompoundSelect, Row, Select, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.store import rollup
from atrium.store.audit_rows import REQUEST_ID_CHARS, RecordRefused, fitted, refused, storable
from atrium.store.audit_sqlite import SqliteAuditWriter
from atrium.store.errors import StoreError, masked_url
from atrium.store.rollup import Scope
from atrium.store.sqlite import database_path
from atrium.store.tables import audit_events
from atrium.store.transaction import reading, writing

Outcome = Literal["ok", "tool_error", "jsonrpc_error", "http_error"]
Origin = Literal["external", "in-app"]
UsageBy = Literal["server", "tool", "client"]

# The columns each ``UsageBy`` groups on: a tool's name means something only with its server.
_USAGE_KEYS: dict[UsageBy, tuple[str, ...]] = {
    "server": ("server",),
    "tool": ("server", "tool"),
    "client": ("client_id",),
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
    ``p50_ms`` and ``p95_ms`` are nearest-rank percentiles read from a histogram: exact, or
    off by less than a tenth (``atrium.store.rollup``).
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


_LOOKUP_CHUNK = 500  # bound parameters per query: far below either database's limit


class AuditQueries:
    def __init__(self, engine: AsyncEngine, *, direct: bool = True) -> None:
        """``direct``: on SQLite in a file, batches go in one hop to a thread of their own
        (``atrium.store.audit_sqlite``); else, as on PostgreSQL, through SQLAlchemy."""
        self._engine = engine
        sqlite = direct and engine.dialect.name == "sqlite"
        path = database_path(engine.url) if sqlite else None
        self._sqlite = (
            SqliteAuditWriter(path, engine.dialect, masked_url(engine.url))
            if path is not None
            else None
        )

    async def close(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.close()

    async def add_many(self, events: Sequence[AuditEvent]) -> None:
        """Insert every event (made ``storable``) and add their hourly sums, in one
        transaction."""
        if not events:
            return
        if self._sqlite is not None:
            rows = [storable(event, json_text=True) for event in events]
            await self._sqlite.write(rows, rollup.increments(rows))
            return
        rows = [storable(event) for event in events]
        try:
            async with writing(self._engine, f"write {len(rows)} audit records") as conn:
                await conn.execute(insert(audit_events), rows)
                await rollup.add(conn, rows)
        except StoreError as exc:
            if refused(exc.__cause__):
                raise RecordRefused(exc.url, exc.action, exc.reason) from exc.__cause__
            raise

    async def stored_request_ids(self, request_ids: Collection[str]) -> set[str]:
        """Which of ``request_ids`` have records stored (``audit_events.request_id`` is
        indexed): a journal replayed after a crash skips the requests whose batch was committed
        just before it."""
        # As stored: an id the column could not hold was stored cut (``storable``).
        as_stored = {fitted(each, REQUEST_ID_CHARS): each for each in request_ids}
        keys = list(as_stored)
        found: set[str] = set()
        column = audit_events.c.request_id
        async with reading(self._engine, f"look up {len(keys)} audit request ids") as conn:
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                query = select(column).where(column.in_(keys[start : start + _LOOKUP_CHUNK]))
                found.update(as_stored[row[0]] for row in await conn.execute(query.distinct()))
        return found

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
        keys = _USAGE_KEYS[by]
        query = rollup.sums(Scope(since=since, subject=subject), keys, bins=True)
        async with reading(self._engine, "sum the audit records") as conn:
            return _busiest_first(_with_latency(await conn.execute(query), keys))

    async def busiest(
        self,
        since: datetime,
        by: Literal["server", "tool"],
        limit: int,
        *,
        subject: str | None = None,
    ) -> tuple[builtins.list[UsageRow], int]:
        """The busiest ``limit`` rows of ``usage`` and how many groups it has: the latency of
        only the rows shown is read (a server may have thousands of tools)."""
        keys = _USAGE_KEYS[by]
        scope = Scope(since=since, subject=subject)
        async with reading(self._engine, "sum the audit records") as conn:
            top = (await conn.execute(rollup.busiest(scope, keys, max(limit, 1)))).all()
            if not top:
                return [], 0
            chosen = replace(scope, groups=[tuple(row[: len(keys)]) for row in top])
            latency = await conn.execute(rollup.sums(chosen, keys, bins=True))
            return _busiest_first(_with_latency(latency, keys)), int(top[0].groups)

    async def usage_over_time(
        self,
        since: datetime,
        bucket_s: int,
        by: UsageBy = "server",
        *,
        subject: str | None = None,
        server: str | None = None,
        busiest: int | None = None,
    ) -> builtins.list[UsagePoint]:
        """Requests since ``since`` per time bucket of ``bucket_s`` seconds (aligned on the
        epoch) and group, oldest bucket first; a bucket with no request is not returned.
        ``by="tool"`` counts only ``tools/call``; ``subject`` and ``server`` filter. With
        ``busiest``, only that many groups (most requests in all) keep points of their own;
        the others' are summed per bucket into points whose keys are all ``None``."""
        keys = _USAGE_KEYS[by]
        scope = Scope(since=since, subject=subject, server=server)
        if busiest is None:
            query: Select[Any] | CompoundSelect[Any] = rollup.sums(scope, keys, bucket_s=bucket_s)
        else:
            query = rollup.busiest_over_time(scope, keys, bucket_s, busiest)
        async with reading(self._engine, "sum the audit records over time") as conn:
            return [_point(row, keys) for row in await conn.execute(query)]


def _rank(requests: int, keys: Sequence[str | None]) -> tuple[Any, ...]:
    """Busiest first, then by name (no name first, as SQL orders NULL on SQLite)."""
    return (-requests, *((key is not None, key or "") for key in keys))


def _busiest_first(rows: builtins.list[UsageRow]) -> builtins.list[UsageRow]:
    return sorted(rows, key=lambda row: _rank(row.requests, list(row.keys.values())))


def _with_latency(rows: Iterable[Row[Any]], keys: Sequence[str]) -> builtins.list[UsageRow]:
    """One ``UsageRow`` per group of ``rollup.sums(..., bins=True)`` rows (the keys, the
    latency bin, then the sums)."""
    n = len(keys)
    groups: dict[tuple[Any, ...], builtins.list[tuple[Any, ...]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[:n]), []).append(tuple(row[n + 1 :]))
    return [_usage_row(dict(zip(keys, group, strict=True)), bins) for group, bins in groups.items()]


def _usage_row(keys: dict[str, Any], bins: builtins.list[tuple[Any, ...]]) -> UsageRow:
    """The row of a group from its latency bins, in bin order, each with its sums."""
    counts, errors, in_app, totals, least, most = zip(*bins, strict=True)
    requests, apps = sum(counts), sum(in_app)
    histogram = list(zip(counts, least, most, strict=True))
    return UsageRow(
        keys=keys,
        requests=requests,
        errors=sum(errors),
        in_app=apps,
        external=requests - apps,
        avg_ms=round(sum(totals) / requests, 3),
        p50_ms=rollup.percentile(histogram, 50, requests),
        p95_ms=rollup.percentile(histogram, 95, requests),
        max_ms=float(max(most)),
    )


def _point(row: Row[Any], keys: Sequence[str]) -> UsagePoint:
    """A ``UsagePoint`` of a ``rollup.sums(..., bucket_s=...)`` row: the bucket, the keys,
    then the sums (PostgreSQL's sum of sums is a ``numeric``: a ``Decimal`` here)."""
    requests = int(row.requests)
    return UsagePoint(
        start=datetime.fromtimestamp(int(row.bucket), UTC),
        keys={name: row[index + 1] for index, name in enumerate(keys)},
        requests=requests,
        errors=int(row.errors),
        in_app=int(row.in_app),
        avg_ms=round(float(row.total_ms) / requests, 3),
        max_ms=float(row.max_ms),
    )


def _record(row: Row[Any]) -> AuditRecord:
    return AuditRecord(**row._mapping)
