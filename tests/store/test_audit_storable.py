"""Every value of an audit record is made storable before the insert (issue 18): PostgreSQL
refuses a text longer than its column, a NUL, a lone surrogate, a JSON NaN, and refusing one
row fails its whole batch. SQLite would take them; both must store the same."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from atrium.store import Store
from atrium.store.audit import AuditEvent, AuditRecord
from atrium.store.audit_rows import CUT_MARK, storable
from atrium.store.tables import audit_events

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def length(column: str) -> int:
    size = audit_events.c[column].type.length  # type: ignore[attr-defined]
    assert isinstance(size, int)
    return size


def odd_event() -> AuditEvent:
    return AuditEvent(
        request_id="odd" + "9" * 100,
        server="s" * 200,
        method="tools/\x00call",
        tool="t" * 5000,
        arguments={"key\x00": ["nul\x00", "half \ud800 pair", math.nan, math.inf, {"n": 1}]},
        caller="c" * 1000,
        subject="u" * 100_000,
        client_id="https://app.example/" + "x" * 500,
        error="broken \x00 here",
        status=2**40,
        duration_ms=math.inf,
        at=AT,
    )


async def test_a_record_of_odd_values_is_stored_cut_and_cleaned(store: Store) -> None:
    good = AuditEvent(request_id="good", server="tools", method="tools/call", tool="echo", at=AT)

    await store.audit.add_many([odd_event(), good])

    kept, odd = await store.audit.list_recent(5)  # newest first
    assert kept.request_id == "good"
    assert odd.tool == "t" * (length("tool") - 1) + CUT_MARK
    assert odd.server == "s" * (length("server") - 1) + CUT_MARK
    assert odd.subject == "u" * (length("subject") - 1) + CUT_MARK
    assert odd.request_id == ("odd" + "9" * 100)[: length("request_id") - 1] + CUT_MARK
    assert len(odd.caller) == length("caller")
    assert str(odd.client_id).endswith(CUT_MARK)
    assert (odd.method, odd.error) == ("tools/\ufffdcall", "broken \ufffd here")
    # PostgreSQL's JSON holds an escaped NUL, neither a lone surrogate nor NaN.
    assert odd.arguments == {"key\x00": ["nul\x00", "half \ufffd pair", None, None, {"n": 1}]}
    assert (odd.status, odd.duration_ms) == (2**31 - 1, 0.0)


async def test_the_odd_records_sums_are_kept_with_it(store: Store) -> None:
    await store.audit.add_many([odd_event()])

    (row,) = await store.audit.usage(AT, "tool")

    assert row.keys == {
        "server": "s" * (length("server") - 1) + CUT_MARK,
        "tool": "t" * (length("tool") - 1) + CUT_MARK,
    }
    assert (row.requests, row.max_ms) == (1, 0.0)


def test_a_value_that_fits_is_stored_as_it_is() -> None:
    event = AuditEvent(
        request_id="r1",
        server="tools",
        method="tools/call",
        tool="é" * 128,  # 128 characters, 256 bytes: the column counts characters
        arguments={"text": "ok", "n": 1.5},
        at=AT,
    )

    row = storable(event)

    assert row["tool"] == "é" * 128
    assert row["arguments"] == {"text": "ok", "n": 1.5}
    assert row["at"] is AT


def test_arguments_are_stored_as_json_both_databases_keep() -> None:
    event = AuditEvent(
        request_id="r1",
        server="tools",
        method="tools/call",
        arguments={"nul": "a\x00b", "ratio": math.nan, "when": AT, 1: "one"},
        at=AT,
    )

    assert storable(event)["arguments"] == {
        "nul": "a\x00b",
        "ratio": None,
        "when": "2026-05-01T12:00:00+00:00",
        "1": "one",
    }


def test_a_naive_time_is_taken_as_utc() -> None:
    event = AuditEvent(request_id="r1", server="tools", method=None, at=datetime(2026, 5, 1))

    assert storable(event)["at"] == datetime(2026, 5, 1, tzinfo=UTC)


def test_a_row_has_exactly_the_columns_whatever_the_record_carries() -> None:
    # ``storable`` copies an AuditEvent's fields at once when they are the columns; a stored
    # record (its id too) or an event given an attribute of its own must not bring extra keys
    # into the insert, nor lose one.
    columns = {c.name for c in audit_events.columns if c.name != "id"}
    event = AuditEvent(request_id="r1", server="s", method="tools/call", at=AT, tool="t")
    record = AuditRecord(request_id="r2", server="s", method="tools/call", at=AT, id=7)
    extra = AuditEvent(request_id="r3", server="s", method=None, at=AT)
    extra.__dict__["smuggled"] = "x"
    for each in (event, record, extra):
        row = storable(each)
        assert set(row) == columns
        assert row["request_id"] == each.request_id
    assert storable(event)["tool"] == "t"
