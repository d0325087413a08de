"""The audit journal (issue 18): every exchange written to a local journal before its response
completes, moved to the store, and replayed at start from the journals of processes that are
gone; never twice, never those of a process still alive."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from atrium.gateway.audit import AuditSink
from atrium.gateway.journal import Journal, claim_dead, exchanges
from atrium.settings import Settings
from atrium.store import Store
from atrium.store.audit import AuditEvent, AuditQueries

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]

# A gateway process as far as its journal goes: it journals ``count`` exchanges, says so, and
# lives until its stdin closes (or it is killed), never closing its journal.
JOURNALING_PROCESS = """
import sys
from pathlib import Path
from atrium.gateway.journal import Journal
from atrium.store.audit import AuditEvent

journal = Journal.open(Path(sys.argv[1]))
for n in range(int(sys.argv[2])):
    journal.append([AuditEvent(request_id=f"{sys.argv[3]}{n}", server="tools", method="ping")])
print("journaled", flush=True)
sys.stdin.read()
"""


def event(request_id: str, tool: str | None = None, arguments: object = None) -> AuditEvent:
    return AuditEvent(
        request_id=request_id,
        server="tools",
        method="tools/call",
        tool=tool,
        arguments=arguments,
        at=AT,
    )


@asynccontextmanager
async def journaling_process(
    journal: Path, count: int, prefix: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A process that has journaled ``count`` exchanges and lives on; killed at the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        JOURNALING_PROCESS,
        str(journal),
        str(count),
        prefix,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line == b"journaled\n"
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def killed_process_journal(journal: Path, count: int, prefix: str) -> None:
    """What a gateway process SIGKILLed after journaling ``count`` exchanges leaves."""
    async with journaling_process(journal, count, prefix) as process:
        process.kill()


async def replayed(store: Store, journal: Path) -> None:
    """A gateway process starting (and stopping) on ``journal``."""
    sink = AuditSink(store.audit, journal, linger_s=0)
    await sink.start()
    await sink.close()


async def request_ids(store: Store) -> Counter[str]:
    return Counter(record.request_id for record in await store.audit.list_recent(10_000))


async def test_an_exchange_is_one_line_with_its_sequence_number_before_record_returns(
    settings: Settings, tmp_path: Path
) -> None:
    journal = tmp_path / "audit-journal"
    async with await Store.open(settings) as store:
        sink = AuditSink(store.audit, journal, linger_s=0)
        await sink.start()
        sink.record([event("a1", tool="echo", arguments={"text": "hi"}), event("a1", tool="x")])
        sink.record([event("b2")])

        (segment,) = journal.glob("*.jsonl")  # the writer has not run yet
        lines = [orjson.loads(line) for line in segment.read_bytes().splitlines()]
        await sink.close()

    assert [line[0] for line in lines] == [1, 2]
    assert [[record["tool"] for record in line[1]] for line in lines] == [["echo", "x"], [None]]
    assert lines[0][1][0]["arguments"] == {"text": "hi"}


async def test_segments_are_deleted_once_their_records_are_stored(
    settings: Settings, tmp_path: Path
) -> None:
    journal = tmp_path / "audit-journal"
    async with await Store.open(settings) as store:
        sink = AuditSink(store.audit, journal, linger_s=0, segment_bytes=2_000)
        await sink.start()
        for n in range(40):
            sink.record([event(f"r{n}", arguments={"n": n})])
            await asyncio.sleep(0)
        # Rotated as it grew: the segment written to is the fifth or later. (Counting the files
        # raced the writer's thread, which may have stored and deleted the first ones already.)
        assert max(int(path.suffixes[-2][1:]) for path in journal.glob("*.jsonl")) > 3
        assert await sink.settled(10)
        assert len(list(journal.glob("*.jsonl"))) <= 1  # only the one still written to
        await sink.close()
        stored = await request_ids(store)

    assert stored == Counter(f"r{n}" for n in range(40))
    assert not list(journal.iterdir())  # a clean stop leaves nothing, lock file included


async def test_the_journal_of_a_killed_process_is_replayed_at_start_then_deleted(
    settings: Settings, tmp_path: Path
) -> None:
    journal = tmp_path / "audit-journal"
    await killed_process_journal(journal, 25, "k")
    assert len(list(journal.glob("*.lock"))) == 1

    async with await Store.open(settings) as store:
        await replayed(store, journal)
        stored = await request_ids(store)

    assert stored == Counter(f"k{n}" for n in range(25))
    assert not list(journal.iterdir())


async def test_records_stored_before_the_kill_are_not_stored_twice(
    database_settings: Settings, tmp_path: Path
) -> None:
    journal = tmp_path / "audit-journal"
    await killed_process_journal(journal, 10, "k")
    async with await Store.open(database_settings) as store:
        # The batches the writer committed just before the process was killed.
        await store.audit.add_many([event(f"k{n}") for n in (0, 1, 2, 7)])

        await replayed(store, journal)
        await replayed(store, journal)  # and a second start finds nothing more to do
        stored = await request_ids(store)

    assert stored == Counter(f"k{n}" for n in range(10))


async def test_the_journal_of_a_live_process_is_its_own_until_it_is_gone(
    settings: Settings, tmp_path: Path
) -> None:
    journal = tmp_path / "audit-journal"
    async with (
        await Store.open(settings) as store,
        journaling_process(journal, 5, "live") as process,
    ):
        await replayed(store, journal)
        assert await request_ids(store) == Counter()  # another process's, alive
        assert len(list(journal.glob("*.jsonl"))) == 1
        process.kill()
        await process.wait()

        await replayed(store, journal)
        stored = await request_ids(store)

    assert stored == Counter(f"live{n}" for n in range(5))


async def test_processes_starting_together_replay_a_dead_journal_once(
    settings: Settings, tmp_path: Path
) -> None:
    journal = tmp_path / "audit-journal"
    await killed_process_journal(journal, 300, "k")
    async with await Store.open(settings) as store:
        # Each sink locks as a process does (flock locks are per open file, not per process).
        sinks = [AuditSink(store.audit, journal, linger_s=0, batch_size=20) for _ in range(3)]
        await asyncio.gather(*(sink.start() for sink in sinks))
        await asyncio.gather(*(sink.close() for sink in sinks))
        stored = await request_ids(store)

    assert stored == Counter(f"k{n}" for n in range(300))


async def test_the_spill_file_of_earlier_versions_is_replayed_and_removed(
    settings: Settings, tmp_path: Path
) -> None:
    spill = tmp_path / "audit-spill.jsonl"
    spilled = [event("s1", tool="a"), event("s1", tool="b"), event("s2")]  # s1: a batch of two
    spill.write_bytes(b"".join(orjson.dumps(e.to_json()) + b"\n" for e in spilled))
    async with await Store.open(settings) as store:
        sink = AuditSink(store.audit, tmp_path / "audit-journal", linger_s=0)
        await sink.start(legacy_spill=spill)
        await sink.close()
        records = await store.audit.list_recent(10)

    assert sorted((r.request_id, r.tool) for r in records) == [
        ("s1", "a"),
        ("s1", "b"),
        ("s2", None),
    ]
    assert not spill.exists()


async def test_a_line_a_power_loss_cut_short_is_skipped_and_the_rest_replayed(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "audit-journal"
    await killed_process_journal(journal, 3, "k")
    (segment,) = journal.glob("*.jsonl")
    with segment.open("ab") as cut:
        cut.write(b'[4,[{"request_id":"k3","ser')

    async with await Store.open(settings) as store:
        await replayed(store, journal)
        stored = await request_ids(store)

    assert stored == Counter(["k0", "k1", "k2"])
    assert any("is no audit record" in message for message in caplog.messages)


class HeldWriter:
    """The store's audit queries, held shut until the test lets them write."""

    def __init__(self, real: AuditQueries) -> None:
        self.real = real
        self.open = asyncio.Event()

    async def add_many(self, events: Sequence[AuditEvent]) -> None:
        await self.open.wait()
        await self.real.add_many(events)

    async def stored_request_ids(self, request_ids: Collection[str]) -> set[str]:
        return await self.real.stored_request_ids(request_ids)


async def test_past_max_pending_records_are_journaled_only_and_stored_once_caught_up(
    settings: Settings, tmp_path: Path
) -> None:
    journal = tmp_path / "audit-journal"
    async with await Store.open(settings) as store:
        held = HeldWriter(store.audit)
        sink = AuditSink(held, journal, linger_s=0, max_pending=3, batch_size=2)
        await sink.start()
        for n in range(30):
            sink.record([event(f"r{n}")])
            await asyncio.sleep(0)
        assert sink._pending <= 3  # memory stays bounded

        held.open.set()
        assert await sink.settled(10)
        stored = await request_ids(store)
        await sink.close()

    assert stored == Counter(f"r{n}" for n in range(30))
    assert not list(journal.iterdir())


async def test_a_journal_is_locked_while_its_process_lives(tmp_path: Path) -> None:
    live = Journal.open(tmp_path)
    live.append([event("r1")])
    try:
        # Claiming goes through flock: this process's own journal is taken as a live one.
        assert [claimed.name for claimed in claim_dead(tmp_path)] == []
        assert [e.request_id for ex in exchanges(live.path(0)) for e in ex] == ["r1"]
    finally:
        live.close()
