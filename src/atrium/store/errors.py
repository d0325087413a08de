"""``StoreError``: the database could not do what was asked; the driver's error, translated.

Driver exceptions (asyncpg, sqlite3, ``OSError`` from a refused connection) stop at this edge,
as ``httpx/_transports/default.py`` does for its transports, so callers handle one
``AtriumError``; Alembic's ``CommandError`` stops in ``atrium.store.migrate``, where Alembic runs
(loading Alembic costs a CLI command ~150 ms). The message names the database URL with its
password masked and says what failed, never the SQL or its parameters.

``AlreadyExists`` is the one ``StoreError`` the database did not fail: a row to add has the key
of a stored one, and nothing was written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError, StatementError

from atrium.errors import AtriumError

_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&]*")
_USERINFO_PASSWORD = re.compile(r"(//[^:/@]*:)[^@/]*@")


class StoreError(AtriumError):
    """The database failed; ``url`` is masked, ``action`` and ``reason`` say what happened."""

    def __init__(self, url: URL | str, action: str, reason: str) -> None:
        self.url = masked_url(url)
        self.action = action
        self.reason = reason
        super().__init__(f"database {self.url}: cannot {action}: {reason}")


class AlreadyExists(StoreError):
    """A ``kind`` (client, user) with the unique ``key`` is stored already; nothing changed."""

    def __init__(self, url: URL | str, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(url, f"add {kind} '{key}'", f"a {kind} with this key exists already")


def masked_url(url: URL | str) -> str:
    """The URL with the password, in the user info or the query, replaced by ``***``."""
    try:
        text = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        text = _USERINFO_PASSWORD.sub(r"\1***@", str(url))
    return _QUERY_PASSWORD.sub(r"\1***", text)


@contextmanager
def translated(url: URL | str, action: str) -> Iterator[None]:
    """Turn driver errors raised inside the block into ``StoreError``."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        raise StoreError(url, action, reason(exc)) from exc


def reason(exc: BaseException) -> str:
    """What ``exc`` says went wrong, without the SQL or its parameters."""
    # A StatementError's own text carries the SQL and its parameters; the cause is enough.
    if isinstance(exc, StatementError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).strip() or type(exc).__name__
    # SQLAlchemy's asyncpg adapter prefixes "<class 'asyncpg.exceptions.X'>: ".
    return re.sub(r"^<class '[\w.]+'>: ", "", text)
