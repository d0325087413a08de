"""An audit batch never fails whole (issue 18): values are made storable before the insert, and
a batch the store still refuses is written exchange by exchange, so that one record costs only
itself, and is stored reduced rather than dropped. On SQLite and PostgreSQL, through the
gateway's own writer (``AuditSink``)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from atrium.gateway.audit import AuditSink
from atrium.gateway.journal import exchanges
from atrium.settings import Settings
from atrium.store import Store, StoreError
from atrium.store.audit import AuditEvent, AuditQueries
from atrium.store.audit_rows import CUT_MARK, RecordRefused

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
REFUSAL = "value too long for type character varying(128)"


def good(n: int) -> AuditEvent:
    return AuditEvent(
        request_id=f"good{n}", server="tools", method="tools/call", tool="echo", at=AT
    )


class RefusingWriter:
    """The real store, refusing every batch that holds a record of tool ``refused``, as a
    database refuses a value it cannot take; it counts what it is asked to write."""

    def __init__(self, real: AuditQueries, refused: str) -> None:
        self.real = real
        self.refused = refused
        self.asked: list[list[str]] = []

    async def add_many(self, events: Sequence[AuditEvent]) -> None:
        self.asked.append([event.request_id for event in events])
        if any(event.tool == self.refused for event in events):
            raise RecordRefused("postgresql://db/atrium", "write audit records", REFUSAL)
        await self.real.add_many(events)

    async def stored_request_ids(self, request_ids: Collection[str]) -> set[str]:
        return await self.real.stored_request_ids(request_ids)


async def write_one_batch(sink: AuditSink, events: list[AuditEvent]) -> None:
    await sink.start()
    for event in events:  # queued before the writer runs: it takes them in one batch
        sink.record([event])
    await sink.close()


async def test_a_batch_with_unstorable_values_is_stored_whole(
    database_settings: Settings, tmp_path: Path
) -> None:
    journal = tmp_path / "audit-journal"
    odd = AuditEvent(
        request_id="odd",
        server="tools",
        method="tools/\x00call",
        tool="t" * 5000,
        subject="u" * 100_000,
        at=AT,
    )
    async with await Store.open(database_settings) as store:
        sink = AuditSink(store.audit, journal, linger_s=0)

        await write_one_batch(
            sink, [good(n) for n in range(5)] + [odd] + [good(n) for n in range(5, 10)]
        )

        records = await store.audit.list_recent(100)
    assert len(records) == 11
    assert not list(journal.iterdir())
    (stored,) = [record for record in records if record.request_id == "odd"]
    assert stored.tool is not None
    assert (len(stored.tool), stored.tool[-1]) == (128, CUT_MARK)
    assert stored.subject is not None
    assert (len(stored.subject), stored.subject[-1]) == (255, CUT_MARK)
    assert stored.method == "tools/\ufffdcall"


@pytest.mark.parametrize("position", [0, 1, 5, 10])
async def test_a_record_the_store_refuses_costs_only_its_own_details(
    database_settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    position: int,
) -> None:
    journal = tmp_path / "audit-journal"
    events = [good(n) for n in range(10)]
    odd = AuditEvent(
        request_id="refused", server="tools", method="tools/call", tool="odd", status=502, at=AT
    )
    events.insert(position, odd)
    async with await Store.open(database_settings) as store:
        writer = RefusingWriter(store.audit, "odd")
        sink = AuditSink(writer, journal, linger_s=0)

        with caplog.at_level(logging.WARNING, logger="atrium.gateway.audit"):
            await write_one_batch(sink, events)

        records = await store.audit.list_recent(100)
    assert sorted(r.request_id for r in records) == sorted(e.request_id for e in events)
    (stored,) = [record for record in records if record.request_id == "refused"]
    assert (stored.server, stored.status, stored.at) == ("tools", 502, AT)
    assert (stored.tool, stored.method, stored.arguments) == (None, None, None)
    assert REFUSAL in str(stored.error)
    # After the batch: each exchange alone, once, and the refused one's reduced record.
    asked = [request for batch in writer.asked[1:] for request in batch]
    assert sorted(asked) == sorted([e.request_id for e in events] + ["refused"])
    assert any("refused" in m and REFUSAL in m for m in caplog.messages)
    assert not list(journal.iterdir())


class DownWriter:
    """A store that is down: it takes nothing and answers nothing, whatever it is asked."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def add_many(self, events: Sequence[AuditEvent]) -> None:
        self.asked.append([event.request_id for event in events])
        raise StoreError("postgresql://db/atrium", "write audit records", "connection refused")

    async def stored_request_ids(self, request_ids: Collection[str]) -> set[str]:
        raise StoreError("postgresql://db/atrium", "read audit records", "connection refused")


async def test_a_store_down_at_shutdown_leaves_the_batch_in_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "audit-journal"
    writer = DownWriter()

    await write_one_batch(AuditSink(writer, journal, linger_s=0), [good(n) for n in range(6)])

    # Tried whole, then found down at the look-up before each exchange alone: never reduced.
    assert writer.asked == [[f"good{n}" for n in range(6)]]
    (segment,) = journal.glob("*.jsonl")
    kept = [event.request_id for exchange in exchanges(segment) for event in exchange]
    assert kept == [f"good{n}" for n in range(6)]
    assert len(list(journal.glob("*.lock"))) == 1  # for the next start to claim


async def test_a_journaled_record_of_a_lone_surrogate_reads_back_as_it_was(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "audit-journal"
    odd = AuditEvent(request_id="odd", server="tools", method="tools/call", tool="a\ud800b", at=AT)

    await write_one_batch(AuditSink(DownWriter(), journal, linger_s=0), [odd])

    (segment,) = journal.glob("*.jsonl")
    ((kept,),) = list(exchanges(segment))
    assert kept == odd


async def test_a_listener_that_fails_costs_neither_the_record_nor_the_next_listener(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # record() runs inside the response's last send: a listener's bug must not raise there.
    seen: list[str] = []

    def broken(event: AuditEvent) -> None:
        raise RuntimeError("a bug in a listener")

    listeners = [broken, lambda event: seen.append(event.request_id)]
    sink = AuditSink(store.audit, tmp_path / "audit-journal", listeners=listeners)
    with caplog.at_level(logging.ERROR):
        await write_one_batch(sink, [good(1)])

    records = await store.audit.list_recent(10)
    assert [record.request_id for record in records] == ["good1"]
    assert seen == ["good1"]
    assert "a bug in a listener" in caplog.text
