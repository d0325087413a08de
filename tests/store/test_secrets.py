"""Stored secrets on SQLite and PostgreSQL: sealed at rest, per owner, versioned by rotate, and
re-encrypted under a new key by a rotation of the ring."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from atrium.secretbox import (
    SECRET_KEY_FILE,
    SECRET_KEY_VARIABLE,
    SecretBox,
    SecretKeyError,
    SecretUnreadable,
    ensure_secret_key,
    new_key,
)
from atrium.settings import Settings, load_settings
from atrium.store import PROJECT_OWNER, AlreadyExists, Store
from atrium.store.secrets import rotate_secret_key
from atrium.store.tables import secrets
from tests.cli.helpers import run_atrium

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
VALUE = "ghp_0123456789abcdefTOKEN"


def ticking() -> Callable[[], datetime]:
    minutes = itertools.count()
    return lambda: T0 + timedelta(minutes=next(minutes))


async def test_a_created_secret_is_version_1_and_reveals_its_value(
    database_settings: Settings,
) -> None:
    box = SecretBox.load(database_settings)
    async with await Store.open(database_settings, clock=lambda: T0) as store:
        created = await store.secrets.create("ada", "API_TOKEN", VALUE, box=box, by="ada")

        found = await store.secrets.get("ada", "API_TOKEN")
        values = await store.secrets.reveal("ada", ["API_TOKEN", "NOT_STORED"], box=box)

    assert found == created
    assert (created.owner, created.name, created.version) == ("ada", "API_TOKEN", 1)
    assert (created.created_at, created.updated_at, created.updated_by) == (T0, T0, "ada")
    assert created.key_id == box.current
    assert values == {"API_TOKEN": VALUE}


async def test_the_database_holds_ciphertext_only(
    store: Store, database_settings: Settings
) -> None:
    await store.secrets.create(
        "ada", "API_TOKEN", VALUE, box=SecretBox.load(database_settings), by="ada"
    )

    async with store.engine.connect() as conn:
        row = (await conn.execute(select(secrets))).one()

    stored = b"".join(str(cell).encode() for cell in row if not isinstance(cell, bytes))
    assert VALUE.encode() not in bytes(row.ciphertext) + bytes(row.nonce) + stored


async def test_a_second_secret_of_one_name_is_refused_and_another_owner_may_have_it(
    store: Store, database_settings: Settings
) -> None:
    box = SecretBox.load(database_settings)
    await store.secrets.create("ada", "API_TOKEN", VALUE, box=box, by="ada")

    with pytest.raises(AlreadyExists) as caught:
        await store.secrets.create("ada", "API_TOKEN", "other", box=box, by="ada")
    bobs = await store.secrets.create("bob", "API_TOKEN", "bobs-own", box=box, by="bob")

    assert caught.value.kind == "secret"
    assert bobs.version == 1
    assert await store.secrets.reveal("ada", ["API_TOKEN"], box=box) == {"API_TOKEN": VALUE}
    assert await store.secrets.reveal("bob", ["API_TOKEN"], box=box) == {"API_TOKEN": "bobs-own"}


async def test_replace_gives_the_next_version_and_keeps_the_creation(
    database_settings: Settings,
) -> None:
    box = SecretBox.load(database_settings)
    async with await Store.open(database_settings, clock=ticking()) as store:
        created = await store.secrets.create("@project", "DB_URL", "one", box=box, by="admin-1")
        replaced = await store.secrets.replace("@project", "DB_URL", "two", box=box, by="admin-2")
        again = await store.secrets.replace("@project", "DB_URL", "three", box=box, by="admin-1")
        values = await store.secrets.reveal("@project", ["DB_URL"], box=box)

    assert replaced is not None
    assert again is not None
    assert (replaced.version, again.version) == (2, 3)
    assert (replaced.created_at, replaced.created_by) == (created.created_at, "admin-1")
    assert replaced.updated_at > created.updated_at
    assert replaced.updated_by == "admin-2"
    assert values == {"DB_URL": "three"}


async def test_replacing_or_deleting_a_secret_that_is_not_there_changes_nothing(
    store: Store, database_settings: Settings
) -> None:
    box = SecretBox.load(database_settings)
    await store.secrets.create("ada", "API_TOKEN", VALUE, box=box, by="ada")

    assert await store.secrets.replace("bob", "API_TOKEN", "x", box=box, by="bob") is None
    assert await store.secrets.delete("bob", "API_TOKEN") is False
    assert await store.secrets.delete("ada", "API_TOKEN") is True
    assert await store.secrets.delete("ada", "API_TOKEN") is False
    assert await store.secrets.list("ada") == []


async def test_list_shows_one_owner_by_name_and_only_the_names_asked_for(
    store: Store, database_settings: Settings
) -> None:
    box = SecretBox.load(database_settings)
    for owner, name in [("ada", "ZETA"), ("ada", "ALPHA"), ("bob", "BETA"), (PROJECT_OWNER, "P")]:
        await store.secrets.create(owner, name, VALUE, box=box, by=owner)

    everything = await store.secrets.list("ada")
    asked = await store.secrets.list("ada", ["ZETA", "BETA", "MISSING"])

    assert [record.name for record in everything] == ["ALPHA", "ZETA"]
    assert [record.name for record in asked] == ["ZETA"]
    assert [record.name for record in await store.secrets.list(PROJECT_OWNER)] == ["P"]


async def test_a_value_copied_into_another_owners_row_does_not_decrypt(
    store: Store, database_settings: Settings
) -> None:
    box = SecretBox.load(database_settings)
    await store.secrets.create("ada", "API_TOKEN", VALUE, box=box, by="ada")
    await store.secrets.create("bob", "API_TOKEN", "bobs-own", box=box, by="bob")
    async with store.engine.begin() as conn:
        adas = (await conn.execute(select(secrets).where(secrets.c.owner == "ada"))).one()
        await conn.execute(
            update(secrets)
            .where(secrets.c.owner == "bob")
            .values(nonce=adas.nonce, ciphertext=adas.ciphertext)
        )

    with pytest.raises(SecretUnreadable) as caught:
        await store.secrets.reveal("bob", ["API_TOKEN"], box=box)

    assert VALUE not in str(caught.value)


@pytest.mark.parametrize(
    ("owner", "name", "value", "said"),
    [
        ("ada", "api-token", VALUE, "capital letters"),
        ("ada", "API_TOKEN", "", "empty"),
        ("", "API_TOKEN", VALUE, "owner"),
    ],
)
async def test_what_cannot_be_stored_is_refused_before_writing(
    store: Store, database_settings: Settings, owner: str, name: str, value: str, said: str
) -> None:
    box = SecretBox.load(database_settings)

    with pytest.raises(ValueError, match=said):
        await store.secrets.create(owner, name, value, box=box, by="ada")

    assert await store.secrets.key_ids() == set()


async def test_a_key_rotation_reencrypts_every_value_and_retires_the_old_key(
    store: Store, database_settings: Settings
) -> None:
    old = SecretBox.load(database_settings)
    await store.secrets.create("ada", "API_TOKEN", VALUE, box=old, by="ada")
    await store.secrets.create(PROJECT_OWNER, "DB_URL", "postgres://x", box=old, by="ada")

    rotation = await rotate_secret_key(store.secrets, database_settings)
    fresh = SecretBox.load(database_settings)

    assert rotation.key_id == fresh.current != old.current
    assert (rotation.reencrypted, rotation.retired) == (2, (old.current,))
    assert await store.secrets.key_ids() == {fresh.current}
    assert fresh.key_ids == {fresh.current}
    assert await store.secrets.reveal("ada", ["API_TOKEN"], box=fresh) == {"API_TOKEN": VALUE}
    # A process that read the ring before the rotation follows it.
    assert await store.secrets.reveal(PROJECT_OWNER, ["DB_URL"], box=old) == {
        "DB_URL": "postgres://x"
    }
    assert (await store.secrets.list("ada"))[0].version == 1  # same value, same version


async def test_the_first_secret_starts_the_project_ring_when_there_is_none(
    store: Store, database_settings: Settings
) -> None:
    ring = database_settings.state_dir / SECRET_KEY_FILE
    box = SecretBox.load(database_settings)
    ring_before = ring.exists()

    created = await store.secrets.create("ada", "API_TOKEN", VALUE, box=box, by="ada")

    assert ring_before is False
    assert created.key_id == box.current == SecretBox.load(database_settings).current
    assert ring.stat().st_mode & 0o777 == 0o600


async def test_a_lost_ring_is_not_replaced_while_secrets_are_stored(
    store: Store, database_settings: Settings
) -> None:
    ring = database_settings.state_dir / SECRET_KEY_FILE
    await store.secrets.create(
        "ada", "API_TOKEN", VALUE, box=SecretBox.load(database_settings), by="ada"
    )
    ring.unlink()  # the state folder restored without it
    box = SecretBox.load(database_settings)

    errors = []
    for attempt in (
        store.secrets.create("bob", "OTHER", VALUE, box=box, by="bob"),
        store.secrets.replace("ada", "API_TOKEN", "new", box=box, by="ada"),
        store.secrets.reveal("ada", ["API_TOKEN"], box=box),
        rotate_secret_key(store.secrets, database_settings),
    ):
        with pytest.raises(SecretKeyError) as caught:
            await attempt
        errors.append(str(caught.value))

    assert not ring.exists()
    assert all(str(ring) in error and "restore" in error for error in errors)
    assert [(r.owner, r.version) for r in await store.secrets.list("ada")] == [("ada", 1)]
    assert await store.secrets.list("bob") == []


async def test_a_rotation_with_neither_a_ring_nor_a_secret_starts_one_and_rotates_it(
    store: Store, database_settings: Settings
) -> None:
    rotation = await rotate_secret_key(store.secrets, database_settings)

    assert SecretBox.load(database_settings).key_ids == {rotation.key_id}
    assert (rotation.reencrypted, len(rotation.retired)) == (0, 1)


async def test_a_rotation_with_nothing_stored_only_changes_the_key(
    store: Store, database_settings: Settings
) -> None:
    ensure_secret_key(database_settings.state_dir)  # as `atrium init` does
    first = SecretBox.load(database_settings).current

    rotation = await rotate_secret_key(store.secrets, database_settings)
    second = await rotate_secret_key(store.secrets, database_settings)

    assert (rotation.reencrypted, rotation.retired) == (0, (first,))
    assert second.retired == (rotation.key_id,)
    assert SecretBox.load(database_settings).key_ids == {second.key_id}


def test_the_cli_rotates_the_secrets_key_and_says_what_it_did(tmp_path: Path) -> None:
    assert run_atrium("init", str(tmp_path)).exit_code == 0
    before = SecretBox.load(load_settings(tmp_path, environ={})).current

    result = run_atrium("--project", str(tmp_path), "admin", "keys", "rotate", "--secrets")

    after = SecretBox.load(load_settings(tmp_path, environ={}))
    assert result.exit_code == 0, result.stderr
    assert after.key_ids == {after.current} != {before}
    assert after.current in result.stdout
    assert before in result.stdout  # retired


def test_the_cli_refuses_to_rotate_a_key_held_in_the_environment(tmp_path: Path) -> None:
    assert run_atrium("init", str(tmp_path)).exit_code == 0
    key = base64.b64encode(new_key()).decode()

    rotate = ("--project", str(tmp_path), "admin", "keys", "rotate", "--secrets")
    result = run_atrium(*rotate, env={SECRET_KEY_VARIABLE: key})

    assert result.exit_code != 0
    assert "$file:" in result.stderr
    assert key not in result.stdout + result.stderr
