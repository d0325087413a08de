"""Typed queries on ``blog_posts`` and ``content_documents``: blog posts and full-text search.

Who sees what: a post belongs to its ``owner`` (a caller's ``sub``); a published post is
shared with everyone, a draft is its owner's alone. Search reads ``content_documents``, one row
per post, playbook and skill, and returns only what ``subject`` may see: project documents
(``owner`` NULL: the playbooks), shared ones (published posts, shared skills) and its own.

Keeping the index in step: a post's document is written in the transaction that saves the
post; playbooks (files, read by the caller) and skills (the marketplace's ``skills`` tables)
are copied in by ``refresh`` (``sync_documents`` for one kind), which writes only what changed.
The full-text index over the documents is the database's own (migration 0010): FTS5 with
``bm25`` and ``snippet`` on SQLite, a ``tsvector`` with ``ts_rank`` and ``ts_headline`` on
PostgreSQL. A higher ``SearchHit.rank`` is a better match; ranks compare within one search.

Queries come from users and are never handed to a query parser: they are cut into words
(letters and digits), each quoted for FTS5 or made a ``plainto_tsquery``, and OR-ed, so
``"``, ``NEAR(`` or ``*`` are plain text and the best matches are those with most words.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Row, and_, delete, insert, or_, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from atrium.store.errors import AlreadyExists
from atrium.store.servers import Clock, utc_now
from atrium.store.tables import blog_posts, content_documents, skill_versions, skills
from atrium.store.transaction import reading, writing

Kind = Literal["post", "playbook", "skill"]
PostStatus = Literal["draft", "published"]

MAX_TERMS = 16
# Words that match nearly every document and only blur an OR-query's ranking; dropped unless
# the query is nothing else (PostgreSQL's english configuration drops them anyway).
STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be by do for from how i in is it of on or the this to what when"
        " where which who why with",
    )
)
_WORD = re.compile(r"[^\W_]+")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_FTS = "content_documents_fts"
_SEARCH_OBJECTS = (_FTS, "search", "ix_content_documents_search")

_VISIBLE = "(d.owner IS NULL OR d.shared OR d.owner = :subject)"
_SQLITE_SEARCH = text(
    f"SELECT d.kind, d.key, d.title, d.headings, -bm25({_FTS}, 4.0, 1.0) AS score,"
    f" snippet({_FTS}, 1, '**', '**', '…', 24) AS snippet"
    f" FROM {_FTS} JOIN content_documents d ON d.id = {_FTS}.rowid"
    f" WHERE {_FTS} MATCH :query AND {_VISIBLE}"
    " ORDER BY score DESC, d.kind, d.key LIMIT :limit"
)
_HEADLINE = 'StartSel=**, StopSel=**, MaxWords=30, MaxFragments=2, FragmentDelimiter=" … "'


@dataclass(frozen=True)
class SearchHit:
    """A document that matched: ``kind`` post | playbook | skill, its ``key`` (a post's slug,
    a playbook's name, a skill's id), and a snippet with the matched words in ``**``."""

    kind: str
    key: str
    title: str
    snippet: str
    rank: float


@dataclass(frozen=True)
class Source:
    """A hit and the Markdown headings of its document (``"## Setup"``), for outlines."""

    hit: SearchHit
    headings: tuple[str, ...]


@dataclass(frozen=True)
class IndexDocument:
    """A document to index; ``owner`` None is the project's, read by every caller."""

    kind: Kind
    key: str
    title: str
    body: str
    owner: str | None = None
    shared: bool = False


@dataclass(frozen=True)
class PostRecord:
    slug: str
    owner: str
    title: str
    body: str
    tags: tuple[str, ...]
    status: PostStatus
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None

    def visible_to(self, subject: str | None) -> bool:
        return self.status == "published" or (subject is not None and subject == self.owner)


class SlugTaken(AlreadyExists):
    """A post with ``slug`` is stored: the caller's own (``by_caller``: save it again with
    ``overwrite``) or another owner's (never overwritten); nothing was written."""

    def __init__(self, url: URL | str, slug: str, *, by_caller: bool) -> None:
        self.by_caller = by_caller
        super().__init__(url, "blog post", slug)


