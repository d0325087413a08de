"""Typed queries on what the authorization server granted: codes, refresh tokens, revocations.

- ``authorization_codes``: single use (RFC 6749 §4.1.2). ``consume_code`` marks a code used
  with one conditional UPDATE, so of two requests racing with the same code exactly one wins;
  the other learns the code was reused, and the caller revokes the family it started.
- ``refresh_tokens``: rotated at every use (OAuth 2.1, refresh token grant; RFC 9700 §4.14.2).
  ``rotate_refresh`` retires the old token and stores its successor in one transaction; a
  retired token presented again is a replay, and the caller revokes the whole family.
- ``revocations``: revoked access tokens (by ``jti``) and families (RFC 7009 §2), which every
  gateway process loads; it polls ``revocations_fingerprint`` to reload only on change.
- ``subject_revocations``: every access token issued to a subject up to a moment is revoked
  (a user disabled, deleted, narrowed or given a new password); ``revoke_subject`` also spends
  the subject's pending codes, so no token minted later can carry what was taken away.

A revocation outlives its ``expires_at`` by ``REVOCATION_MARGIN``, both in what is loaded and in
what is purged: a verifier accepts a token a clock leeway past its ``exp`` (RFC 7519 §4.1.4;
``atrium.auth.access_tokens.LEEWAY_S``), and a record gone sooner would let the token back in.

A family's tokens and its revocation row change under one write lock, and a token added to a
revoked family is stored revoked, so no token of a revoked family is ever usable, whichever
of two racing requests (a rotation, a reuse) commits first. Expiry is the caller's check: the
store answers with the record and leaves the time to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Row, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from atrium.store.changes import announce
from atrium.store.servers import Clock, utc_now
from atrium.store.tables import (
    authorization_codes,
    refresh_tokens,
    revocations,
    subject_revocations,
)
from atrium.store.transaction import reading, writing

RotationOutcome = Literal["rotated", "reused", "revoked", "unknown"]
RevocationKind = Literal["jti", "family"]
# Moves whenever a revocation is added, renewed or purged: (count, newest) of each table.
Fingerprint = tuple[int, datetime | None, int, datetime | None]

# Longer than any verifier's clock leeway (auth.tokens.LEEWAY_S, 30 s; the store cannot import
# auth, tests/auth checks the margin covers it), plus the clock difference of two processes.
REVOCATION_MARGIN = timedelta(seconds=90)

# How long a used code is kept after its use, so that a replay is still recognised as one.
USED_CODE_RETENTION = timedelta(days=1)

_CODES_LOCK = "authorization_codes"
# Guards refresh_tokens and revocations together: a family's tokens and its revocation row.
_TOKENS_LOCK = "refresh_tokens"


@dataclass(frozen=True, kw_only=True)
class CodeRecord:
    """One authorization code, known by the hash of its value.

    ``family_id`` names the refresh token family the code's exchange starts; ``jkt`` binds
    the code to a DPoP key (RFC 9449 §10). ``created_at`` left None is set to the store's
    now; ``used_at`` starts empty whatever is given, and is set by ``consume_code``.
    """

    code_hash: str
    client_id: str
    user_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    family_id: str
    expires_at: datetime
    resource: str | None = None
    jkt: str | None = None
    created_at: datetime | None = None
    used_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class RefreshRecord:
    """One refresh token, known by the hash of its value.

    ``created_at`` left None is set to the store's now; ``rotated_at`` and ``revoked_at``
    start empty whatever is given (``revoked_at`` is set at once in a revoked family).
    """

    token_hash: str
    family_id: str
    client_id: str
    subject: str
    scope: str
    expires_at: datetime
    resource: str | None = None
    jkt: str | None = None
    created_at: datetime | None = None
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None


class GrantQueries:
    """Codes, refresh tokens and revocations; every failure of the database is a ``StoreError``."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    async def add_code(self, record: CodeRecord) -> None:
        """Store a new, unused authorization code."""
        row = _code_values(record) | {
            "created_at": record.created_at or self._clock(),
            "used_at": None,
        }
        # A plain transaction: an insert under a fresh random key reads nothing first.
        async with writing(self._engine, "store an authorization code") as conn:
            await conn.execute(insert(authorization_codes).values(**row))

    async def get_code(self, code_hash: str) -> CodeRecord | None:
        """The code with ``code_hash``, used or expired alike, or None; marks nothing."""
        query = select(authorization_codes).where(authorization_codes.c.code_hash == code_hash)
        async with reading(self._engine, "read an authorization code") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _code(row)

    async def consume_code(self, code_hash: str) -> tuple[CodeRecord | None, bool]:
        """Mark the code used; return it and whether it had been used before.

        ``(record, False)`` the first time, ``(record, True)`` on every later try, and
        ``(None, False)`` for an unknown code. The conditional UPDATE is what makes the code
        single-use: of two racing requests, only one changes the row.
        """
        mark = (
            update(authorization_codes)
            .where(
                authorization_codes.c.code_hash == code_hash,
                authorization_codes.c.used_at.is_(None),
            )
            .values(used_at=self._clock())
        )
        query = select(authorization_codes).where(authorization_codes.c.code_hash == code_hash)
        async with writing(self._engine, "consume an authorization code", lock=_CODES_LOCK) as conn:
            first_use = (await conn.execute(mark)).rowcount == 1
            row = (await conn.execute(query)).first()
        if row is None:
            return None, False
        return _code(row), not first_use

    async def add_refresh(self, record: RefreshRecord) -> None:
        """Store a new refresh token (revoked at once if its family is revoked)."""
        async with writing(self._engine, "store a refresh token", lock=_TOKENS_LOCK) as conn:
            await _insert_refresh(conn, record, self._clock())

    async def get_refresh(self, token_hash: str) -> RefreshRecord | None:
        """The refresh token with ``token_hash``, rotated, revoked or expired alike, or None."""
        query = select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
        async with reading(self._engine, "read a refresh token") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _refresh(row)

    async def rotate_refresh(self, old_hash: str, new: RefreshRecord) -> RotationOutcome:
        """Retire the token ``old_hash`` and store ``new`` in its place, in one transaction.

        ``"rotated"``: done. Otherwise nothing is stored, and the answer says why: ``"reused"``
        (it was rotated before: a replay, RFC 9700 §4.14.2), ``"revoked"``, or ``"unknown"``.
        Of two rotations of one token, racing in two processes, exactly one is ``"rotated"``.
        """
        now = self._clock()
        retire = (
            update(refresh_tokens)
            .where(
                refresh_tokens.c.token_hash == old_hash,
                refresh_tokens.c.rotated_at.is_(None),
                refresh_tokens.c.revoked_at.is_(None),
            )
            .values(rotated_at=now)
        )
        async with writing(self._engine, "rotate a refresh token", lock=_TOKENS_LOCK) as conn:
            if (await conn.execute(retire)).rowcount == 1:
                await _insert_refresh(conn, new, now)
                return "rotated"
            return await _why_not_rotated(conn, old_hash)

    async def revoke_family(self, family_id: str, expires_at: datetime) -> int:
        """Revoke every refresh token of the family and record the family as revoked.

        ``expires_at`` is when the family's last token would expire anyway (the revocation is
        kept until then). Idempotent; returns how many tokens this call revoked.
        """
        now = self._clock()
        statement = (
            update(refresh_tokens)
            .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        async with writing(self._engine, "revoke a token family", lock=_TOKENS_LOCK) as conn:
            revoked = (await conn.execute(statement)).rowcount
            await _record_revocation(conn, family_id, "family", expires_at, now)
            await announce(conn, "auth")
        return revoked

    async def revoke_jti(self, jti: str, expires_at: datetime) -> None:
        """Record the access token ``jti`` as revoked until ``expires_at``; idempotent."""
        async with writing(self._engine, "revoke an access token", lock=_TOKENS_LOCK) as conn:
            await _record_revocation(conn, jti, "jti", expires_at, self._clock())
            await announce(conn, "auth")

    async def revoke_subject(
        self, subject: str, keep_for: timedelta, *, revoke_refresh: bool
    ) -> datetime:
        """Revoke every access token issued to ``subject`` until now; return that moment.

        An access token whose ``iat`` is not after the returned moment is revoked; the record
        is kept ``keep_for`` (the longest lifetime of an access token). The subject's unused
        authorization codes are deleted with it, and, with ``revoke_refresh``, its refresh
        tokens are revoked: what was granted before cannot mint a token after.
        """
        now = self._clock()
        codes = authorization_codes.c
        unused_codes = delete(authorization_codes).where(
            codes.user_id == subject, codes.used_at.is_(None)
        )
        async with writing(
            self._engine, f"revoke the tokens of {subject}", lock=_TOKENS_LOCK
        ) as conn:
            await _record_subject(conn, subject, now, now + keep_for)
            await announce(conn, "auth")
            await conn.execute(unused_codes)
            if revoke_refresh:
                await conn.execute(
                    update(refresh_tokens)
                    .where(
                        refresh_tokens.c.subject == subject,
                        refresh_tokens.c.revoked_at.is_(None),
                    )
                    .values(revoked_at=now)
                )
        return now

    async def active_revocations(self) -> dict[str, RevocationKind]:
        """Every revocation not yet expired: revoked ``jti`` or family id -> its kind."""
        query = select(revocations.c.key, revocations.c.kind).where(
            revocations.c.expires_at > self._clock() - REVOCATION_MARGIN
        )
        async with reading(self._engine, "read the revocations") as conn:
            return {key: kind for key, kind in await conn.execute(query)}

    async def active_subject_revocations(self) -> dict[str, datetime]:
        """Every subject revocation not yet expired: subject -> until when its tokens are."""
        table = subject_revocations.c
        query = select(table.subject, table.revoked_before).where(
            table.expires_at > self._clock() - REVOCATION_MARGIN
        )
        async with reading(self._engine, "read the subject revocations") as conn:
            return {subject: before for subject, before in await conn.execute(query)}

    async def revocations_fingerprint(self) -> Fingerprint:
        """Row counts and newest times of both revocation tables: moves whenever a revocation
        is added, renewed or purged."""
        tokens = select(func.count(), func.max(revocations.c.created_at))
        subjects = select(func.count(), func.max(subject_revocations.c.revoked_before))
        async with reading(self._engine, "read the revocations' fingerprint") as conn:
            count, newest = (await conn.execute(tokens)).one()
            subject_count, subject_newest = (await conn.execute(subjects)).one()
        return int(count), newest, int(subject_count), subject_newest

    async def purge_expired(self) -> int:
        """Delete what can no longer be used nor tell of a replay; return how many rows.

        Codes past ``expires_at`` and never used, codes used more than ``USED_CODE_RETENTION``
        ago, refresh tokens past ``expires_at``, revocations ``REVOCATION_MARGIN`` past it.
        """
        now = self._clock()
        codes = authorization_codes.c
        statements = [
            delete(authorization_codes).where(
                or_(
                    and_(codes.used_at.is_(None), codes.expires_at < now),
                    codes.used_at < now - USED_CODE_RETENTION,
                )
            ),
            delete(refresh_tokens).where(refresh_tokens.c.expires_at < now),
            delete(revocations).where(revocations.c.expires_at < now - REVOCATION_MARGIN),
            delete(subject_revocations).where(
                subject_revocations.c.expires_at < now - REVOCATION_MARGIN
            ),
        ]
        async with writing(self._engine, "purge expired grants", lock=_TOKENS_LOCK) as conn:
            return sum([(await conn.execute(s)).rowcount for s in statements])


async def _insert_refresh(conn: AsyncConnection, record: RefreshRecord, now: datetime) -> None:
    family_revoked = await conn.scalar(
        select(revocations.c.key).where(
            revocations.c.key == record.family_id, revocations.c.kind == "family"
        )
    )
    row = _refresh_values(record) | {
        "created_at": record.created_at or now,
        "rotated_at": None,
        "revoked_at": now if family_revoked is not None else None,
    }
    await conn.execute(insert(refresh_tokens).values(**row))


async def _why_not_rotated(conn: AsyncConnection, token_hash: str) -> RotationOutcome:
    query = select(refresh_tokens.c.rotated_at, refresh_tokens.c.revoked_at).where(
        refresh_tokens.c.token_hash == token_hash
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return "unknown"
    # A rotated token is a replay even once its family is revoked: the caller may log it.
    return "reused" if row.rotated_at is not None else "revoked"


async def _record_revocation(
    conn: AsyncConnection, key: str, kind: RevocationKind, expires_at: datetime, now: datetime
) -> None:
    # Select-then-insert under the write lock rather than a dialect's upsert (as servers.py).
    stored = await conn.scalar(select(revocations.c.key).where(revocations.c.key == key))
    if stored is None:
        row = {"key": key, "kind": kind, "expires_at": expires_at, "created_at": now}
        await conn.execute(insert(revocations).values(**row))


async def _record_subject(
    conn: AsyncConnection, subject: str, before: datetime, expires_at: datetime
) -> None:
    table = subject_revocations.c
    stored = (
        await conn.execute(
            select(table.revoked_before, table.expires_at).where(table.subject == subject)
        )
    ).first()
    if stored is None:
        row = {"subject": subject, "revoked_before": before, "expires_at": expires_at}
        await conn.execute(insert(subject_revocations).values(**row))
        return
    # Never moves back: a later revocation covers everything an earlier one did.
    await conn.execute(
        update(subject_revocations)
        .where(table.subject == subject)
        .values(
            revoked_before=max(before, stored.revoked_before),
            expires_at=max(expires_at, stored.expires_at),
        )
    )


def _code_values(record: CodeRecord) -> dict[str, Any]:
    return {
        "code_hash": record.code_hash,
        "client_id": record.client_id,
        "user_id": record.user_id,
        "redirect_uri": record.redirect_uri,
        "code_challenge": record.code_challenge,
        "scope": record.scope,
        "resource": record.resource,
        "jkt": record.jkt,
        "family_id": record.family_id,
        "expires_at": record.expires_at,
    }


def _refresh_values(record: RefreshRecord) -> dict[str, Any]:
    return {
        "token_hash": record.token_hash,
        "family_id": record.family_id,
        "client_id": record.client_id,
        "subject": record.subject,
        "scope": record.scope,
        "resource": record.resource,
        "jkt": record.jkt,
        "expires_at": record.expires_at,
    }


def _code(row: Row[Any]) -> CodeRecord:
    return CodeRecord(**row._mapping)


def _refresh(row: Row[Any]) -> RefreshRecord:
    return RefreshRecord(**row._mapping)
