"""``atrium cloud status`` and the tool calls in ``atrium infra logs view``, over a real project
folder and its SQLite store (no server needs to run: the audit records are the gateway's own
type, written with the store's own query)."""

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


def atrium(folder: Path, *args: str) -> CliResult:
    return run_atrium("--project", str(folder), *args)


def synced_project(folder: Path) -> Path:
    assert atrium(folder, "init").exit_code == 0
    synced = atrium(folder, "cloud", "sync", "local", "mcp", "--direction", "to-db", "-y")
    assert synced.exit_code == 0, synced.stderr
    return folder


def test_cloud_status_of_a_synced_project_says_it_is_in_sync(tmp_path: Path) -> None:
    folder = synced_project(tmp_path)

    result = atrium(folder, "cloud", "status", "--json")

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"in_sync": True, "to_db": [], "to_disk": []}


def test_cloud_status_shows_both_directions_and_changes_nothing(tmp_path: Path) -> None:
    folder = synced_project(tmp_path)
    soul = folder / "services/mcp/soul.yaml"
    soul.write_text(soul.read_text().replace("AI-powered content tools", "Soul, edited"))
    (folder / "services/mcp/extra.yaml").write_text(
        "mcp_servers: {extra: {binary: extra-mcp, port: 5300}}\n"
    )
    before = {path.name: path.read_text() for path in (folder / "services/mcp").iterdir()}

    shown = atrium(folder, "cloud", "status", "--json")
    again = atrium(folder, "cloud", "status")

    status = json.loads(shown.stdout)
    assert status["in_sync"] is False
    to_db = {change["name"]: change for change in status["to_db"]}
    assert to_db["extra"]["kind"] == "add"
    assert to_db["soul"]["fields"] == [
        {"path": "description", "before": "AI-powered content tools", "after": "Soul, edited"}
    ]
    (to_disk,) = status["to_disk"]  # the store would put the old description back
    assert to_disk["path"] == "services/mcp/soul.yaml"
    assert "-    description: Soul, edited" in to_disk["diff"]
    assert "+ extra" in again.stdout
    assert "~ services/mcp/soul.yaml" in again.stdout
    assert {path.name: path.read_text() for path in (folder / "services/mcp").iterdir()} == before
    assert json.loads(atrium(folder, "cloud", "status", "--json").stdout) == status


def with_logs_and_calls(folder: Path) -> Path:
    (folder / "services/mcp").mkdir(parents=True)
    (folder / "services/mcp/a.yaml").write_text("mcp_servers: {a: {binary: a-mcp, port: 5001}}\n")
    (folder / "logs").mkdir()
    (folder / "logs/gateway.log").write_text(
        f"{T0.isoformat()} INFO atrium.supervisor: server a running on port 5001\n"
        f"{(T0 + timedelta(minutes=2)).isoformat()} INFO atrium.gateway: reloaded\n"
    )
    calls = [
        AuditEvent(
            request_id="a" * 32,
            server="a",
            method="tools/call",
            tool="search",
            caller="alice",
            at=T0 + timedelta(minutes=1),
            duration_ms=4.25,
        ),
        AuditEvent(request_id="b" * 32, server="a", method="tools/list", at=T0),
        AuditEvent(
            request_id="c" * 32,
            server="b",
            method="tools/call",
            tool="fail",
            outcome="tool_error",
            at=T0 + timedelta(minutes=3),
        ),
    ]

    async def seed() -> None:
        async with await Store.open(load_settings(folder, environ={})) as store:
            await store.audit.add_many(calls)

    asyncio.run(seed())
    return folder


def test_logs_view_merges_one_line_per_tool_call_in_time_order(tmp_path: Path) -> None:
    result = atrium(with_logs_and_calls(tmp_path), "infra", "logs", "view", "--since", "1h")

    lines = result.stdout.splitlines()
    assert result.exit_code == 0, result.stderr
    assert [line.split()[0] for line in lines] == ["gateway.log", "audit", "gateway.log", "audit"]
    assert "mcp tool call a/search caller=alice" in lines[1]
    assert "outcome=ok status=200 duration_ms=4.2" in lines[1]
    assert "tools/list" not in result.stdout
    assert "b" * 32 not in result.stdout


def test_logs_view_filters_tool_calls_by_level_server_and_count(tmp_path: Path) -> None:
    folder = with_logs_and_calls(tmp_path)

    failed = atrium(folder, "infra", "logs", "view", "--level", "warning", "--json")
    of_a = atrium(folder, "infra", "logs", "view", "--server", "a", "--json")
    newest = atrium(folder, "infra", "logs", "view", "--lines", "1", "--json")
    errors = atrium(folder, "infra", "logs", "view", "--level", "error")

    (line,) = json.loads(failed.stdout)
    assert (line["source"], line["level"]) == ("audit", "WARNING")
    assert "b/fail" in line["text"]
    assert [(x["source"], "a/search" in x["text"]) for x in json.loads(of_a.stdout)] == [
        ("gateway.log", False),
        ("audit", True),
    ]
    assert ["c" * 32 in x["text"] for x in json.loads(newest.stdout)] == [True]
    assert errors.stdout == ""


def test_logs_view_since_leaves_older_tool_calls_out(tmp_path: Path) -> None:
    since = (T0 + timedelta(minutes=2)).isoformat()

    result = atrium(with_logs_and_calls(tmp_path), "infra", "logs", "view", "--since", since)

    assert [line.split()[0] for line in result.stdout.splitlines()] == ["gateway.log", "audit"]
    assert "b/fail" in result.stdout
