"""Typed queries on ``audit_events``: the gateway's record of every JSON-RPC request.

Written in batches (one INSERT of many rows) by the gateway's background writer, and read
newest first by ``atrium infra logs request list`` and ``infra logs audit``.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.store.errors import translated
from atrium.store.tables import audit_events

Outcome = Literal["ok", "tool_error", "jsonrpc_error", "http_error"]
Origin = Literal["external", "in-app"]


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


_FIELDS = [c.name for c in audit_events.columns if c.name != "id"]


class AuditQueries:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add_many(self, events: Sequence[AuditEvent]) -> None:
        """Insert every event in one transaction."""
        if not events:
            return
        rows = [{name: getattr(event, name) for name in _FIELDS} for event in events]
        with translated(self._engine.url, f"write {len(rows)} audit records"):
            async with self._engine.begin() as conn:
                await conn.execute(insert(audit_events), rows)

    async def list_recent(
        self, limit: int = 20, *, server: str | None = None, since: datetime | None = None
    ) -> builtins.list[AuditRecord]:
        """The ``limit`` newest records, newest first, optionally of one server or since a time."""
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(max(limit, 1))
        if server is not None:
            query = query.where(audit_events.c.server == server)
        if since is not None:
            query = query.where(audit_events.c.at >= since)
        with translated(self._engine.url, "list audit records"):
            async with self._engine.connect() as conn:
                return [_record(row) for row in await conn.execute(query)]

    async def for_request(self, request_id: str) -> builtins.list[AuditRecord]:
        """Every record of one HTTP request (a batch holds several), in order."""
        query = (
            select(audit_events)
            .where(audit_events.c.request_id == request_id)
            .order_by(audit_events.c.id)
        )
        with translated(self._engine.url, f"read audit records of request {request_id}"):
            async with self._engine.connect() as conn:
                return [_record(row) for row in await conn.execute(query)]


def _record(row: Row[Any]) -> AuditRecord:
    return AuditRecord(**row._mapping)
