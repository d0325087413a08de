"""``AuditQueries.usage``: requests summed per server, tool or client, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from atrium.store import Store
from atrium.store.audit import AuditEvent

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def call(server: str, tool: str | None, ms: float, **fields: object) -> AuditEvent:
    return AuditEvent(
        request_id="r" * 32,
        server=server,
        method="tools/call" if tool else "tools/list",
        tool=tool,
        at=fields.pop("at", NOW - timedelta(minutes=5)),  # type: ignore[arg-type]
        duration_ms=ms,
        **fields,  # type: ignore[arg-type]
    )


async def test_usage_by_server_counts_requests_errors_and_origins_busiest_first(
    store: Store,
) -> None:
    await store.audit.add_many(
        [
            call("tools", "echo", 10.0),
            call("tools", "echo", 30.0, outcome="tool_error"),
            call("tools", None, 20.0, origin="in-app", client_id="atrium-cli"),
            call("time", "now", 5.0, outcome="jsonrpc_error", status=403),
        ]
    )

    rows = await store.audit.usage(NOW - timedelta(hours=1), "server")

    assert [row.keys for row in rows] == [{"server": "tools"}, {"server": "time"}]
    tools, time = rows
    assert (tools.requests, tools.errors, tools.in_app, tools.external) == (3, 1, 1, 2)
    assert (tools.avg_ms, tools.p50_ms, tools.max_ms) == (20.0, 20.0, 30.0)
    assert (time.requests, time.errors, time.in_app, time.external) == (1, 1, 0, 1)


async def test_usage_leaves_out_what_came_before_since(store: Store) -> None:
    await store.audit.add_many(
        [
            call("tools", "echo", 1.0, at=NOW - timedelta(days=2)),
            call("tools", "echo", 2.0),
        ]
    )

    (row,) = await store.audit.usage(NOW - timedelta(hours=24), "server")

    assert (row.requests, row.max_ms) == (1, 2.0)


async def test_usage_by_tool_keeps_tools_of_different_servers_apart_and_skips_other_methods(
    store: Store,
) -> None:
    await store.audit.add_many(
        [
            call("tools", "echo", 1.0),
            call("tools", "echo", 1.0),
            call("other", "echo", 1.0),
            call("tools", None, 1.0),
        ]
    )

    rows = await store.audit.usage(NOW - timedelta(hours=1), "tool")

    assert [(row.keys, row.requests) for row in rows] == [
        ({"server": "tools", "tool": "echo"}, 2),
        ({"server": "other", "tool": "echo"}, 1),
    ]


async def test_usage_by_client_groups_on_the_oauth_client(store: Store) -> None:
    await store.audit.add_many(
        [
            call("tools", "echo", 1.0, client_id="https://app.example/client.json"),
            call("time", "now", 1.0, client_id="https://app.example/client.json"),
            call("tools", "echo", 1.0, client_id="atrium-cli", origin="in-app"),
        ]
    )

    rows = await store.audit.usage(NOW - timedelta(hours=1), "client")

    assert [(row.keys, row.requests, row.in_app) for row in rows] == [
        ({"client_id": "https://app.example/client.json"}, 2, 0),
        ({"client_id": "atrium-cli"}, 1, 1),
    ]


async def test_usage_percentiles_are_nearest_rank_durations_of_the_group(store: Store) -> None:
    await store.audit.add_many([call("tools", "echo", float(ms)) for ms in range(100, 0, -1)])

    (row,) = await store.audit.usage(NOW - timedelta(hours=1), "server")

    assert (row.requests, row.p50_ms, row.p95_ms, row.max_ms) == (100, 50.0, 95.0, 100.0)
    assert row.avg_ms == 50.5


async def test_usage_of_an_empty_period_is_no_rows(store: Store) -> None:
    await store.audit.add_many([call("tools", "echo", 1.0, at=NOW - timedelta(days=3))])

    assert await store.audit.usage(NOW - timedelta(days=1), "tool") == []
