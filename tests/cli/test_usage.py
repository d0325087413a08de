"""``atrium infra usage`` over a real project folder and SQLite store."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from atrium.settings import load_settings
from atrium.store import Store
from atrium.store.audit import AuditEvent
from tests.cli.helpers import CliResult, run_atrium


def usage(folder: Path, *args: str) -> CliResult:
    return run_atrium("--project", str(folder), "infra", "usage", *args)


def event(server: str, tool: str | None, ago: timedelta, **fields: object) -> AuditEvent:
    return AuditEvent(
        request_id="r" * 32,
        server=server,
        method="tools/call" if tool else "tools/list",
        tool=tool,
        # Now, not at import: a test may run long after its module was collected.
        at=datetime.now(UTC) - ago,
        **fields,  # type: ignore[arg-type]
    )


def with_calls(folder: Path) -> Path:
    events = [
        event("atrium", "list_playbooks", timedelta(hours=1), duration_ms=4.0),
        event(
            "atrium", "list_playbooks", timedelta(hours=2), duration_ms=8.0, outcome="tool_error"
        ),
        event(
            "atrium",
            None,
            timedelta(minutes=5),
            duration_ms=2.0,
            client_id="atrium-cli",
            origin="in-app",
        ),
        event("time", "now", timedelta(minutes=1), duration_ms=1.0, client_id="dyn_abc"),
        event("time", "now", timedelta(days=3), duration_ms=1.0),
    ]

    async def seed() -> None:
        async with await Store.open(load_settings(folder, environ={})) as store:
            await store.audit.add_many(events)

    asyncio.run(seed())
    return folder


def test_usage_json_sums_the_last_24_hours_per_server(tmp_path: Path) -> None:
    project = with_calls(tmp_path)
    before = datetime.now(UTC)
    result = usage(project, "--json")
    after = datetime.now(UTC)

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["by"] == "server"
    since = datetime.fromisoformat(report["since"])
    assert before - timedelta(hours=24) <= since <= after - timedelta(hours=24)
    atrium, time = report["rows"]
    assert atrium["server"] == "atrium"
    figures = ("requests", "errors", "external", "in_app", "max_ms")
    assert tuple(atrium[name] for name in figures) == (3, 1, 2, 1, 8.0)
    assert (time["server"], time["requests"], time["errors"]) == ("time", 1, 0)


def test_usage_by_tool_names_each_servers_tools(tmp_path: Path) -> None:
    result = usage(with_calls(tmp_path), "--by", "tool", "--since", "1w", "--json")

    rows = json.loads(result.stdout)["rows"]
    assert [(r["server"], r["tool"], r["requests"]) for r in rows] == [
        ("atrium", "list_playbooks", 2),
        ("time", "now", 2),
    ]


def test_usage_by_client_tells_atriums_own_cli_from_oauth_clients(tmp_path: Path) -> None:
    result = usage(with_calls(tmp_path), "--by", "client", "--since", "30m", "--json")

    rows = json.loads(result.stdout)["rows"]
    assert sorted((r["client_id"], r["in_app"], r["external"]) for r in rows) == [
        ("atrium-cli", 1, 0),
        ("dyn_abc", 0, 1),
    ]


def test_usage_prints_a_table_with_a_row_per_server(tmp_path: Path) -> None:
    result = usage(with_calls(tmp_path))

    lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
    assert result.exit_code == 0, result.stderr
    assert lines[0][:5] == ["server", "requests", "errors", "external", "in-app"]
    assert lines[-2][:5] == ["atrium", "3", "1", "2", "1"]
    assert lines[-1][:5] == ["time", "1", "0", "1", "0"]


def test_usage_of_a_quiet_period_says_nothing_was_recorded(tmp_path: Path) -> None:
    result = usage(with_calls(tmp_path), "--since", "30s")

    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No request recorded since" in result.stderr


def test_usage_refuses_a_since_it_cannot_read(tmp_path: Path) -> None:
    result = usage(tmp_path, "--since", "yesterday")

    assert result.exit_code == 2
    assert "--since" in result.stderr
