"""An audit batch never fails whole (issue 18): values are made storable before the insert, and
a batch the store still refuses is written row by row, so that one record costs only itself.
On SQLite and PostgreSQL, through the gateway's own writer (``AuditSink``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from atrium.gateway.audit import AuditSink
from atrium.settings import Settings
from atrium.store import Store, StoreError
from atrium.store.audit import CUT_MARK, AuditEvent, AuditQueries

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
REFUSAL = "value too long for type character varying(128)"


def good(n: int) -> AuditEvent:
    return AuditEvent(
        request_id=f"good{n}", server="tools", method="tools/call", tool="echo", at=AT
    )


class RefusingWriter:
    """The real store, refusing every batch that holds the record of request ``refused``, as
    a database refuses a row it cannot take; it counts what it is asked to write."""

    def __init__(self, real: AuditQueries, refused: str) -> None:
        self.real = real
        self.refused = refused
        self.asked: list[list[str]] = []

    async def add_many(self, events: Sequence[AuditEvent]) -> None:
        self.asked.append([event.request_id for event in events])
        if any(event.request_id == self.refused for event in events):
            raise StoreError("postgresql://db/atrium", "write audit records", REFUSAL)
        await self.real.add_many(events)


async def write_one_batch(sink: AuditSink, events: list[AuditEvent]) -> None:
    for event in events:  # queued before the writer starts: it takes them in one batch
        sink.record(event)
    sink.start()
    await sink.close()


async def test_a_batch_with_unstorable_values_is_stored_whole(
    database_settings: Settings, tmp_path: Path
) -> None:
    spill = tmp_path / "audit-spill.jsonl"
    odd = AuditEvent(
        request_id="odd",
        server="tools",
        method="tools/\x00call",
        tool="t" * 5000,
        subject="u" * 100_000,
        at=AT,
    )
    async with await Store.open(database_settings) as store:
        sink = AuditSink(store.audit, spill, linger_s=0)

        await write_one_batch(
            sink, [good(n) for n in range(5)] + [odd] + [good(n) for n in range(5, 10)]
        )

        records = await store.audit.list_recent(100)
    assert len(records) == 11
    assert not spill.exists()
    (stored,) = [record for record in records if record.request_id == "odd"]
    assert stored.tool is not None
    assert (len(stored.tool), stored.tool[-1]) == (128, CUT_MARK)
    assert stored.subject is not None
    assert (len(stored.subject), stored.subject[-1]) == (255, CUT_MARK)
    assert stored.method == "tools/\ufffdcall"


@pytest.mark.parametrize("position", [0, 1, 5, 10])
async def test_a_record_the_store_refuses_costs_only_itself(
    database_settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    position: int,
) -> None:
    spill = tmp_path / "audit-spill.jsonl"
    events = [good(n) for n in range(10)]
    events.insert(position, AuditEvent(request_id="refused", server="tools", method=None, at=AT))
    async with await Store.open(database_settings) as store:
        writer = RefusingWriter(store.audit, "refused")
        sink = AuditSink(writer, spill, linger_s=0)

        with caplog.at_level(logging.WARNING, logger="atrium.gateway.audit"):
            await write_one_batch(sink, events)

        records = await store.audit.list_recent(100)
    assert sorted(record.request_id for record in records) == sorted(f"good{n}" for n in range(10))
    lines = [orjson.loads(line) for line in spill.read_bytes().splitlines()]
    assert [line["request_id"] for line in lines] == ["refused"]
    asked = [request for batch in writer.asked[1:] for request in batch]  # after the batch
    assert sorted(asked) == sorted(event.request_id for event in events)  # each alone, once
    assert any("refused" in m and REFUSAL in m for m in caplog.messages)


class DownWriter:
    """A store that is down: it takes nothing, whatever it is asked."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def add_many(self, events: Sequence[AuditEvent]) -> None:
        self.asked.append([event.request_id for event in events])
        raise StoreError("postgresql://db/atrium", "write audit records", "connection refused")


async def test_a_store_that_takes_nothing_has_the_batch_retried_then_spilled(
    tmp_path: Path,
) -> None:
    spill = tmp_path / "audit-spill.jsonl"
    writer = DownWriter()
    sink = AuditSink(writer, spill, linger_s=0)

    await write_one_batch(sink, [good(n) for n in range(6)])

    lines = [orjson.loads(line) for line in spill.read_bytes().splitlines()]
    assert [line["request_id"] for line in lines] == [f"good{n}" for n in range(6)]
    # Three tries of the batch, each followed by its first two records alone: never all six.
    assert [len(batch) for batch in writer.asked] == [6, 1, 1] * 3


async def test_a_spilled_record_of_a_lone_surrogate_is_still_a_json_line(tmp_path: Path) -> None:
    spill = tmp_path / "audit-spill.jsonl"
    odd = AuditEvent(request_id="odd", server="tools", method="tools/call", tool="a\ud800b", at=AT)

    await write_one_batch(AuditSink(DownWriter(), spill, linger_s=0), [odd])

    (line,) = spill.read_bytes().splitlines()
    assert json.loads(line)["tool"] == "a\ud800b"
