"""``atrium infra logs view|request list|audit`` over a real project folder and SQLite store."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from atrium.settings import load_settings
from atrium.store import Store
from atrium.store.audit import AuditEvent
from tests.cli.helpers import CliResult, run_atrium

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def logs(folder: Path, *args: str) -> CliResult:
    return run_atrium("--project", str(folder), "infra", "logs", *args)


def with_audit(folder: Path, *events: AuditEvent) -> Path:
    async def seed() -> None:
        async with await Store.open(load_settings(folder, environ={})) as store:
            await store.audit.add_many(list(events))

    asyncio.run(seed())
    return folder


def event(request_id: str, minute: int, **fields: object) -> AuditEvent:
    return AuditEvent(
        request_id=request_id,
        server=str(fields.pop("server", "atrium")),
        method=str(fields.pop("method", "tools/call")),
        at=T0 + timedelta(minutes=minute),
        **fields,  # type: ignore[arg-type]
    )


def three_calls(folder: Path) -> Path:
    return with_audit(
        folder,
        event("a" * 32, 1, tool="list_playbooks", duration_ms=4.25),
        event("b" * 32, 2, server="time", tool="now", arguments={"tz": "UTC"}),
        event(
            "c" * 32,
            3,
            tool="show_playbook",
            arguments={"name": "nope", "api_key": "***"},
            outcome="jsonrpc_error",
            error="tool 'show_playbook' is denied",
        ),
    )


def test_request_list_shows_the_newest_records_first_with_every_column(tmp_path: Path) -> None:
    result = logs(three_calls(tmp_path), "request", "list", "--limit", "2")

    rows = [
        line.split() for line in result.stdout.splitlines() if "atrium" in line or "time " in line
    ]
    assert result.exit_code == 0
    assert [row[2] for row in rows[1:]] == ["c" * 32, "b" * 32]
    assert rows[1][3:] == ["atrium", "tools/call", "show_playbook", "jsonrpc_error", "200", "0.0"]


def test_request_list_json_filters_by_server_and_leaves_arguments_out(tmp_path: Path) -> None:
    result = logs(three_calls(tmp_path), "request", "list", "--server", "atrium", "--json")

    records = json.loads(result.stdout)
    assert [r["request_id"] for r in records] == ["c" * 32, "a" * 32]
    assert records[1]["duration_ms"] == 4.25
    assert "arguments" not in records[0]


def test_request_list_since_drops_older_records(tmp_path: Path) -> None:
    since = (T0 + timedelta(minutes=2)).isoformat()

    result = logs(three_calls(tmp_path), "request", "list", "--since", since, "--json")

    assert [r["request_id"] for r in json.loads(result.stdout)] == ["c" * 32, "b" * 32]


def test_audit_full_adds_the_redacted_arguments_and_the_error(tmp_path: Path) -> None:
    folder = three_calls(tmp_path)

    brief = logs(folder, "audit", "c" * 32)
    full = logs(folder, "audit", "c" * 32, "--full", "--json")

    assert brief.exit_code == 0
    assert "show_playbook" in brief.stdout
    assert "nope" not in brief.stdout
    (record,) = json.loads(full.stdout)
    assert record["arguments"] == {"name": "nope", "api_key": "***"}
    assert record["error"] == "tool 'show_playbook' is denied"
    assert record["outcome"] == "jsonrpc_error"


def test_audit_shows_every_record_of_a_batch(tmp_path: Path) -> None:
    folder = with_audit(
        tmp_path, event("d" * 32, 1, tool="a"), event("d" * 32, 1, method="tools/list")
    )

    result = logs(folder, "audit", "d" * 32, "--full")

    assert result.exit_code == 0
    assert "1 of 2" in result.stdout
    assert "2 of 2" in result.stdout


def test_audit_of_an_unknown_request_exits_1(tmp_path: Path) -> None:
    result = logs(three_calls(tmp_path), "audit", "f" * 32)

    assert result.exit_code == 1
    assert "f" * 32 in result.stderr


def project_with_logs(folder: Path) -> Path:
    (folder / "services/mcp").mkdir(parents=True)
    (folder / "services/mcp/a.yaml").write_text("mcp_servers: {a: {binary: a-mcp, port: 5001}}\n")
    (folder / "logs").mkdir()
    stamp = T0.isoformat()
    (folder / "logs/gateway.log").write_text(
        f"{stamp} INFO atrium.supervisor: server a running on port 5001\n"
        f"{stamp} INFO atrium.gateway.serve: gateway listening\n"
    )
    later = (T0 + timedelta(seconds=1)).isoformat()
    (folder / "logs/mcp-a.log").write_text(f"{later} ERROR a.server: a failed\nTraceback:\n")
    return folder


def test_view_prints_each_line_after_its_files_name_in_time_order(tmp_path: Path) -> None:
    result = logs(project_with_logs(tmp_path), "view", "--since", "1h")

    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        "gateway.log",
        "gateway.log",
        "mcp-a.log",
        "mcp-a.log",
    ]
    assert result.stdout.splitlines()[-1].endswith("Traceback:")


def test_view_of_a_server_at_a_level_as_json(tmp_path: Path) -> None:
    result = logs(
        project_with_logs(tmp_path), "view", "--server", "a", "--level", "error", "--json"
    )

    lines = json.loads(result.stdout)
    assert [(line["source"], line["level"]) for line in lines] == [
        ("mcp-a.log", "ERROR"),
        ("mcp-a.log", "ERROR"),
    ]
    assert lines[0]["time"] == (T0 + timedelta(seconds=1)).isoformat()


def test_view_with_a_bad_since_or_level_is_a_usage_error(tmp_path: Path) -> None:
    folder = project_with_logs(tmp_path)

    assert logs(folder, "view", "--since", "soon").exit_code == 2
    assert logs(folder, "view", "--level", "loud").exit_code == 2


def test_view_of_an_unknown_server_exits_1(tmp_path: Path) -> None:
    result = logs(project_with_logs(tmp_path), "view", "--server", "b")

    assert result.exit_code == 1
    assert "server 'b' not found; known: a" in result.stderr


def test_view_before_anything_ran_says_so(tmp_path: Path) -> None:
    result = logs(tmp_path, "view")

    assert result.exit_code == 0
    assert result.stdout == ""
    assert "atrium start" in result.stderr
