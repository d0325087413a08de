"""Typed queries on ``ai_conversations`` and ``ai_messages``: the AI service's conversations.

The AI layer (``atrium.ai``) turns its own message objects into JSON dicts and back; this layer
keeps the dicts, numbered by ``seq`` from 1 in the order they were appended, and never looks
inside them.

- A missing conversation reads as None (``get``), no messages (``messages``) or False
  (``delete``), as a missing row does in the other query modules. ``append`` has nothing to
  return, so it raises ``UnknownConversation``: a ``StoreError`` the database did not fail, like
  ``AlreadyExists``, and nothing was written.
- Content is JSON kept as text and parsed row by row: a stored content that is not a JSON
  object (damaged by hand, cut by a tool) reads as ``{"error": "unreadable"}`` and is logged,
  while the conversation's other messages read as stored.
"""

from __future__ import annotations

import builtins
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import Column, Row, delete, func, insert, select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from atrium.store.errors import StoreError
from atrium.store.servers import Clock, utc_now
from atrium.store.tables import ai_conversations, ai_messages
from atrium.store.transaction import reading, writing

logger = logging.getLogger(__name__)

Role = Literal["user", "assistant", "tool"]
ROLES: tuple[Role, ...] = get_args(Role)

# ``messages`` gives ``{"error": UNREADABLE}`` for a stored content it cannot parse.
UNREADABLE = "unreadable"

# The messages of one conversation counted next to it, from the primary key's index.
_MESSAGE_COUNT = (
    select(func.count())
    .where(ai_messages.c.conversation_id == ai_conversations.c.id)
    .correlate(ai_conversations)
    .scalar_subquery()
    .label("messages")
)
_CONVERSATIONS = select(ai_conversations, _MESSAGE_COUNT)


@dataclass(frozen=True)
class ConversationRecord:
    """One conversation; ``messages`` is how many messages it holds."""

    id: str
    subject: str
    agent: str
    title: str
    created_at: datetime
    updated_at: datetime
    messages: int


@dataclass(frozen=True)
class NewMessage:
    """A message to append; the tokens are the usage of the model turn behind an assistant
    message, None for the others."""

    role: Role
    content: dict[str, Any]
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class MessageRecord:
    """A stored message; ``content`` is ``{"error": "unreadable"}`` if the stored one is not
    a JSON object."""

    seq: int
    role: str
    content: dict[str, Any]
    input_tokens: int | None
    output_tokens: int | None
    created_at: datetime


class UnknownConversation(StoreError):
    """No conversation has the id ``key``; nothing was written."""

    def __init__(self, url: URL | str, conversation_id: str) -> None:
        self.kind = "conversation"
        self.key = conversation_id
        super().__init__(
            url,
            f"add messages to conversation '{conversation_id}'",
            "no conversation with this id is stored",
        )


