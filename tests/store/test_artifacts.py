from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from atrium.settings import Settings
from atrium.store import Store


async def add_run(store: Store, title: str = "plugins mcp list") -> str:
    record = await store.artifacts.add(
        server="atrium",
        tool="atrium",
        kind="cli-run",
        title=title,
        content={"command": title, "exit_code": 0, "stdout": "[]\n"},
    )
    return record.id


async def test_an_added_artifact_reads_back_whole(store: Store) -> None:
    added = await store.artifacts.add(
        server="atrium",
        tool="atrium",
        kind="cli-run",
        title="plugins mcp list --json",
        content={"command": "plugins mcp list --json", "exit_code": 0, "lines": ["a", "b"]},
    )

    found = await store.artifacts.get(added.id)

    assert found == added
    assert uuid.UUID(added.id).version == 4


async def test_created_at_is_timezone_aware_utc(store: Store) -> None:
    found = await store.artifacts.get(await add_run(store))

    assert found is not None
    assert found.created_at.utcoffset() == timedelta(0)


async def test_get_of_an_unknown_id_returns_none(store: Store) -> None:
    await add_run(store)

    assert await store.artifacts.get(str(uuid.uuid4())) is None


async def test_list_recent_returns_the_newest_first_up_to_the_limit(
    database_settings: Settings,
) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    times = iter([start + timedelta(minutes=n) for n in range(3)])
    async with await Store.open(database_settings, clock=lambda: next(times)) as store:
        for title in ["first", "second", "third"]:
            await add_run(store, title)

        recent = await store.artifacts.list_recent(limit=2)

    assert [record.title for record in recent] == ["third", "second"]


async def test_list_recent_refuses_a_limit_below_one(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.artifacts.list_recent(limit=0)