class ContentQueries:
    """Blog posts and the search over the project's content; every failure of the database is
    a ``StoreError``."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    async def save_post(
        self,
        *,
        owner: str,
        slug: str,
        title: str,
        body: str,
        tags: Sequence[str] = (),
        status: PostStatus = "draft",
        overwrite: bool = False,
    ) -> PostRecord:
        """Store the post, or replace the owner's post with this slug when ``overwrite``;
        ``SlugTaken`` otherwise. Keeps ``created_at``; ``published_at`` is when it was first
        published since it was last a draft."""
        _check_post(owner, slug, title, status)
        now = self._clock()
        action = f"save blog post '{slug}'"
        async with writing(self._engine, action, lock=f"blog_post:{slug}") as conn:
            query = select(blog_posts).where(blog_posts.c.slug == slug)
            row = (await conn.execute(query)).first()
            if row is not None and (row.owner != owner or not overwrite):
                raise SlugTaken(self._engine.url, slug, by_caller=row.owner == owner)
            before = None if row is None else _post(row)
            record = PostRecord(
                slug=slug,
                owner=owner,
                title=title,
                body=body,
                tags=tuple(tags),
                status=status,
                created_at=now if before is None else before.created_at,
                updated_at=now,
                published_at=_published_at(before, status, now),
            )
            values = {c.name: getattr(record, c.name) for c in blog_posts.columns}
            values["tags"] = list(record.tags)
            if before is None:
                await conn.execute(insert(blog_posts).values(**values))
            else:
                await conn.execute(update(blog_posts).where(blog_posts.c.slug == slug), values)
            await _put(conn, _post_document(record), None, now)
        return record

    async def get_post(self, slug: str) -> PostRecord | None:
        """The post ``slug`` whoever owns it, or None; check ``visible_to`` before showing it."""
        query = select(blog_posts).where(blog_posts.c.slug == slug)
        async with reading(self._engine, f"read blog post '{slug}'") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _post(row)

    async def list_posts(
        self,
        *,
        subject: str | None,
        mine_only: bool = False,
        status: PostStatus | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> builtins.list[PostRecord]:
        """The posts ``subject`` may read (its own, and every published one), or only its
        own, most recently updated first."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be at least 1 and offset at least 0: {limit}, {offset}")
        mine = blog_posts.c.owner == subject
        query = (
            select(blog_posts)
            .where(mine if mine_only else or_(mine, blog_posts.c.status == "published"))
            .order_by(blog_posts.c.updated_at.desc(), blog_posts.c.slug)
            .limit(limit)
            .offset(offset)
        )
        if status is not None:
            query = query.where(blog_posts.c.status == status)
        async with reading(self._engine, "list blog posts") as conn:
            return [_post(row) for row in await conn.execute(query)]

    async def search(self, query: str, *, subject: str | None, limit: int = 10) -> list[SearchHit]:
        """The documents ``subject`` may see (None: an anonymous caller) that match ``query``,
        best first; none when the query has no words."""
        return [source.hit for source in await self.sources(query, subject=subject, limit=limit)]

    async def sources(
        self, query: str, *, subject: str | None, limit: int = 10
    ) -> builtins.list[Source]:
        """``search``, with the headings of each document."""
        if not 1 <= limit <= 100:
            raise ValueError(f"limit must be between 1 and 100, not {limit}")
        terms = search_terms(query)
        if not terms:
            return []
        async with reading(self._engine, "search the project's content") as conn:
            if conn.dialect.name == "sqlite":
                match = " OR ".join(f'"{term}"' for term in terms)
                params: dict[str, Any] = {"query": match, "subject": subject, "limit": limit}
                rows = await conn.execute(_SQLITE_SEARCH, params)
            else:
                params = {f"t{n}": term for n, term in enumerate(terms)}
                params |= {"subject": subject, "limit": limit, "options": _HEADLINE}
                rows = await conn.execute(_postgres_search(len(terms)), params)
            return [_source(row) for row in rows]

    async def sync_documents(self, kind: Kind, documents: Sequence[IndexDocument]) -> int:
        """Make the indexed documents of ``kind`` (not posts: ``save_post`` keeps those in
        step) exactly ``documents``; how many rows changed."""
        if kind == "post" or any(document.kind != kind for document in documents):
            raise ValueError(f"sync_documents({kind!r}) takes {kind} documents, and never posts")
        wanted = {document.key: document for document in documents}
        selected = select(content_documents.c.key, content_documents.c.fingerprint)
        selected = selected.where(content_documents.c.kind == kind)
        async with reading(self._engine, f"read the indexed {kind}s") as conn:
            stored = {row.key: row.fingerprint for row in await conn.execute(selected)}
        if stored == {key: fingerprint(doc) for key, doc in wanted.items()}:
            return 0
        now = self._clock()
        action = f"index the {kind}s"
        async with writing(self._engine, action, lock=f"content_documents:{kind}") as conn:
            current = {row.key: row.fingerprint for row in await conn.execute(selected)}
            changed = 0
            for document in wanted.values():
                changed += await _put(conn, document, current.get(document.key, ""), now)
            gone = [key for key in current if key not in wanted]
            if gone:
                where = and_(content_documents.c.kind == kind, content_documents.c.key.in_(gone))
                changed += (await conn.execute(delete(content_documents).where(where))).rowcount
        return changed

    async def refresh(self, playbooks: Sequence[IndexDocument]) -> int:
        """Index ``playbooks`` (read from the project by the caller) and the current version
        of every stored skill; how many rows changed."""
        query = select(
            skills.c.id, skills.c.owner, skills.c.name, skills.c.shared, skill_versions.c.content
        ).join(
            skill_versions,
            and_(
                skill_versions.c.skill_id == skills.c.id,
                skill_versions.c.version == skills.c.version,
            ),
        )
        async with reading(self._engine, "read the skills to index") as conn:
            found = [
                IndexDocument("skill", row.id, row.name, row.content, row.owner, row.shared)
                for row in await conn.execute(query)
            ]
        return await self.sync_documents("playbook", playbooks) + await self.sync_documents(
            "skill", found
        )


