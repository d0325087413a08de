from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from atrium.settings import Settings
from atrium.store import AlreadyExists, Store, UserRecord

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def user(username: str, **changes: object) -> UserRecord:
    values: dict[str, object] = {
        "id": f"id-{username}",
        "username": username,
        "password_hash": f"$argon2id$v=19$m=65536,t=3,p=4$salt${username}",
        "role": "developer",
    }
    values.update(changes)
    return UserRecord(**values)  # type: ignore[arg-type]


async def test_add_then_get_and_by_username_return_the_user(database_settings: Settings) -> None:
    added = user("alice", role="admin")
    async with await Store.open(database_settings, clock=lambda: T0) as store:
        await store.users.add(added)

        by_id = await store.users.get("id-alice")
        by_name = await store.users.by_username("alice")

    expected = replace(added, created_at=T0, updated_at=T0)
    assert by_id == by_name == expected
    assert expected.disabled is False


async def test_an_unknown_user_is_none(store: Store) -> None:
    await store.users.add(user("alice"))

    assert await store.users.get("id-bob") is None
    assert await store.users.by_username("bob") is None


async def test_a_duplicate_username_is_rejected_and_the_stored_user_kept(store: Store) -> None:
    await store.users.add(user("alice", role="admin"))

    with pytest.raises(AlreadyExists) as caught:
        await store.users.add(user("alice", id="another-id", role="viewer"))

    found = await store.users.by_username("alice")
    assert (caught.value.kind, caught.value.key) == ("user", "alice")
    assert found is not None
    assert (found.id, found.role) == ("id-alice", "admin")
    assert await store.users.get("another-id") is None


async def test_a_duplicate_id_is_rejected(store: Store) -> None:
    await store.users.add(user("alice"))

    with pytest.raises(AlreadyExists):
        await store.users.add(user("bob", id="id-alice"))

    assert [u.username for u in await store.users.list()] == ["alice"]


async def test_list_is_ordered_by_username_and_count_includes_disabled_users(
    store: Store,
) -> None:
    for name in ["carol", "alice", "bob"]:
        await store.users.add(user(name))
    await store.users.set_disabled("bob", True)

    assert [u.username for u in await store.users.list()] == ["alice", "bob", "carol"]
    assert await store.users.count() == 3


async def test_set_role_changes_the_role_and_updated_at_only(database_settings: Settings) -> None:
    times = iter([T0, T0 + timedelta(hours=1)])
    async with await Store.open(database_settings, clock=lambda: next(times)) as store:
        await store.users.add(user("alice"))

        changed = await store.users.set_role("alice", "admin")

        found = await store.users.by_username("alice")

    assert changed is True
    assert found is not None
    assert (found.role, found.created_at, found.updated_at) == (
        "admin",
        T0,
        T0 + timedelta(hours=1),
    )


async def test_set_disabled_disables_and_enables_again(store: Store) -> None:
    await store.users.add(user("alice"))

    await store.users.set_disabled("alice", True)
    disabled = await store.users.by_username("alice")
    await store.users.set_disabled("alice", False)
    enabled = await store.users.by_username("alice")

    assert disabled is not None
    assert enabled is not None
    assert (disabled.disabled, enabled.disabled) == (True, False)


async def test_set_password_replaces_the_hash(store: Store) -> None:
    await store.users.add(user("alice"))

    changed = await store.users.set_password("alice", "$argon2id$new")

    found = await store.users.by_username("alice")
    assert changed is True
    assert found is not None
    assert found.password_hash == "$argon2id$new"


async def test_changing_an_unknown_user_returns_false_and_changes_nothing(store: Store) -> None:
    await store.users.add(user("alice"))

    outcomes = [
        await store.users.set_role("bob", "admin"),
        await store.users.set_disabled("bob", True),
        await store.users.set_password("bob", "$argon2id$new"),
    ]

    assert outcomes == [False, False, False]
    assert [u.username for u in await store.users.list()] == ["alice"]


async def test_a_new_role_password_or_standing_moves_the_session_epoch(store: Store) -> None:
    await store.users.add(user("alice"))
    await store.users.add(user("bob"))

    epochs = []
    for change in (
        store.users.set_role("alice", "admin"),
        store.users.set_password("alice", "$argon2id$new"),
        store.users.set_disabled("alice", True),
        store.users.end_sessions("id-alice"),
    ):
        assert await change is True
        found = await store.users.by_username("alice")
        assert found is not None
        epochs.append(found.session_epoch)
    bob = await store.users.by_username("bob")

    assert epochs == [1, 2, 3, 4]
    assert bob is not None
    assert bob.session_epoch == 0
    assert await store.users.end_sessions("id-nobody") is False


async def test_delete_removes_the_user_and_returns_what_was_deleted(store: Store) -> None:
    await store.users.add(user("alice"))
    await store.users.add(user("bob"))

    deleted = await store.users.delete("alice")
    again = await store.users.delete("alice")

    assert deleted is not None
    assert (deleted.id, deleted.username) == ("id-alice", "alice")
    assert again is None
    assert await store.users.get("id-alice") is None
    assert [u.username for u in await store.users.list()] == ["bob"]
