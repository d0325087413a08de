"""The audit trail: one record per JSON-RPC request through the gateway, exactly one (issue 18).

Recording never waits on the store: an exchange's records are appended to this process's
journal (``atrium.gateway.journal``: one ``os.write``, which outlives a killed process) before
its response completes, and go into an in-memory queue from which a background task writes
batches to the store. The journal is replayed at start, so a SIGKILL loses nothing; records
already stored are skipped (by request id), so none is stored twice.

Each exchange's records are written in one transaction, so "stored" is true of an exchange
whole. The store makes every value fit its column (``atrium.store.audit_rows.storable``); a
batch it refuses all the same is written exchange by exchange, and one it refuses alone is
stored ``reduced`` (its values replaced, the error says why): one odd record costs only its
own details. While the store is down the writer retries, backing off up to ``MAX_BACKOFF_S``;
memory stays bounded (``max_pending``): past it records are in the journal only, and the writer
replays them from there once it has caught up. On graceful shutdown the queue is drained before
the store closes; what the store will not take by then stays in the journal for the next start.

Listeners (the ``/metrics`` counters) see each record as it is recorded, in the request's own
task: every path that audits a request (the MCP endpoint, the OpenAPI tool routes) is counted
by the same code, and none of them needs to know the metrics exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from atrium.errors import AtriumError
from atrium.gateway.journal import (
    SEGMENT_BYTES,
    Entry,
    Journal,
    adopt_spill,
    batches,
    claim_dead,
)
from atrium.redaction import redacted_arguments
from atrium.store.audit import AuditEvent
from atrium.store.audit_rows import RecordRefused, reduced

logger = logging.getLogger(__name__)

MAX_ARGUMENT_BYTES = 8 * 1024
MAX_NAME_CHARS = 256  # jsonrpc.MAX_TOOL_NAME: a longer name is refused, and recorded cut


def capped_arguments(arguments: Any, tool: str | None = None) -> Any:
    """Arguments with secret-looking values redacted (and the secret arguments of ``tool``:
    ``atrium.redaction.SECRET_ARGUMENTS``), cut to ``MAX_ARGUMENT_BYTES`` of JSON."""
    if arguments is None:
        return None
    safe = redacted_arguments(arguments, tool)
    encoded = orjson.dumps(safe)
    if len(encoded) <= MAX_ARGUMENT_BYTES:
        return safe
    preview = encoded[:MAX_ARGUMENT_BYTES].decode("utf-8", errors="ignore")
    return {"_truncated": True, "_bytes": len(encoded), "preview": preview}


def recorded_name(name: str | None) -> str | None:
    """A method or tool name as the audit keeps it: what a client sent, but never a character
    that would act on the terminal of an operator reading the trail (shown as ``\\x1b``,
    ``\\u202e``), and at most ``MAX_NAME_CHARS``. The gateway refuses such tool names; this is
    for the record of the refusal, and for names on paths that do not refuse them."""
    if name is None or (len(name) <= MAX_NAME_CHARS and name.isprintable()):
        return name
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name[: MAX_NAME_CHARS + 1])
    return shown if len(shown) <= MAX_NAME_CHARS else shown[: MAX_NAME_CHARS - 1] + "…"


class AuditWriter(Protocol):
    """The store's side (``atrium.store.audit.AuditQueries``): ``add_many`` writes in one
    transaction, raising ``RecordRefused`` for records it will never take as they are."""

    async def add_many(self, events: Sequence[AuditEvent]) -> None: ...

    async def stored_request_ids(self, request_ids: Collection[str]) -> set[str]: ...


AuditListener = Callable[[AuditEvent], None]
# Tries of a batch before the writer lets the journal keep it: while closing, or replaying at
# start (the gateway must start even with the store unwell). Otherwise it never gives up.
WRITE_ATTEMPTS = 3
MAX_BACKOFF_S = 5.0
# A value of the caller's or a bug of ours, not the store being down.
_ROW_FAULTS = (RecordRefused, ValueError, TypeError)
Stored = Literal["stored", "reduced", "left", "down"]


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _events(entries: Iterable[Entry]) -> list[AuditEvent]:
    return [event for entry in entries for event in entry.events]


class AuditSink:
    def __init__(
        self,
        writer: AuditWriter,
        journal_dir: Path,
        *,
        listeners: Sequence[AuditListener] = (),
        batch_size: int = 500,
        linger_s: float = 0.05,
        max_pending: int = 100_000,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self._writer = writer
        self._dir = journal_dir
        self._listeners = tuple(listeners)
        self._batch = batch_size
        self._linger_s = linger_s
        self._max_pending = max_pending
        self._segment_bytes = segment_bytes
        self._journal: Journal | None = None
        # ``None`` is the stop sentinel: the writer finishes its batch, drains, and ends.
        self._queue: asyncio.Queue[Entry | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._pending = 0  # records queued or in a batch being written
        # Records in a journal only: ours past ``max_pending``, or a dead process's not
        # replayed at start (``_dead_left``). The writer replays them once it has caught up.
        self._behind = False
        self._dead_left = False
        self._settled = asyncio.Event()
        self._settled.set()
        self._closing = asyncio.Event()
        self._given_up = False  # closing with the store down: the journal keeps the rest

    async def start(self, legacy_spill: Path | None = None) -> None:
        """Open this process's journal; replay into the store the journals of processes that
        are gone (and ``legacy_spill``, the spill file of earlier versions); start the
        writer. What the store does not take now, the writer replays later."""
        try:
            self._journal = Journal.open(self._dir, segment_bytes=self._segment_bytes)
        except OSError as exc:
            raise AtriumError(f"cannot open the audit journal in {self._dir}: {exc}") from None
        if legacy_spill is not None:
            adopt_spill(legacy_spill, self._dir)
        if not await self._replay_dead(patient=False):
            self._dead_left = self._behind = True
            self._settled.clear()
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    def record(self, events: Sequence[AuditEvent]) -> None:
        """Record one exchange: journaled now, stored soon."""
        if not events:
            return
        segment = self._journaled(events)
        if self._pending < self._max_pending:
            self._pending += len(events)
            self._settled.clear()
            self._queue.put_nowait(Entry(segment, events))
        elif segment >= 0:
            self._behind = True
            self._settled.clear()
        else:
            logger.error("the audit records of request %s are lost", events[0].request_id)
        # After queueing: a listener that fails cannot cost the audit trail its record, nor
        # (this runs inside the response's last ``send``) the client its answer.
        for event in events:
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:  # a bug of the listener's: logged, the answer goes on
                    logger.exception("audit listener %r failed", listener)

    def _journaled(self, events: Sequence[AuditEvent]) -> int:
        if self._journal is None:
            return -1
        try:
            return self._journal.append(events)
        except OSError:
            logger.exception("cannot write the audit journal in %s", self._dir)
            return -1

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            if self._behind and self._queue.empty():
                await self._catch_up()
            first = await self._queue.get()
            if first is not None and self._pending < self._batch:
                # Linger: one INSERT of many rows costs about what one of a single row does.
                await asyncio.sleep(self._linger_s)
            batch, stopping = self._take([first])
            await self._write(batch)

    def _take(self, taken: list[Entry | None]) -> tuple[list[Entry], bool]:
        """Whole exchanges up to ``batch_size`` records (at least one exchange)."""
        count = sum(len(entry.events) for entry in taken if entry is not None)
        while count < self._batch and not self._queue.empty():
            entry = self._queue.get_nowait()
            taken.append(entry)
            count += len(entry.events) if entry is not None else 0
        entries = [entry for entry in taken if entry is not None]
        return entries, len(entries) != len(taken)

    async def settled(self, timeout_s: float = 2.0) -> bool:
        """Wait (at most ``timeout_s``) until every record so far is in the store: for a
        reader that looks up a request it has just seen answered."""
        try:
            await asyncio.wait_for(self._settled.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _check_settled(self) -> None:
        if self._pending <= 0 and not self._behind:
            self._pending = 0
            self._settled.set()

    async def _write(self, entries: list[Entry]) -> None:
        left = entries
        try:
            left = await self._store(entries)
        finally:
            kept = {id(entry) for entry in left}
            if self._journal is not None:
                for entry in entries:
                    if id(entry) in kept:
                        self._journal.keep(entry.segment)
                    else:
                        self._journal.settle(entry.segment)
            self._pending -= len(_events(entries))
            self._check_settled()

    async def _store(
        self, entries: list[Entry], *, dedupe: bool = False, patient: bool = True
    ) -> list[Entry]:
        """Store ``entries`` (skipping, with ``dedupe``, those stored already); return those
        left to the journal. A batch the store refuses is written exchange by exchange
        (``_one_by_one``); while it is down, the rest is tried again, backing off, until it
        takes it, or (``patient`` false, or closing) ``WRITE_ATTEMPTS`` tries."""
        if self._given_up:
            return entries
        left: list[Entry] = []
        attempt = 0
        while True:
            attempt += 1
            try:
                if dedupe or attempt > 1:  # a failed commit may have been a commit all the same
                    entries = await self._unstored(entries)
                if entries:
                    await self._writer.add_many(_events(entries))
                return left
            except Exception as exc:  # noqa: BLE001 (find the rows at fault, or retry)
                logger.warning(
                    "writing %d audit records failed (attempt %d): %s",
                    len(_events(entries)),
                    attempt,
                    _reason(exc),
                )
            refused, entries = await self._one_by_one(entries)
            left += refused
            if not entries:
                return left
            if self._given_up or (attempt >= WRITE_ATTEMPTS and not self._patient(patient)):
                self._given_up = self._closing.is_set()
                return left + entries
            await self._pause(attempt)

    def _patient(self, patient: bool) -> bool:
        return patient and not self._closing.is_set()

    async def _pause(self, attempt: int) -> None:
        """Back off before the next try; a shutdown cuts the wait short."""
        delay = min(0.2 * 2**attempt, MAX_BACKOFF_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    async def _one_by_one(self, entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
        """Write each exchange alone, skipping those the failed batch stored after all; the
        exchanges left to the journal, and those still to write (from the first the store
        failed to take for being down)."""
        try:
            entries = await self._unstored(entries)
        except Exception:  # noqa: BLE001 (the store is down: each entry is still to write)
            return [], entries
        left: list[Entry] = []
        for index, entry in enumerate(entries):
            stored = await self._store_one(entry)
            if stored == "down":
                return left, entries[index:]
            if stored == "left":
                left.append(entry)
        return left, []

    async def _store_one(self, entry: Entry) -> Stored:
        """Store one exchange's records; refused as they are, ``reduced``. When even that
        fails for another reason than the records, the store is down."""
        reason = ""
        for _ in range(2):  # twice: the first may have met a connection the database dropped
            try:
                await self._writer.add_many(entry.events)
                return "stored"
            except _ROW_FAULTS as exc:
                reason = _reason(exc)
                break
            except Exception as exc:  # noqa: BLE001 (judged by the reduced records below)
                reason = _reason(exc)
        try:
            await self._writer.add_many([reduced(event, reason) for event in entry.events])
        except _ROW_FAULTS:
            logger.exception(
                "the store refused the audit record of request %s even reduced; it stays in"
                " the journal in %s (%s)",
                entry.events[0].request_id,
                self._dir,
                reason,
            )
            return "left"
        except Exception:  # noqa: BLE001 (the store is down: this entry waits with the rest)
            return "down"
        logger.warning(
            "the audit record of request %s (server %s) is stored reduced: %s",
            entry.events[0].request_id,
            entry.events[0].server,
            reason,
        )
        return "reduced"

    async def _unstored(self, entries: list[Entry]) -> list[Entry]:
        """The entries whose request has no record stored (all of an exchange's records are
        stored in one transaction, and share its request id)."""
        ids = {entry.events[0].request_id for entry in entries if entry.events}
        stored = await self._writer.stored_request_ids(ids) if ids else set()
        return [e for e in entries if e.events and e.events[0].request_id not in stored]

    # -- replaying journals ---------------------------------------------------------------

    async def _catch_up(self) -> None:
        """Store what is in a journal only. The queue is empty: every record of this
        process's segments so far is in the store, or in the journal only."""
        assert self._journal is not None
        self._behind = False
        if not await self._replay(self._journal.rotate(), patient=True):
            self._behind = True
        if self._dead_left:
            self._dead_left = not await self._replay_dead(patient=True)
            self._behind = self._behind or self._dead_left
        self._check_settled()

    async def _replay_dead(self, *, patient: bool) -> bool:
        """Replay and delete every journal whose process is gone; false when the store gave
        up on some (they are replayed later)."""
        complete = True
        for claimed in claim_dead(self._dir):
            done = False
            try:
                done = await self._replay(claimed.segments, patient=patient)
            finally:
                claimed.release()
            if done and claimed.segments:
                logger.info("replayed the audit journal %s of a process that is gone", claimed.name)
            complete = complete and done
        return complete

    async def _replay(self, segments: list[Path], *, patient: bool) -> bool:
        """Store the records of ``segments`` that are not stored yet, deleting each segment
        once they are. False when the store gave up (it is down): to be replayed later. A
        segment holding a record the store refused even reduced stays for the next start."""
        for path in segments:
            kept = False
            for chunk in batches(path, self._batch):
                if await self._store(chunk, dedupe=True, patient=patient):
                    if not self._patient(patient):
                        logger.warning("the audit journal %s is kept for a later replay", path)
                        return False
                    kept = True
            if not kept:
                path.unlink(missing_ok=True)
        return True

    async def close(self) -> None:
        """Write whatever is queued (and what is in the journal only), then stop the writer
        and release the journal. What the store will not take stays in the journal."""
        self._closing.set()
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task
        while not self._queue.empty():  # the writer stopped at the sentinel; anything after it
            batch, _ = self._take([])
            await self._write(batch)
        if self._behind and not self._given_up and self._journal is not None:
            await self._catch_up()
        if self._journal is not None:
            self._journal.close()
