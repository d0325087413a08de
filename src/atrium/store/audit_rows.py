"""An audit record as a row the database takes (issue 18): every value made to fit its column
(``storable``); the error that says the database refused the rows themselves
(``RecordRefused``), not that it is down; and what is kept of a record refused all the same
(``reduced``), so that it is stored rather than dropped.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import String
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from atrium.store.errors import StoreError
from atrium.store.tables import audit_events

if TYPE_CHECKING:
    from atrium.store.audit import AuditEvent

FIELDS = [c.name for c in audit_events.columns if c.name != "id"]
_FIELD_SET = frozenset(FIELDS)
# The longest text each column holds (PostgreSQL refuses more; SQLite would keep it).
LENGTHS = {c.name: c.type.length for c in audit_events.columns if isinstance(c.type, String)}
# No PostgreSQL text holds NUL, and no UTF-8 a lone surrogate (its JSON holds an escaped NUL).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATES = re.compile("[\ud800-\udfff]")
CUT_MARK = "…"
_OUTCOMES = frozenset(("ok", "tool_error", "jsonrpc_error", "http_error"))
INT32 = (-(2**31), 2**31 - 1)
_TEXT_COLUMNS = [(name, LENGTHS[name]) for name in FIELDS if name in LENGTHS]
REQUEST_ID_CHARS = LENGTHS["request_id"] or 32
SERVER_CHARS = LENGTHS["server"] or 64


def storable(event: AuditEvent, *, json_text: bool = False) -> dict[str, Any]:
    """The row of ``event`` as its columns can hold it, so that one odd request never costs
    a batch its insert: text cut to its column's length (the last character kept for a
    ``CUT_MARK``), NUL and lone surrogates replaced by U+FFFD; arguments as JSON both
    databases keep (with ``json_text``, that JSON's text); a naive time taken as UTC, a
    duration that is no number as 0, a status beyond 32 bits clamped."""
    row = vars(event).copy()  # an AuditEvent's fields are the columns: one copy (issue 17)
    if row.keys() != _FIELD_SET:  # a subclass's (a stored record's id), or a changed class
        row = {name: getattr(event, name) for name in FIELDS}
    for name, length in _TEXT_COLUMNS:
        value = row[name]
        # The common case at a glance: printable text (no NUL, no surrogate) that fits.
        if isinstance(value, str) and not (
            value.isprintable() and (length is None or len(value) <= length)
        ):
            row[name] = fitted(value, length)
    arguments = event.arguments
    row["arguments"] = _json_text(arguments) if json_text else _storable_json(arguments)
    if event.at.tzinfo is None:
        row["at"] = event.at.replace(tzinfo=UTC)
    if not math.isfinite(event.duration_ms):
        row["duration_ms"] = 0.0
    row["status"] = min(max(event.status, INT32[0]), INT32[1])
    return row


def reduced(event: AuditEvent, reason: str) -> AuditEvent:
    """What is kept of ``event`` when the store refuses it even ``storable``: its request id,
    server, time, outcome, status and duration, in printable ASCII within their columns; who
    called, what was called and with what replaced by nothing; the error says why. Nothing a
    client sent is left that could make the store refuse it again."""
    at = event.at if isinstance(event.at, datetime) else datetime.now(UTC)
    duration = event.duration_ms if isinstance(event.duration_ms, int | float) else 0.0
    status = event.status if isinstance(event.status, int) else 500
    return replace(
        event,
        request_id=plain(event.request_id, REQUEST_ID_CHARS),
        server=plain(event.server, SERVER_CHARS),
        method=None,
        tool=None,
        arguments=None,
        at=at if at.tzinfo is not None else at.replace(tzinfo=UTC),
        caller="?",
        subject=None,
        client_id=None,
        origin="in-app" if event.origin == "in-app" else "external",
        outcome=event.outcome if event.outcome in _OUTCOMES else "http_error",
        status=min(max(status, INT32[0]), INT32[1]),
        error=plain(f"stored reduced: the database refused the record ({reason})", 1000),
        duration_ms=float(duration) if math.isfinite(duration) else 0.0,
    )


def plain(value: object, length: int) -> str:
    """``value`` as printable ASCII, at most ``length`` characters: what no column refuses."""
    text = value if isinstance(value, str) else str(value)
    return "".join(c if " " <= c <= "~" else "?" for c in text[:length])


class RecordRefused(StoreError):
    """The database refused audit records for what they hold (a value it cannot take, a
    constraint), not for being down: writing them again as they are is no use."""


def refused(exc: BaseException | None) -> bool:
    """Whether a driver error is about the rows written (SQLAlchemy's ``DataError``,
    ``IntegrityError``, or a value it could not even bind) rather than the database."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


def fitted(value: Any, length: int | None) -> Any:
    if not isinstance(value, str):
        return value
    text = _UNSTORABLE.sub("\ufffd", value)
    if length is not None and len(text) > length:
        return text[: length - len(CUT_MARK)] + CUT_MARK
    return text


def _json_text(value: Any) -> str:
    """``value`` as the JSON text ``_storable_json`` stands for, encoded once."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return orjson.dumps(_cleaned_json(value), option=orjson.OPT_NON_STR_KEYS).decode()


def _storable_json(value: Any) -> Any:
    """``value`` as JSON both databases keep: through orjson and back, so that NaN and the
    infinities (which PostgreSQL's JSON refuses) become null and a type JSON has no word for
    its string; when orjson refuses a lone surrogate, through ``_cleaned_json``."""
    try:
        return orjson.loads(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:
        return _cleaned_json(value)


def _cleaned_json(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_cleaned_json(str(key)): _cleaned_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_cleaned_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float):
        return value
    return _cleaned_json(str(value))