def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Alembic's ``include_name`` hook: False for the full-text index of migration 0010 (one
    dialect's each, so not in ``metadata``), True for everything else."""
    if type_ == "table":
        return not (name or "").startswith(_FTS)
    if parent_names.get("table_name") == content_documents.name:
        return name not in _SEARCH_OBJECTS
    return True


def search_terms(query: str) -> builtins.list[str]:
    """The distinct words of ``query``, lowercased, without stop words unless that leaves
    none; at most ``MAX_TERMS``."""
    words = _WORD.findall(unicodedata.normalize("NFKC", query).casefold())
    distinct = list(dict.fromkeys(words))
    kept = [word for word in distinct if word not in STOP_WORDS] or distinct
    return kept[:MAX_TERMS]


def markdown_headings(body: str) -> tuple[str, ...]:
    """The ATX headings of a Markdown ``body`` outside fenced code, as ``"## Title"``."""
    found: builtins.list[str] = []
    fence: str | None = None
    for line in body.splitlines():
        opening = _FENCE.match(line)
        if opening and (fence is None or opening.group(1).startswith(fence)):
            fence = None if fence is not None else opening.group(1)[:3]
            continue
        heading = None if fence is not None else _HEADING.match(line)
        if heading:
            found.append(f"{heading.group(1)} {heading.group(2)}")
    return tuple(found)


def fingerprint(document: IndexDocument) -> str:
    """What tells an indexed document changed: its text and who may see it."""
    fields = [document.owner, document.shared, document.title, document.body]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()


def _postgres_search(terms: int) -> Any:
    # One plainto_tsquery per word, OR-ed (||): each word is text to the parser, never syntax.
    query = " || ".join(f"plainto_tsquery('english'::regconfig, :t{n})" for n in range(terms))
    visible = _VISIBLE.replace("d.", "c.")
    return text(
        "SELECT d.kind, d.key, d.title, d.headings, hit.score,"
        " ts_headline('english'::regconfig, d.body, hit.query, :options) AS snippet"
        " FROM (SELECT c.id, q.query, ts_rank(c.search, q.query) AS score"
        f" FROM content_documents c, (SELECT {query} AS query) q"
        f" WHERE c.search @@ q.query AND {visible}"
        " ORDER BY score DESC, c.kind, c.key LIMIT :limit) hit"
        " JOIN content_documents d ON d.id = hit.id ORDER BY hit.score DESC, d.kind, d.key"
    )


async def _put(
    conn: AsyncConnection, document: IndexDocument, stored: str | None, now: datetime
) -> int:
    """Insert or update one document (``stored``: its stored fingerprint, "" if none, None if
    not looked up); 1 if a row was written."""
    where = and_(content_documents.c.kind == document.kind, content_documents.c.key == document.key)
    if stored is None:
        stored = await conn.scalar(select(content_documents.c.fingerprint).where(where)) or ""
    new = fingerprint(document)
    if stored == new:
        return 0
    values = {
        "owner": document.owner,
        "shared": document.shared,
        "title": document.title,
        "body": document.body,
        "headings": "\n".join(markdown_headings(document.body)),
        "fingerprint": new,
        "updated_at": now,
    }
    if stored:
        await conn.execute(update(content_documents).where(where).values(**values))
    else:
        values |= {"kind": document.kind, "key": document.key}
        await conn.execute(insert(content_documents).values(**values))
    return 1


def _check_post(owner: str, slug: str, title: str, status: str) -> None:
    # SQLite stores an overlong string whole where PostgreSQL refuses it: refused on both.
    for column, value in (("owner", owner), ("slug", slug), ("title", title)):
        length = getattr(blog_posts.c[column].type, "length", 0)
        if not value or len(value) > length:
            raise ValueError(f"{column} must be 1 to {length} characters, not {len(value)}")
    if status not in ("draft", "published"):
        raise ValueError(f"status must be draft or published, not {status!r}")


def _published_at(before: PostRecord | None, status: str, now: datetime) -> datetime | None:
    if status != "published":
        return None
    if before is not None and before.status == "published":
        return before.published_at
    return now


def _post_document(record: PostRecord) -> IndexDocument:
    shared = record.status == "published"
    return IndexDocument("post", record.slug, record.title, record.body, record.owner, shared)


def _post(row: Row[Any]) -> PostRecord:
    record = PostRecord(**{c.name: row._mapping[c.name] for c in blog_posts.columns})
    return replace(record, tags=tuple(record.tags))


def _source(row: Row[Any]) -> Source:
    hit = SearchHit(row.kind, row.key, row.title, row.snippet, float(row.score))
    return Source(hit, tuple(line for line in row.headings.splitlines() if line))
