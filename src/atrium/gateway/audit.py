"""The audit trail: one record per JSON-RPC request through the gateway.

Recording never blocks a response: a record goes into an in-memory queue and a background task
writes batches to the store. On graceful shutdown the queue is drained before the store closes;
when the store cannot be written, batches are retried, and past a bound they are appended to a
spill file (JSON lines) instead of being dropped, so nothing is lost. The store makes every value
fit its column (``atrium.store.audit.storable``); a batch it refuses all the same is written row
by row, so that one record it cannot take costs only itself (issue 18).

Listeners (the ``/metrics`` counters) see each record as it is recorded, in the request's own
task: every path that audits a request (the MCP endpoint, the OpenAPI tool routes) is counted
by the same code, and none of them needs to know the metrics exist.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

from atrium.redaction import redacted_arguments
from atrium.store.audit import AuditEvent

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
    async def add_many(self, events: Sequence[AuditEvent]) -> None: ...


AuditListener = Callable[[AuditEvent], None]
WRITE_ATTEMPTS = 3


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _spilled(event: AuditEvent) -> bytes:
    """A JSON line of ``event``; orjson refuses a lone surrogate, ``json`` escapes it."""
    data = event.to_json()
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:
        return json.dumps(data, default=str).encode()


class AuditSink:
    def __init__(
        self,
        writer: AuditWriter,
        spill_file: Path,
        *,
        listeners: Sequence[AuditListener] = (),
        batch_size: int = 500,
        linger_s: float = 0.05,
        max_pending: int = 100_000,
    ) -> None:
        self._writer = writer
        self._spill = spill_file
        self._listeners = tuple(listeners)
        self._batch = batch_size
        self._linger_s = linger_s
        self._max_pending = max_pending
        # ``None`` is the stop sentinel: the writer finishes its batch, drains, and ends.
        self._queue: asyncio.Queue[AuditEvent | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._unwritten = 0  # queued or in a batch being written
        self._settled = asyncio.Event()
        self._settled.set()

    def record(self, event: AuditEvent) -> None:
        if self._queue.qsize() >= self._max_pending:
            self._spill_events([event])
        else:
            self._unwritten += 1
            self._settled.clear()
            self._queue.put_nowait(event)
        # After queueing: a listener that fails cannot cost the audit trail its record.
        for listener in self._listeners:
            listener(event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is not None and self._queue.qsize() < self._batch:
                # Linger: one INSERT of many rows costs about what one of a single row does.
                await asyncio.sleep(self._linger_s)
            batch, stopping = self._take([first])
            await self._write(batch)

    def _take(self, taken: list[AuditEvent | None]) -> tuple[list[AuditEvent], bool]:
        while len(taken) < self._batch and not self._queue.empty():
            taken.append(self._queue.get_nowait())
        events = [event for event in taken if event is not None]
        return events, len(events) != len(taken)

    async def settled(self, timeout_s: float = 2.0) -> bool:
        """Wait (at most ``timeout_s``) until every record so far is in the store or spilled:
        for a reader that looks up a request it has just seen answered."""
        try:
            await asyncio.wait_for(self._settled.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _write(self, events: list[AuditEvent]) -> None:
        try:
            await self._write_or_spill(events)
        finally:
            self._unwritten -= len(events)
            if self._unwritten <= 0:
                self._unwritten = 0
                self._settled.set()

    async def _write_or_spill(self, events: list[AuditEvent]) -> None:
        """Write ``events`` in one batch; when the store refuses it, row by row, so that a
        record it cannot take costs only itself (``_one_by_one``). What it takes from none
        of them (it is down) is retried, then spilled."""
        if not events:
            return
        pending, reason = events, ""
        for attempt in range(WRITE_ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.2 * 2**attempt)
            try:
                await self._writer.add_many(pending)
                return
            except Exception as exc:  # the top of a task: find the rows at fault, or retry
                reason = _reason(exc)
                logger.exception(
                    "writing %d audit records failed (attempt %d)", len(pending), attempt + 1
                )
            if len(pending) > 1:
                pending = await self._one_by_one(pending)
                if not pending:
                    return
        self._spill_events(pending, reason)

    async def _one_by_one(self, events: list[AuditEvent]) -> list[AuditEvent]:
        """Write each event alone, and return those still to write. A record the store
        refuses while it takes others is at fault itself: spilled, with the reason. When the
        first two tried both fail, the store is (it is down): no use going on one at a time,
        every event is still to write."""
        refused: list[tuple[AuditEvent, str]] = []
        taken = False
        for event in events:
            try:
                await self._writer.add_many([event])
                taken = True
            except Exception as exc:  # noqa: BLE001 (the top of a task: its reason is logged)
                refused.append((event, _reason(exc)))
                if not taken and len(refused) == 2:
                    return events
        for event, reason in refused:
            self._spill_events([event], reason)
        return []

    def _spill_events(self, events: list[AuditEvent], reason: str = "the queue is full") -> None:
        self._spill.parent.mkdir(parents=True, exist_ok=True)
        with self._spill.open("ab") as stream:
            for event in events:
                stream.write(_spilled(event) + b"\n")
        if len(events) == 1:
            logger.warning(
                "the audit record of request %s (server %s) spilled to %s: %s",
                events[0].request_id,
                events[0].server,
                self._spill,
                reason,
            )
        else:
            logger.warning("%d audit records spilled to %s: %s", len(events), self._spill, reason)

    async def close(self) -> None:
        """Write whatever is queued, then stop the writer; no record is lost."""
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task
        while not self._queue.empty():  # the writer stopped at the sentinel; anything after it
            batch, _ = self._take([])
            await self._write(batch)
