"""Typed queries on ``skills``, ``skill_versions`` and ``skill_tags``: the marketplace's Agent
Skills (issue 14).

Ownership: a skill belongs to its ``owner`` (the subject that created it), who alone may change
or delete it; names are unique per owner. A ``shared`` skill is readable by every signed-in
user (``list``, ``visible``: the reader's own first, else the oldest shared one, a stable
choice for people, who see its owner). That order guards nothing, as anyone can share a skill
under any name: what must be the user's own (an agent's ``skills:``, which steer a model with
the user's scopes) is read with ``get``.

Versions: ``create`` writes version 1; each ``update`` writes the next version and keeps every
earlier one (``history``, ``version_numbers``, ``version_of``). An update names the version it
was made from and is refused with ``VersionConflict`` when another update came first
(optimistic concurrency): the check and the write run under one write lock per skill, so two
updates from the same version cannot both succeed, on SQLite as on PostgreSQL.

This layer stores what it is given: the marketplace (``atrium.servers.marketplace``) parses and
validates SKILL.md and bounds the files before anything reaches it.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, delete, insert, or_, select, true, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from atrium.store.errors import AlreadyExists, StoreError
from atrium.store.servers import Clock, utc_now
from atrium.store.tables import skill_tags, skill_versions, skills
from atrium.store.transaction import reading, writing

# The current version's content next to its skill row.
_CURRENT = and_(
    skill_versions.c.skill_id == skills.c.id, skill_versions.c.version == skills.c.version
)
_RECORDS = select(skills, skill_versions.c.content, skill_versions.c.files).join(
    skill_versions, _CURRENT
)


@dataclass(frozen=True)
class SkillDocument:
    """One version as the marketplace parsed it: ``content`` is the whole SKILL.md, ``name``,
    ``description`` and ``tags`` come from its frontmatter, ``files`` are the extra files as
    {relative path: text}."""

    name: str
    description: str
    content: str
    tags: tuple[str, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SkillSummary:
    """A skill without its content; ``version`` is the current one."""

    id: str
    owner: str
    name: str
    description: str
    shared: bool
    version: int
    tags: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SkillRecord(SkillSummary):
    """A skill with its current version's SKILL.md and files."""

    content: str = ""
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionRecord:
    """One stored version of a skill."""

    skill_id: str
    version: int
    content: str
    files: dict[str, str]
    created_at: datetime


class UnknownSkill(StoreError):
    """``owner`` has no skill called ``name``; nothing was written."""

    def __init__(self, url: URL | str, owner: str, name: str) -> None:
        self.kind = "skill"
        self.key = name
        self.owner = owner
        super().__init__(url, f"change skill '{name}'", "no skill of yours has this name")


class VersionConflict(StoreError):
    """The update was made from ``expected`` but the skill is at ``current`` now: another
    update came first. Nothing was written."""

    def __init__(self, url: URL | str, name: str, expected: int, current: int) -> None:
        self.key = name
        self.expected = expected
        self.current = current
        super().__init__(
            url,
            f"update skill '{name}' from version {expected}",
            f"it is at version {current} now: another update came first",
        )


