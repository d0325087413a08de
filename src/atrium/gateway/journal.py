"""The audit journal: every audit record on local disk before its response completes.

Each gateway process appends the records of each exchange to a journal of its own, in
``<state_dir>/audit-journal/``, with one ``os.write`` of one JSON line ``[seq, [record, ...]]``
on a file opened ``O_APPEND``: no buffer of ours, no ``fsync``. A process that is killed has
its writes in the kernel's page cache already, and they reach the disk without it; only the
machine losing power can lose them (issue 18: "a plain write, which survives a killed
process"). The background writer (``atrium.gateway.audit``) moves the records to the store in
batches; a segment file is deleted once every exchange in it is settled (stored, or stored
reduced), and a new segment is begun every ``SEGMENT_BYTES``, so a journal holds little more
than what the store has not taken yet.

A process holds an exclusive ``flock`` on its journal's lock file for its whole life; the
kernel releases it when the process dies, however it dies. So a journal whose lock can be
taken belongs to a process that is gone: at start the gateway claims every such journal
(``claim_dead``), replays it into the store and deletes it; several processes sharing one
state directory (replicas on one host, ``gateway.workers``) never replay each other's live
journal, nor the same dead one twice. The lock file is made under a temporary name and renamed
into place once locked, so no other process ever sees an unlocked lock file of a live journal.

Files: ``<name>.lock`` and ``<name>.<segment>.jsonl``, ``<name>`` being ``<pid>-<random>``.
The spill file of earlier versions (``audit-spill.jsonl``, one record per line) is taken over
as the dead journal ``spill-<random>`` (``adopt_spill``), and replayed the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from atrium.store.audit import AuditEvent

logger = logging.getLogger(__name__)

JOURNAL_DIR = "audit-journal"
SEGMENT_BYTES = 4 * 1024 * 1024
_FILE = re.compile(r"(?P<name>[0-9a-z-]+)\.(?:lock|(?P<segment>[0-9]+)\.jsonl)")
_FIELDS = frozenset(f.name for f in fields(AuditEvent))


@dataclass(slots=True)
class Entry:
    """One exchange's records and the segment of this process's journal that holds them
    (``-1``: none, the journal could not be written, or they were read from one)."""

    segment: int
    events: Sequence[AuditEvent]


class Journal:
    """This process's journal, locked from ``open`` to ``close``."""

    def __init__(self, directory: Path, name: str, lock_fd: int, segment_bytes: int) -> None:
        self.directory = directory
        self.name = name
        self._lock_fd: int | None = lock_fd
        self._segment_bytes = segment_bytes
        self._seq = 0
        self._segment = 0  # the segment appended to; its file is opened on first use
        self._fd: int | None = None
        self._size = 0
        self._appended: dict[int, int] = {}  # exchanges per segment, and of them settled:
        self._settled: dict[int, int] = {}
        self._kept: set[int] = set()  # segments that hold records the store would not take

    @classmethod
    def open(cls, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> Journal:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        return cls(directory, name, _locked_file(directory, name), segment_bytes)

    def path(self, segment: int) -> Path:
        return self.directory / f"{self.name}.{segment}.jsonl"

    def append(self, events: Sequence[AuditEvent]) -> int:
        """Journal one exchange's records (one write); the segment that holds them."""
        self._seq += 1
        line = encoded(self._seq, events)
        segment = self._segment
        if self._fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self._fd = os.open(self.path(segment), flags, 0o600)
            self._appended[segment] = 0
        written = os.write(self._fd, line)
        while written < len(line):  # a regular file takes all at once, but for a full disk
            written += os.write(self._fd, line[written:])
        self._appended[segment] += 1
        self._size += len(line)
        if self._size >= self._segment_bytes:
            self._next_segment()
            self._delete_if_settled(segment)
        return segment

    def settle(self, segment: int) -> None:
        """One exchange of ``segment`` is in the store: the segment goes once all are."""
        if segment in self._appended:
            self._settled[segment] = self._settled.get(segment, 0) + 1
            self._delete_if_settled(segment)

    def keep(self, segment: int) -> None:
        """``segment`` holds records the store would not take: it stays, for a later replay."""
        if segment in self._appended:
            self._kept.add(segment)

    def rotate(self) -> list[Path]:
        """Begin a new segment and let go of every earlier one still here: their records are
        in the store or only here; the caller replays them (skipping those stored) and
        deletes them."""
        self._next_segment()
        earlier = sorted(segment for segment in self._appended if segment != self._segment)
        for segment in earlier:
            self._forget(segment)
        return [path for path in map(self.path, earlier) if path.exists()]

    def close(self) -> None:
        """Delete the settled segments and release the lock. What is left (records the store
        did not take) stays, with the lock file, for the next start to replay."""
        self._next_segment()
        for segment in list(self._appended):
            self._delete_if_settled(segment)
        if self._lock_fd is None:
            return
        if not any(self.directory.glob(f"{self.name}.*.jsonl")):
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{self.name}.lock").unlink()
        os.close(self._lock_fd)
        self._lock_fd = None

    def _next_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._segment += 1
            self._size = 0

    def _delete_if_settled(self, segment: int) -> None:
        if segment == self._segment and self._fd is not None:
            return  # still being written
        if segment in self._kept or self._settled.get(segment, 0) < self._appended[segment]:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path(segment).unlink()
        self._forget(segment)

    def _forget(self, segment: int) -> None:
        self._appended.pop(segment, None)
        self._settled.pop(segment, None)
        self._kept.discard(segment)


def _locked_file(directory: Path, name: str) -> int:
    """``<name>.lock``, locked before it appears under that name (``claim_dead`` ignores the
    temporary one: it would take the lock of a journal about to be written)."""
    temporary = directory / f"{name}.new"
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(temporary, directory / f"{name}.lock")
    except OSError:
        os.close(fd)
        raise
    return fd


# -- lines -------------------------------------------------------------------------------


def encoded(seq: int, events: Sequence[AuditEvent]) -> bytes:
    """The journal line of one exchange: ``[seq, [record, ...]]`` and a newline. orjson takes
    the dataclasses as they are; what it refuses (a lone surrogate, nesting past its limit)
    goes through ``json``, which escapes it; what even that refuses loses its arguments."""
    try:
        return orjson.dumps([seq, events], option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        pass
    try:
        return (
            json.dumps([seq, [event.to_json() for event in events]], default=str).encode() + b"\n"
        )
    except (ValueError, RecursionError):
        bare = [replace(event, arguments=None).to_json() for event in events]
        return json.dumps([seq, bare], default=str).encode() + b"\n"


def exchanges(path: Path) -> Iterator[list[AuditEvent]]:
    """The exchanges of a journal segment, in order: each line ``[seq, [record, ...]]``; a line
    of the old spill file (one record) joins the line before it of the same request. A line
    that is no record (the end of a file a power loss cut) is logged and skipped."""
    pending: list[AuditEvent] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            decoded = _decoded(line)
            if decoded is None:
                if line.strip():
                    logger.warning("%s:%d is no audit record; skipped", path, number)
                continue
            records, spilled = decoded
            if pending and not (spilled and records[0].request_id == pending[0].request_id):
                yield pending
                pending = []
            pending += records
    if pending:
        yield pending


def batches(path: Path, size: int) -> Iterator[list[Entry]]:
    """The exchanges of a segment, in batches of about ``size`` records."""
    batch: list[Entry] = []
    count = 0
    for events in exchanges(path):
        batch.append(Entry(-1, events))
        count += len(events)
        if count >= size:
            yield batch
            batch, count = [], 0
    if batch:
        yield batch


def _decoded(line: bytes) -> tuple[list[AuditEvent], bool] | None:
    """The records of a line, and whether it is a spilled one (a single record)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(line)  # an escaped lone surrogate, which orjson refuses
        except ValueError:
            return None
    try:
        if isinstance(data, dict):
            return [_event(data)], True
        _, records = data
        events = [_event(record) for record in records]
    except (TypeError, ValueError):
        return None
    return (events, False) if events else None


def _event(data: dict[str, Any]) -> AuditEvent:
    values = {name: value for name, value in data.items() if name in _FIELDS}
    at = values.get("at")
    values["at"] = datetime.fromisoformat(at) if isinstance(at, str) else datetime.now(UTC)
    return AuditEvent(**values)


# -- journals of processes that are gone ---------------------------------------------------


@dataclass
class Claimed:
    """A journal whose process is gone, locked by this one while it replays it."""

    name: str
    segments: list[Path]
    lock: Path
    fd: int

    def release(self) -> None:
        """Unlock it; once its segments are gone (replayed), its lock file goes too."""
        if not any(path.exists() for path in self.segments):
            with contextlib.suppress(FileNotFoundError):
                self.lock.unlink()
        os.close(self.fd)


def claim_dead(directory: Path) -> Iterator[Claimed]:
    """Each journal in ``directory`` whose lock can be taken (its process is gone; a journal
    without a lock file is one too), locked until the caller releases it."""
    names: set[str] = set()
    with contextlib.suppress(FileNotFoundError):
        for path in directory.iterdir():
            if (match := _FILE.fullmatch(path.name)) is not None:
                names.add(match["name"])
    for name in sorted(names):
        lock = directory / f"{name}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # alive: it replays its own
            continue
        yield Claimed(name, _segments(directory, name), lock, fd)


def _segments(directory: Path, name: str) -> list[Path]:
    found = []
    for path in directory.glob(f"{name}.*.jsonl"):
        match = _FILE.fullmatch(path.name)
        if match is not None and match["name"] == name:
            found.append((int(match["segment"]), path))
    return [path for _, path in sorted(found)]


def adopt_spill(spill: Path, directory: Path) -> None:
    """Take the spill file of earlier versions over as a dead journal. A rename: of processes
    starting together, one takes it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        spill.rename(directory / f"spill-{secrets.token_hex(4)}.0.jsonl")
        logger.info("the audit spill file %s is replayed from the journal", spill)
