"""Reading log lines for ``atrium infra logs view`` (``atrium.supervisor.logs``): times,
levels, records spanning several lines, ``--since``, and merging the files in time order."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from atrium.supervisor.logs import (
    IsoTimeFormatter,
    LogQuery,
    mentions,
    message_of,
    parse_lines,
    parse_since,
    view_logs,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def one(text: str) -> tuple[datetime | None, str]:
    (line,) = parse_lines("x.log", [text])
    return line.at, line.level_name


def test_the_time_and_level_of_each_format_atrium_writes_are_read() -> None:
    server = "2026-06-01T12:00:01+0000 WARNING uvicorn.error: slow"
    gateway = "2026-06-01T14:00:02.250+02:00 ERROR atrium.gateway.proxy: broke off"
    bridge = "2026-06-01 12:00:03,500 DEBUG [time] mcp.client: sent"

    assert one(server) == (datetime(2026, 6, 1, 12, 0, 1, tzinfo=UTC), "WARNING")
    assert one(gateway) == (datetime(2026, 6, 1, 12, 0, 2, 250000, tzinfo=UTC), "ERROR")
    # logging's default asctime has no offset: it is local time
    assert one(bridge) == (datetime(2026, 6, 1, 12, 0, 3, 500000).astimezone(), "DEBUG")


def test_a_record_that_names_no_level_counts_as_info() -> None:
    assert one("2026-06-01T12:00:00+00:00 server ready") == (NOW, "INFO")


def test_a_line_without_a_time_continues_the_record_above_with_its_time_and_level() -> None:
    lines = list(
        parse_lines(
            "mcp-a.log",
            [
                "2026-06-01T12:00:00+0000 ERROR atrium.x: it failed",
                "Traceback (most recent call last):",
                '  File "x.py", line 1, in <module>',
                "",
                "ValueError: nope",
                "2026-06-01T12:00:05+0000 INFO atrium.x: recovered",
            ],
        )
    )

    assert [line.level_name for line in lines] == ["ERROR"] * 4 + ["INFO"]
    assert [line.at for line in lines] == [NOW] * 4 + [NOW + timedelta(seconds=5)]
    assert {line.head for line in lines[:4]} == {
        "2026-06-01T12:00:00+0000 ERROR atrium.x: it failed"
    }


def test_a_level_or_the_supervisors_marker_starts_a_record_that_keeps_the_last_time() -> None:
    lines = list(
        parse_lines(
            "mcp-a.log",
            [
                "2026-06-01T12:00:00+0000 ERROR atrium.x: crashed",
                "--- atrium: starting atrium-mcp-a --port 5000",
                "WARNING:  uvicorn's own format",
            ],
        )
    )

    assert [(line.at, line.level_name) for line in lines] == [
        (NOW, "ERROR"),
        (NOW, "INFO"),
        (NOW, "WARNING"),
    ]


def test_lines_before_the_first_time_have_none_and_count_as_info() -> None:
    (line,) = parse_lines("mcp-a.log", ["Secure MCP Filesystem Server running on stdio"])

    assert (line.at, line.level_name) == (None, "INFO")


def test_the_message_is_the_line_without_time_level_and_logger() -> None:
    assert (
        message_of("2026-06-01T12:00:00+0000 INFO atrium.supervisor: server a up") == "server a up"
    )
    assert message_of("2026-06-01 12:00:00,1 INFO [time] mcp.client: sent") == "sent"
    assert message_of("INFO:     Started server process") == "Started server process"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server atrium running on port 5010", True),
        ("server 'atrium' exited with code 1", True),
        ("servers: atrium, soul", True),
        ("started atrium-mcp-atrium", False),
        ("/home/me/atrium/logs is missing", False),
        ("module atrium.gateway failed", False),
        ("server atriums", False),
    ],
)
def test_a_server_is_mentioned_only_as_a_word_of_its_own(text: str, expected: bool) -> None:
    assert mentions(text, "atrium") is expected


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("45s", timedelta(seconds=45)),
        ("1h30m", timedelta(minutes=90)),
        ("2H", timedelta(hours=2)),
    ],
)
def test_since_a_duration_is_that_long_before_now(text: str, delta: timedelta) -> None:
    assert parse_since(text, NOW) == NOW - delta


def test_since_an_iso_time_keeps_its_offset_and_a_naive_one_is_local_time() -> None:
    plus_two = timezone(timedelta(hours=2))

    assert parse_since("2026-06-01T14:00+02:00", NOW) == datetime(2026, 6, 1, 14, tzinfo=plus_two)
    assert parse_since("2026-06-01T09:30", NOW) == datetime(2026, 6, 1, 9, 30).astimezone()
    assert parse_since("2026-06-01", NOW) == datetime(2026, 6, 1).astimezone()


@pytest.mark.parametrize("text", ["yesterday", "90", "1 hour", "-1h", ""])
def test_since_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_since(text, NOW)


def test_the_gateway_formatter_writes_times_the_reader_gives_back() -> None:
    record = logging.LogRecord("atrium.x", logging.WARNING, __file__, 1, "hello", None, None)

    at, level = one(IsoTimeFormatter().format(record))

    assert level == "WARNING"
    assert at is not None
    assert abs(at.timestamp() - record.created) < 0.001


def write_logs(logs: Path) -> None:
    logs.mkdir()
    (logs / "gateway.log").write_text(
        "2026-06-01T12:00:00+00:00 INFO atrium.gateway.serve: gateway listening\n"
        "2026-06-01T12:00:02+00:00 INFO atrium.supervisor: server a running on port 5001\n"
        "2026-06-01T12:00:04+00:00 ERROR atrium.supervisor: server b exited with code 1\n"
        "Traceback (most recent call last):\n"
        "RuntimeError: b broke\n"
    )
    (logs / "mcp-a.log").write_text(
        "--- atrium: starting atrium-mcp-a\n"
        "2026-06-01T12:00:01+0000 INFO a.server: a listening\n"
        "2026-06-01T12:00:03+0000 WARNING a.server: a is slow\n"
    )
    (logs / "mcp-b.log").write_text("2026-06-01T12:00:03.500+0000 ERROR b.server: b failed\n")


def shown(logs: Path, query: LogQuery) -> list[str]:
    """``<file>: <message>`` of a record's first line, ``<file>: <line>`` of the others."""
    return [
        f"{line.source}: {message_of(line.text) if line.text == line.head else line.text}"
        for line in view_logs(logs, query)
    ]


