from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from atrium.settings import Settings
from atrium.store import ServerRecord, Store, StoreError


def record(name: str, **changes: object) -> ServerRecord:
    values: dict[str, object] = {
        "name": name,
        "config": {"binary": f"atrium-mcp-{name}", "port": 5001},
        "enabled": True,
        "transport": "http",
        "port": 5001,
        "source": f"services/mcp/{name}.yaml",
    }
    values.update(changes)
    return ServerRecord(**values)  # type: ignore[arg-type]


def stored_fields(found: ServerRecord | None) -> tuple[object, ...]:
    assert found is not None
    return (
        found.name,
        found.config,
        found.enabled,
        found.transport,
        found.port,
        found.source,
        found.disabled_reason,
    )


async def test_save_then_get_returns_the_record(store: Store) -> None:
    saved = record("github", enabled=False, port=None, disabled_reason="port clash")

    await store.servers.save([saved])

    assert stored_fields(await store.servers.get("github")) == stored_fields(saved)


async def test_get_of_an_unknown_name_returns_none(store: Store) -> None:
    await store.servers.save([record("github")])

    assert await store.servers.get("gitlab") is None


async def test_list_is_ordered_by_name(store: Store) -> None:
    await store.servers.save([record("soul"), record("atrium"), record("marketplace")])

    assert [r.name for r in await store.servers.list()] == ["atrium", "marketplace", "soul"]


async def test_save_updates_and_keeps_created_at(database_settings: Settings) -> None:
    first, second = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    times = iter([first, second])
    async with await Store.open(database_settings, clock=lambda: next(times)) as store:
        await store.servers.save([record("github", port=5001)])
        await store.servers.save([record("github", port=5002, enabled=False)])

        found = await store.servers.get("github")

    assert found is not None
    assert (found.port, found.enabled) == (5002, False)
    assert (found.created_at, found.updated_at) == (first, second)


async def test_timestamps_come_back_timezone_aware_in_utc(database_settings: Settings) -> None:
    moment = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=timezone(timedelta(hours=2)))
    async with await Store.open(database_settings, clock=lambda: moment) as store:
        await store.servers.save([record("github")])
        found = await store.servers.get("github")

    assert found is not None
    assert found.created_at == moment
    assert found.created_at is not None
    assert found.created_at.utcoffset() == timedelta(0)


async def test_config_round_trips_as_plain_json(store: Store) -> None:
    config = {
        "command": ["npx", "-y", "@modelcontextprotocol/server-everything"],
        "env": {"API_TOKEN": {"$env": "MY_TOKEN"}},
        "oauth": {"required": True, "scopes": ["admin"], "client_id": None},
        "description": "Serveur « démo » ✓",
        "timeout_s": 60.5,
    }

    await store.servers.save([record("everything", config=config)])

    found = await store.servers.get("everything")
    assert found is not None
    assert found.config == config


async def test_save_is_all_or_nothing(store: Store) -> None:
    await store.servers.save([record("atrium", port=5000), record("soul", port=5001)])

    with pytest.raises(StoreError):
        await store.servers.save(
            [record("atrium", port=5100), record("soul", port=0), record("marketplace")]
        )

    assert [(r.name, r.port) for r in await store.servers.list()] == [
        ("atrium", 5000),
        ("soul", 5001),
    ]


async def test_save_rejects_a_name_given_twice(store: Store) -> None:
    with pytest.raises(ValueError, match="github"):
        await store.servers.save([record("github"), record("github", port=5002)])

    assert await store.servers.list() == []


async def test_two_processes_saving_the_same_new_names_both_succeed(
    database_settings: Settings,
) -> None:
    # Two engines stand for two processes: neither shares the other's connections.
    names = [f"server-{i}" for i in range(10)]
    async with (
        await Store.open(database_settings) as one,
        await Store.open(database_settings) as two,
    ):
        saves = [s.servers.save([record(name)]) for name in names for s in (one, two)]
        outcomes = await asyncio.gather(*saves, return_exceptions=True)

        stored = [r.name for r in await one.servers.list()]

    assert [o for o in outcomes if o is not None] == []
    assert stored == sorted(names)


async def test_delete_removes_the_named_servers_and_counts_them(store: Store) -> None:
    await store.servers.save([record("atrium"), record("soul"), record("marketplace")])

    deleted = await store.servers.delete(["soul", "atrium", "unknown"])

    assert deleted == 2
    assert [r.name for r in await store.servers.list()] == ["marketplace"]


async def test_a_config_that_is_not_json_is_a_store_error_without_the_sql(store: Store) -> None:
    with pytest.raises(StoreError) as caught:
        await store.servers.save([record("github", config={"port": {5001}})])

    assert "INSERT" not in str(caught.value)
    assert await store.servers.list() == []