class ConversationQueries:
    """Create, read, extend and delete conversations; every failure of the database is a
    ``StoreError``."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    async def create(self, *, subject: str, agent: str, title: str) -> ConversationRecord:
        """Store a new, empty conversation with a fresh id; ``title`` is cut to what the
        column holds (200 characters)."""
        _check_fits(ai_conversations.c.subject, subject)
        _check_fits(ai_conversations.c.agent, agent)
        now = self._clock()
        record = ConversationRecord(
            id=uuid.uuid4().hex,
            subject=subject,
            agent=agent,
            title=title[: _length(ai_conversations.c.title)],
            created_at=now,
            updated_at=now,
            messages=0,
        )
        values = {c.name: getattr(record, c.name) for c in ai_conversations.columns}
        # A fresh random key reads nothing first: no race for a lock to prevent.
        async with writing(self._engine, f"add a conversation of {subject}") as conn:
            await conn.execute(insert(ai_conversations).values(**values))
        return record

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        """The conversation ``conversation_id``, or None."""
        query = _CONVERSATIONS.where(ai_conversations.c.id == conversation_id)
        async with reading(self._engine, f"read conversation '{conversation_id}'") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _conversation(row)

    async def list(
        self, *, subject: str | None = None, agent: str | None = None, limit: int = 100
    ) -> builtins.list[ConversationRecord]:
        """The ``limit`` most recently updated conversations, newest first, optionally only
        those of one ``subject`` or one ``agent``."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        query = _CONVERSATIONS.order_by(
            ai_conversations.c.updated_at.desc(),
            ai_conversations.c.created_at.desc(),
            ai_conversations.c.id.desc(),
        ).limit(limit)
        if subject is not None:
            query = query.where(ai_conversations.c.subject == subject)
        if agent is not None:
            query = query.where(ai_conversations.c.agent == agent)
        async with reading(self._engine, "list conversations") as conn:
            return [_conversation(row) for row in await conn.execute(query)]

    async def messages(self, conversation_id: str) -> builtins.list[MessageRecord]:
        """The messages of the conversation by ``seq``; none for an unknown conversation."""
        query = (
            select(ai_messages)
            .where(ai_messages.c.conversation_id == conversation_id)
            .order_by(ai_messages.c.seq)
        )
        action = f"read the messages of conversation '{conversation_id}'"
        async with reading(self._engine, action) as conn:
            return [_message(row) for row in await conn.execute(query)]

    async def append(self, conversation_id: str, messages: Sequence[NewMessage]) -> None:
        """Add ``messages`` after the last one, numbered on, all or none, and move the
        conversation's ``updated_at`` to now; ``UnknownConversation`` if there is no such
        conversation. Appending nothing changes nothing."""
        rows = [_values(message, index) for index, message in enumerate(messages)]
        if not rows:
            if await self.get(conversation_id) is None:
                raise UnknownConversation(self._engine.url, conversation_id)
            return
        now = self._clock()
        action = f"add messages to conversation '{conversation_id}'"
        # Two appends to one conversation must not both number from the same last seq. The
        # UPDATE comes first: on PostgreSQL its row lock makes the other append wait until
        # this one commits, and a delete that got there first leaves no row to update. The
        # lock makes SQLite's transaction BEGIN IMMEDIATE (``atrium.store.transaction``).
        lock = f"ai_conversation:{conversation_id}"
        async with writing(self._engine, action, lock=lock) as conn:
            if not await _touch(conn, conversation_id, now):
                raise UnknownConversation(self._engine.url, conversation_id)
            first = await _next_seq(conn, conversation_id)
            numbered = [
                row | {"conversation_id": conversation_id, "seq": first + n, "created_at": now}
                for n, row in enumerate(rows)
            ]
            await conn.execute(insert(ai_messages), numbered)

    async def delete(self, conversation_id: str) -> bool:
        """Delete the conversation and its messages; False if there was no such conversation."""
        async with writing(self._engine, f"delete conversation '{conversation_id}'") as conn:
            # The conversation's row first, as ``append`` locks it first. Its messages are
            # deleted here too: SQLite enforces the cascade only where PRAGMA foreign_keys is
            # on, and a database opened by another tool may not have it.
            deleted = await conn.execute(
                delete(ai_conversations).where(ai_conversations.c.id == conversation_id)
            )
            await conn.execute(
                delete(ai_messages).where(ai_messages.c.conversation_id == conversation_id)
            )
        return deleted.rowcount == 1


async def _touch(conn: AsyncConnection, conversation_id: str, now: datetime) -> bool:
    """Set ``updated_at``; False if the conversation does not exist."""
    statement = (
        update(ai_conversations)
        .where(ai_conversations.c.id == conversation_id)
        .values(updated_at=now)
    )
    return (await conn.execute(statement)).rowcount == 1


async def _next_seq(conn: AsyncConnection, conversation_id: str) -> int:
    last = await conn.scalar(
        select(func.max(ai_messages.c.seq)).where(ai_messages.c.conversation_id == conversation_id)
    )
    return int(last or 0) + 1


def _values(message: NewMessage, index: int) -> dict[str, Any]:
    """The columns of ``message``, checked before anything is written: a wrong role or
    content is a bug of the caller, refused as ``ValueError`` naming the message."""
    if message.role not in ROLES:
        raise ValueError(
            f"message {index}: role must be one of {', '.join(ROLES)}, not {message.role!r}"
        )
    if not isinstance(message.content, dict):
        raise ValueError(f"message {index}: content must be a dict, not {type(message.content)}")
    try:
        # allow_nan=False: NaN and Infinity are not JSON (RFC 8259 §6), and other readers of
        # the database would refuse them.
        content = json.dumps(message.content, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"message {index} ({message.role}): content is not JSON: {exc}") from exc
    return {
        "role": message.role,
        "content": content,
        "input_tokens": message.input_tokens,
        "output_tokens": message.output_tokens,
    }


def _check_fits(column: Column[Any], value: str) -> None:
    # SQLite stores an overlong string whole where PostgreSQL refuses it: refused on both.
    if len(value) > _length(column):
        raise ValueError(
            f"{column.name} is {len(value)} characters long; {column} holds at most "
            f"{_length(column)}"
        )


def _length(column: Column[Any]) -> int:
    length = getattr(column.type, "length", None)
    assert isinstance(length, int), f"{column} has no length"
    return length


def _conversation(row: Row[Any]) -> ConversationRecord:
    return ConversationRecord(**row._mapping)


def _message(row: Row[Any]) -> MessageRecord:
    return MessageRecord(
        seq=row.seq,
        role=row.role,
        content=_content(row),
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        created_at=row.created_at,
    )


def _content(row: Row[Any]) -> dict[str, Any]:
    try:
        content = json.loads(row.content)
    except (ValueError, RecursionError):
        content = None
    if isinstance(content, dict):
        return content
    logger.warning(
        "conversation %s, message %d: the stored content is not a JSON object; read as %r",
        row.conversation_id,
        row.seq,
        {"error": UNREADABLE},
    )
    return {"error": UNREADABLE}