def test_every_file_is_merged_in_time_order_with_its_name(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs")

    assert shown(tmp_path / "logs", LogQuery()) == [
        "mcp-a.log: --- atrium: starting atrium-mcp-a",
        "gateway.log: gateway listening",
        "mcp-a.log: a listening",
        "gateway.log: server a running on port 5001",
        "mcp-a.log: a is slow",
        "mcp-b.log: b failed",
        "gateway.log: server b exited with code 1",
        "gateway.log: Traceback (most recent call last):",
        "gateway.log: RuntimeError: b broke",
    ]


def test_a_minimum_level_keeps_an_errors_traceback(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs")

    assert shown(tmp_path / "logs", LogQuery(min_level=logging.ERROR)) == [
        "mcp-b.log: b failed",
        "gateway.log: server b exited with code 1",
        "gateway.log: Traceback (most recent call last):",
        "gateway.log: RuntimeError: b broke",
    ]


def test_since_drops_older_lines_and_lines_of_unknown_time(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs")

    lines = shown(tmp_path / "logs", LogQuery(since=datetime(2026, 6, 1, 12, 0, 3, tzinfo=UTC)))

    assert lines[:2] == ["mcp-a.log: a is slow", "mcp-b.log: b failed"]
    assert "mcp-a.log: --- atrium: starting atrium-mcp-a" not in lines


def test_a_server_is_its_own_log_and_the_gateway_records_naming_it(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs")

    assert shown(tmp_path / "logs", LogQuery(server="b")) == [
        "mcp-b.log: b failed",
        "gateway.log: server b exited with code 1",
        "gateway.log: Traceback (most recent call last):",
        "gateway.log: RuntimeError: b broke",
    ]


def test_the_limit_keeps_the_newest_lines(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs")

    assert shown(tmp_path / "logs", LogQuery(limit=2)) == [
        "gateway.log: Traceback (most recent call last):",
        "gateway.log: RuntimeError: b broke",
    ]


def test_no_log_folder_is_no_line(tmp_path: Path) -> None:
    assert view_logs(tmp_path / "logs", LogQuery()) == []
