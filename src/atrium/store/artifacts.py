"""Typed queries on ``artifacts``: what MCP servers produced and kept.

An artifact is written once and never changed: the atrium server stores each CLI run it makes
(``kind="cli-run"``) so that a run can be looked at again after the tool call has answered.
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.store.servers import Clock, utc_now
from atrium.store.tables import artifacts
from atrium.store.transaction import reading, writing


@dataclass(frozen=True)
class ArtifactRecord:
    """One stored artifact; ``content`` is plain JSON whose shape ``kind`` names."""

    id: str
    server: str
    tool: str
    kind: str
    title: str
    content: dict[str, Any]
    created_at: datetime


class ArtifactQueries:
    """Add and read ``ArtifactRecord``s; every failure of the database is a ``StoreError``."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    async def add(
        self, *, server: str, tool: str, kind: str, title: str, content: dict[str, Any]
    ) -> ArtifactRecord:
        """Store a new artifact with a fresh id and the current time; return it."""
        record = ArtifactRecord(
            id=str(uuid.uuid4()),
            server=server,
            tool=tool,
            kind=kind,
            title=title,
            content=content,
            created_at=self._clock(),
        )
        # A plain transaction, without a lock: an insert under a fresh random key reads
        # nothing first, so there is no read-then-write race for a lock to prevent.
        async with writing(self._engine, f"save an artifact of {server}/{tool}") as conn:
            await conn.execute(insert(artifacts).values(**_values(record)))
        return record

    async def get(self, artifact_id: str) -> ArtifactRecord | None:
        """The artifact with ``artifact_id``, or None."""
        query = select(artifacts).where(artifacts.c.id == artifact_id)
        async with reading(self._engine, f"read artifact '{artifact_id}'") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def list_recent(self, limit: int = 20) -> builtins.list[ArtifactRecord]:
        """The ``limit`` newest artifacts, newest first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        query = (
            select(artifacts)
            .order_by(artifacts.c.created_at.desc(), artifacts.c.id.desc())
            .limit(limit)
        )
        async with reading(self._engine, "list artifacts") as conn:
            return [_record(row) for row in await conn.execute(query)]


def _values(record: ArtifactRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "server": record.server,
        "tool": record.tool,
        "kind": record.kind,
        "title": record.title,
        "content": record.content,
        "created_at": record.created_at,
    }


def _record(row: Row[Any]) -> ArtifactRecord:
    return ArtifactRecord(**row._mapping)
