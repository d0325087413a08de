"""Writing and reading the process logs: ``logs/gateway.log`` and ``logs/mcp-<name>.log``.

Atrium's processes write lines as ``<time> <LEVEL> <logger>: <message>`` (the stdio bridge adds
``[server]`` after the level); a third-party server may write anything. So a line is read
leniently. A line that starts with a timestamp, a level or the supervisor's ``--- atrium:``
marker starts a record; any other line (a traceback, the rest of a multi-line message)
continues the record above it and takes its time and level. A record that names no level
counts as INFO; lines before the first timestamp of a file have no time.
"""

from __future__ import annotations

import heapq
import logging
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
GATEWAY_LOG = "gateway.log"

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}

_TIME = (
    r"(?P<time>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?"
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?)"
)
_LEVEL = r"(?P<level>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)"
_STAMPED = re.compile(rf"\[?{_TIME}\]?(?:\s+\[?{_LEVEL}\]?(?=[\s:]|$))?")
_LEVELLED = re.compile(rf"{_LEVEL}(?=:|\s)")
_MARKER = "--- atrium:"
_LOGGER_PREFIX = re.compile(r"\s*(?:\[[^\]]*\]\s+)?[\w.\-]+: ")
_NO_TIME = datetime.min.replace(tzinfo=UTC)


def log_tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path``; none when it does not exist (yet)."""
    if lines <= 0:
        return []
    try:
        with path.open("r", encoding="utf-8", errors="replace") as stream:
            return [line.rstrip("\n") for line in deque(stream, maxlen=lines)]
    except OSError:
        return []


class IsoTimeFormatter(logging.Formatter):
    """``LOG_FORMAT`` with the time in ISO 8601, milliseconds and the UTC offset included.

    The offset makes lines of processes in different time zones (a container, a remote host)
    comparable when ``atrium infra logs view`` merges them.
    """

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created).astimezone()
        return moment.isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a log file, with what it inherits from the record it belongs to."""

    source: str  # the file's name, e.g. "gateway.log"
    text: str
    at: datetime | None  # its record's time (always with a time zone), None before any
    level: int  # its record's level; INFO when the record names none
    head: str  # the first line of its record: itself, or the line it continues

    @property
    def level_name(self) -> str:
        return logging.getLevelName(self.level)


def parse_lines(source: str, lines: Iterable[str]) -> Iterator[LogLine]:
    """Read ``lines`` of the file named ``source``; blank lines are skipped."""
    at: datetime | None = None
    level = logging.INFO
    head = ""
    for raw in lines:
        text = raw.rstrip("\r\n")
        if not text.strip():
            continue
        started = _record_start(text)
        if started is not None:
            own_time, own_level = started
            at = own_time or at
            level = own_level or logging.INFO
            head = text
        yield LogLine(source, text, at, level, head or text)


def _record_start(text: str) -> tuple[datetime | None, int | None] | None:
    """The time and level a line starts with, or None when it continues a record."""
    if match := _STAMPED.match(text):
        return _parse_time(match["time"]), _level(match["level"])
    if match := _LEVELLED.match(text):
        return None, _level(match["level"])
    if text.startswith(_MARKER):
        return None, None
    return None


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        return None
    # logging's default asctime is local time without an offset.
    return moment if moment.tzinfo is not None else moment.astimezone()


def _level(name: str | None) -> int | None:
    return LEVELS[name.lower()] if name else None


def message_of(line: str) -> str:
    """A record's message: its line without the time, level and logger name."""
    if match := _STAMPED.match(line):
        rest = line[match.end() :]
    elif match := _LEVELLED.match(line):
        rest = line[match.end() :].lstrip(":")
    else:
        rest = line
    if prefix := _LOGGER_PREFIX.match(rest):
        return rest[prefix.end() :]
    return rest.strip()


def mentions(text: str, name: str) -> bool:
    """Whether ``text`` names ``name`` as a word, not inside a path, dotted name or longer name."""
    pattern = rf"(?<![\w./-]){re.escape(name)}(?![\w-]|[./]\w)"
    return re.search(pattern, text) is not None


def parse_since(text: str, now: datetime) -> datetime:
    """``30m``, ``1h``, ``2d``, ``1w``, ``1h30m`` before ``now``, or an ISO 8601 time.

    An ISO time without an offset is local time. Raises ``ValueError`` for anything else.
    """
    value = text.strip()
    if re.fullmatch(r"(?:\d+\s*[smhdw]\s*)+", value, re.IGNORECASE):
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
        seconds = sum(
            int(amount) * units[unit.lower()]
            for amount, unit in re.findall(r"(\d+)\s*([smhdw])", value, re.IGNORECASE)
        )
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30m, 1h, 2d, 1w) nor an ISO time"
            " (2025-06-01T12:00, 2025-06-01T12:00:00+02:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.astimezone()


@dataclass(frozen=True)
class LogQuery:
    """Which lines ``atrium infra logs view`` shows."""

    min_level: int = logging.DEBUG
    since: datetime | None = None
    server: str | None = None  # that server's log, and the gateway lines that name it
    limit: int | None = None  # the newest lines; None for all


def read_log(path: Path) -> Iterator[LogLine]:
    """The lines of one log file; none when it cannot be read."""
    try:
        stream = path.open("r", encoding="utf-8", errors="replace")
    except OSError:
        return
    with stream:
        yield from parse_lines(path.name, stream)


def log_files(logs_dir: Path, server: str | None = None) -> list[Path]:
    """The gateway's log and every server's log (or only ``server``'s) that exist."""
    servers = [logs_dir / f"mcp-{server}.log"] if server else sorted(logs_dir.glob("mcp-*.log"))
    return [path for path in [logs_dir / GATEWAY_LOG, *servers] if path.is_file()]


def view_logs(logs_dir: Path, query: LogQuery) -> list[LogLine]:
    """The lines ``query`` selects from the files under ``logs_dir``, merged in time order.

    Each file is read once, as a stream; at most ``query.limit`` lines are held.
    """
    streams = [
        _selected(read_log(path), query, only_mentions=path.name == GATEWAY_LOG)
        for path in log_files(logs_dir, query.server)
    ]
    merged = merge(streams)
    if query.limit is None:
        return list(merged)
    return list(deque(merged, maxlen=query.limit))


def _selected(
    lines: Iterable[LogLine], query: LogQuery, *, only_mentions: bool
) -> Iterator[LogLine]:
    named = query.server if only_mentions else None
    last_head, last_answer = None, False
    for line in lines:
        if line.level < query.min_level:
            continue
        if query.since is not None and (line.at is None or line.at < query.since):
            continue
        if named is not None:
            if line.head is not last_head:  # every line of a record shares its head
                last_head, last_answer = line.head, mentions(message_of(line.head), named)
            if not last_answer:
                continue
        yield line


def merge(streams: Iterable[Iterable[LogLine]]) -> Iterator[LogLine]:
    """Lines of several files in time order; lines of equal time keep their file's order."""
    return heapq.merge(*streams, key=lambda line: line.at or _NO_TIME)