class SkillQueries:
    """Create, read, version and delete skills; every failure of the database is a
    ``StoreError``."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    async def create(
        self, owner: str, document: SkillDocument, *, shared: bool = False
    ) -> SkillRecord:
        """Store ``document`` as version 1 of a new skill of ``owner``; ``AlreadyExists`` when
        ``owner`` has a skill of that name."""
        _check(owner, document)
        now = self._clock()
        skill_id = uuid.uuid4().hex
        action = f"add skill '{document.name}' of {owner}"
        async with writing(self._engine, action, lock=_lock(owner, document.name)) as conn:
            if await _find(conn, owner, document.name) is not None:
                raise AlreadyExists(self._engine.url, "skill", document.name)
            await conn.execute(
                insert(skills).values(
                    id=skill_id,
                    owner=owner,
                    name=document.name,
                    description=document.description,
                    shared=shared,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            await _write_version(conn, skill_id, 1, document, now)
        return _new_record(skill_id, owner, document, shared, 1, now, now)

    async def update(
        self,
        owner: str,
        name: str,
        document: SkillDocument,
        *,
        expected_version: int,
        shared: bool | None = None,
    ) -> SkillRecord:
        """Write ``document`` as the next version of ``owner``'s skill ``name``, made from
        ``expected_version``; ``shared`` None keeps the sharing as it is. ``UnknownSkill`` or
        ``VersionConflict`` when it cannot be, and then nothing is written."""
        _check(owner, document)
        if document.name != name:
            raise ValueError(f"the document is skill '{document.name}', not '{name}'")
        now = self._clock()
        action = f"update skill '{name}' of {owner}"
        async with writing(self._engine, action, lock=_lock(owner, name)) as conn:
            row = await _find(conn, owner, name)
            if row is None:
                raise UnknownSkill(self._engine.url, owner, name)
            if row.version != expected_version:
                raise VersionConflict(self._engine.url, name, expected_version, row.version)
            version = row.version + 1
            keep_shared = bool(row.shared) if shared is None else shared
            await conn.execute(
                update(skills)
                .where(skills.c.id == row.id)
                .values(
                    version=version,
                    description=document.description,
                    shared=keep_shared,
                    updated_at=now,
                )
            )
            await conn.execute(delete(skill_tags).where(skill_tags.c.skill_id == row.id))
            await _write_version(conn, row.id, version, document, now)
        return _new_record(row.id, owner, document, keep_shared, version, row.created_at, now)

    async def get(self, owner: str, name: str) -> SkillRecord | None:
        """``owner``'s own skill ``name``, or None."""
        query = _RECORDS.where(skills.c.owner == owner, skills.c.name == name)
        async with reading(self._engine, f"read skill '{name}' of {owner}") as conn:
            row = (await conn.execute(query)).first()
            return None if row is None else (await _records(conn, [row]))[0]

    async def visible(
        self, subject: str, name: str, *, owner: str | None = None
    ) -> SkillRecord | None:
        """The skill ``name`` as ``subject`` reads it: their own, else the oldest shared one;
        with ``owner``, only that owner's (if it is ``subject``'s or shared). None if none."""
        query = _RECORDS.where(skills.c.name == name, _readable_by(subject))
        if owner is not None:
            query = query.where(skills.c.owner == owner)
        # Own first (False sorts before True), then the oldest.
        query = query.order_by(skills.c.owner != subject, skills.c.created_at, skills.c.id)
        async with reading(self._engine, f"read skill '{name}'") as conn:
            row = (await conn.execute(query.limit(1))).first()
            return None if row is None else (await _records(conn, [row]))[0]

    async def list(
        self,
        subject: str,
        *,
        text: str | None = None,
        tag: str | None = None,
        owned_only: bool = False,
        after: tuple[str, str] | None = None,
        limit: int = 50,
    ) -> builtins.list[SkillSummary]:
        """Up to ``limit`` skills ``subject`` may read (own and shared; only own with
        ``owned_only``), ordered by name then id, from after ``after`` = (name, id) of the last
        one seen. ``text`` matches name, description or the current SKILL.md (any case);
        ``tag`` one of the current tags."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        query = select(skills).join(skill_versions, _CURRENT).where(_readable_by(subject))
        if owned_only:
            query = query.where(skills.c.owner == subject)
        if text:
            query = query.where(
                or_(
                    skills.c.name.icontains(text, autoescape=True),
                    skills.c.description.icontains(text, autoescape=True),
                    skill_versions.c.content.icontains(text, autoescape=True),
                )
            )
        if tag:
            tagged = select(skill_tags.c.skill_id).where(skill_tags.c.tag == tag)
            query = query.where(skills.c.id.in_(tagged))
        if after is not None:
            name, skill_id = after
            query = query.where(
                or_(skills.c.name > name, and_(skills.c.name == name, skills.c.id > skill_id))
            )
        query = query.order_by(skills.c.name, skills.c.id).limit(limit)
        async with reading(self._engine, f"list the skills {subject} may read") as conn:
            rows = (await conn.execute(query)).all()
            tags = await _tags_of(conn, [row.id for row in rows])
        return [_summary(row, tags.get(row.id, ())) for row in rows]

    async def owned(self, owner: str) -> builtins.list[SkillRecord]:
        """Every skill of ``owner`` with its current content, by name."""
        query = _RECORDS.where(skills.c.owner == owner).order_by(skills.c.name)
        async with reading(self._engine, f"read the skills of {owner}") as conn:
            return await _records(conn, (await conn.execute(query)).all())

    async def history(self, skill_id: str) -> builtins.list[VersionRecord]:
        """Every version of the skill ``skill_id`` with its content, newest first."""
        query = select(skill_versions).where(skill_versions.c.skill_id == skill_id)
        async with reading(self._engine, f"read the versions of skill {skill_id}") as conn:
            rows = await conn.execute(query.order_by(skill_versions.c.version.desc()))
            return [VersionRecord(**row._mapping) for row in rows]

    async def version_numbers(self, skill_id: str) -> builtins.list[int]:
        """The skill's version numbers, newest first, without loading any content."""
        query = select(skill_versions.c.version).where(skill_versions.c.skill_id == skill_id)
        async with reading(self._engine, f"read the versions of skill {skill_id}") as conn:
            rows = await conn.execute(query.order_by(skill_versions.c.version.desc()))
            return [int(number) for number in rows.scalars()]

    async def version_of(self, skill_id: str, version: int) -> VersionRecord | None:
        """Version ``version`` of the skill ``skill_id``, or None."""
        query = select(skill_versions).where(
            skill_versions.c.skill_id == skill_id, skill_versions.c.version == version
        )
        async with reading(self._engine, f"read version {version} of skill {skill_id}") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else VersionRecord(**row._mapping)

    async def delete(self, owner: str, name: str) -> bool:
        """Delete ``owner``'s skill ``name`` with all its versions; False if there was none."""
        action = f"delete skill '{name}' of {owner}"
        async with writing(self._engine, action, lock=_lock(owner, name)) as conn:
            row = await _find(conn, owner, name)
            if row is None:
                return False
            # Dependent rows too: SQLite enforces the cascade only with PRAGMA foreign_keys on.
            await conn.execute(delete(skill_tags).where(skill_tags.c.skill_id == row.id))
            await conn.execute(delete(skill_versions).where(skill_versions.c.skill_id == row.id))
            await conn.execute(delete(skills).where(skills.c.id == row.id))
        return True


