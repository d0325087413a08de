from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from atrium.settings import Settings
from atrium.store import AlreadyExists, ClientRecord, Store, StoreError

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


def client(client_id: str, **changes: object) -> ClientRecord:
    values: dict[str, object] = {
        "client_id": client_id,
        "kind": "dynamic",
        "redirect_uris": ["http://127.0.0.1:33418/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "metadata": {"client_name": "Claude Code", "redirect_uris": ["http://127.0.0.1/cb"]},
    }
    values.update(changes)
    return ClientRecord(**values)  # type: ignore[arg-type]


async def test_add_then_get_returns_the_client_with_its_creation_time(
    database_settings: Settings,
) -> None:
    added = client(
        "c1", kind="confidential", name="CI bot", secret_hash="ab" * 32, scope="mcp:tools"
    )
    async with await Store.open(database_settings, clock=Clock()) as store:
        await store.clients.add(added)

        found = await store.clients.get("c1")

    assert found == replace(added, created_at=T0)


async def test_get_of_an_unknown_client_returns_none(store: Store) -> None:
    await store.clients.add(client("c1"))

    assert await store.clients.get("c2") is None


async def test_a_duplicate_client_id_is_rejected_and_the_stored_client_kept(store: Store) -> None:
    await store.clients.add(client("c1", name="first"))

    with pytest.raises(AlreadyExists) as caught:
        await store.clients.add(client("c1", name="second", kind="confidential"))

    found = await store.clients.get("c1")
    assert (caught.value.kind, caught.value.key) == ("client", "c1")
    assert found is not None
    assert (found.name, found.kind) == ("first", "dynamic")


async def test_list_gives_every_client_or_those_of_one_kind_oldest_first(
    database_settings: Settings,
) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        for client_id, kind in [("z", "dynamic"), ("a", "metadata"), ("m", "dynamic")]:
            await store.clients.add(client(client_id, kind=kind))
            clock.now += timedelta(seconds=1)

        every = [c.client_id for c in await store.clients.list()]
        dynamic = [c.client_id for c in await store.clients.list("dynamic")]

    assert every == ["z", "a", "m"]
    assert dynamic == ["z", "m"]


async def test_revoke_keeps_the_first_revocation_time_and_reports_unknown_clients(
    database_settings: Settings,
) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        await store.clients.add(client("c1"))
        first = await store.clients.revoke("c1")
        clock.now += timedelta(hours=1)
        again = await store.clients.revoke("c1")
        unknown = await store.clients.revoke("c2")

        found = await store.clients.get("c1")

    assert (first, again, unknown) == (True, True, False)
    assert found is not None
    assert found.revoked_at == T0


async def test_touch_records_the_time_of_use(database_settings: Settings) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        await store.clients.add(client("c1"))
        clock.now += timedelta(minutes=5)
        await store.clients.touch("c1")
        await store.clients.touch("unknown")

        found = await store.clients.get("c1")

    assert found is not None
    assert (found.created_at, found.last_used_at) == (T0, T0 + timedelta(minutes=5))


async def test_count_leaves_out_revoked_clients_and_other_kinds(store: Store) -> None:
    for client_id in ["d1", "d2", "d3"]:
        await store.clients.add(client(client_id))
    await store.clients.add(client("m1", kind="metadata"))
    await store.clients.revoke("d2")

    assert await store.clients.count("dynamic") == 2
    assert await store.clients.count("metadata") == 1
    assert await store.clients.count("confidential") == 0


async def test_delete_unused_removes_only_old_never_used_clients_of_the_kind(
    database_settings: Settings,
) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        await store.clients.add(client("old-unused"))
        await store.clients.add(client("old-used"))
        await store.clients.add(client("old-metadata", kind="metadata"))
        await store.clients.touch("old-used")
        clock.now += timedelta(days=2)
        await store.clients.add(client("new-unused"))

        deleted = await store.clients.delete_unused("dynamic", T0 + timedelta(days=1))

        remaining = sorted(c.client_id for c in await store.clients.list())

    assert deleted == 1
    assert remaining == ["new-unused", "old-metadata", "old-used"]


async def test_delete_oldest_unused_makes_room_from_the_oldest_never_used_clients(
    database_settings: Settings,
) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        for name in ("first", "used", "revoked", "second", "third"):
            await store.clients.add(client(name))
            clock.now += timedelta(minutes=1)
        await store.clients.touch("used")
        await store.clients.revoke("revoked")

        deleted = await store.clients.delete_oldest_unused("dynamic", 2)
        none_left = await store.clients.delete_oldest_unused("metadata", 2)

        remaining = sorted(c.client_id for c in await store.clients.list())

    assert (deleted, none_left) == (2, 0)
    assert remaining == ["revoked", "third", "used"]


async def test_a_client_of_an_unknown_kind_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError) as caught:
        await store.clients.add(client("c1", kind="static"))

    assert not isinstance(caught.value, AlreadyExists)
    assert await store.clients.get("c1") is None


async def test_a_given_creation_time_is_kept_and_the_state_starts_empty(store: Store) -> None:
    created = T0 - timedelta(days=3)
    await store.clients.add(client("c1", created_at=created, last_used_at=T0, revoked_at=T0))

    found = await store.clients.get("c1")

    assert found is not None
    assert (found.created_at, found.last_used_at, found.revoked_at) == (created, None, None)