def _readable_by(subject: str) -> Any:
    return or_(skills.c.owner == subject, skills.c.shared == true())


def _lock(owner: str, name: str) -> str:
    return f"skill:{owner}:{name}"


def _check(owner: str, document: SkillDocument) -> None:
    # SQLite stores an overlong string whole where PostgreSQL refuses it: refused on both.
    for column, value in (
        (skills.c.owner, owner),
        (skills.c.name, document.name),
        (skills.c.description, document.description),
        *((skill_tags.c.tag, tag) for tag in document.tags),
    ):
        length = getattr(column.type, "length", None)
        if isinstance(length, int) and len(value) > length:
            raise ValueError(f"{column} holds at most {length} characters, not {len(value)}")
    if not document.name or not owner:
        raise ValueError("a skill needs an owner and a name")


async def _find(conn: AsyncConnection, owner: str, name: str) -> Row[Any] | None:
    query = select(skills).where(skills.c.owner == owner, skills.c.name == name)
    return (await conn.execute(query)).first()


async def _write_version(
    conn: AsyncConnection, skill_id: str, version: int, document: SkillDocument, now: datetime
) -> None:
    await conn.execute(
        insert(skill_versions).values(
            skill_id=skill_id,
            version=version,
            content=document.content,
            files=dict(document.files),
            created_at=now,
        )
    )
    tags = sorted(set(document.tags))
    if tags:
        await conn.execute(insert(skill_tags), [{"skill_id": skill_id, "tag": t} for t in tags])


async def _tags_of(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
    wanted = builtins.list(ids)
    if not wanted:
        return {}
    query = (
        select(skill_tags.c.skill_id, skill_tags.c.tag)
        .where(skill_tags.c.skill_id.in_(wanted))
        .order_by(skill_tags.c.tag)
    )
    found: dict[str, builtins.list[str]] = {}
    for skill_id, tag in await conn.execute(query):
        found.setdefault(skill_id, []).append(tag)
    return {skill_id: tuple(tags) for skill_id, tags in found.items()}


async def _records(conn: AsyncConnection, rows: Iterable[Row[Any]]) -> builtins.list[SkillRecord]:
    rows = builtins.list(rows)
    tags = await _tags_of(conn, [row.id for row in rows])
    return [
        SkillRecord(
            **vars(_summary(row, tags.get(row.id, ()))),
            content=row.content,
            files=dict(row.files or {}),
        )
        for row in rows
    ]


def _summary(row: Row[Any], tags: tuple[str, ...]) -> SkillSummary:
    return SkillSummary(**{c.name: row._mapping[c.name] for c in skills.columns}, tags=tags)


def _new_record(
    skill_id: str,
    owner: str,
    document: SkillDocument,
    shared: bool,
    version: int,
    created_at: datetime,
    updated_at: datetime,
) -> SkillRecord:
    return SkillRecord(
        id=skill_id,
        owner=owner,
        name=document.name,
        description=document.description,
        shared=shared,
        version=version,
        tags=tuple(sorted(set(document.tags))),
        created_at=created_at,
        updated_at=updated_at,
        content=document.content,
        files=dict(document.files),
    )
