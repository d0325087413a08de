"""The session key in the store (issue 18), on SQLite and PostgreSQL: imported from
``.atrium/session-key`` at first use so that what it signed stays valid, one key for replicas
starting together and for a second host with its own ``atrium init``, sealed under the master
key, rotated verify-only first with the old key still verifying. And the attacks: another
master key, an altered row, a file that holds no key.

Two hosts' gateways over one store, end to end: tests/auth/test_two_hosts.py."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from atrium.auth.resource_guard import Caller
from atrium.auth.sealed_keys import KeyStoreError
from atrium.auth.session_keys import PURPOSE, SessionKeyStore, session_kid
from atrium.auth.signed import (
    SESSION_KEY_FILE,
    SessionKeys,
    SessionNonces,
    Signer,
    ensure_session_key,
)
from atrium.gateway.errors import GatewayError
from atrium.gateway.sessions import SessionBinding
from atrium.secretbox import SECRET_KEY_VARIABLE, SecretBox, new_key
from atrium.settings import Settings, load_settings
from atrium.store import Store
from atrium.store.keys import KeyQueries, signing_keys

ALICE = Caller("alice", "cursor", frozenset({"tools:write"}))


def master_key() -> str:
    return base64.b64encode(new_key()).decode()


def host(database_settings: Settings, folder: Path, master: str | None = None) -> Settings:
    """Another project folder on the store of ``database_settings`` (SQLite: the first
    project's database file), with ``master`` as its master key if given."""
    environ = dict(database_settings.environ)
    if master is not None:
        environ[SECRET_KEY_VARIABLE] = master
    environ.setdefault("ATRIUM_DATABASE_URL", database_settings.database_url)
    folder.mkdir(parents=True, exist_ok=True)
    return load_settings(folder, environ=environ)


async def session_rows(store: Store) -> list[Any]:
    query = select(signing_keys).where(signing_keys.c.purpose == PURPOSE)
    async with store.engine.connect() as conn:
        return list((await conn.execute(query)).all())


# -- first use --------------------------------------------------------------------------------


async def test_first_use_imports_the_key_file_so_a_cookie_signed_before_still_verifies(
    store: Store, database_settings: Settings
) -> None:
    before_upgrade = Signer(SessionKeys.of(ensure_session_key(database_settings.state_dir)))
    cookie = before_upgrade.dumps("session", {"sub": "ada"}, 3600)

    keys = await SessionKeyStore.of(database_settings, store).load()

    assert Signer(keys).loads("session", cookie) == {"sub": "ada"}
    assert [row.kid for row in await session_rows(store)] == [session_kid(keys.signing)]


async def test_first_use_without_a_key_file_makes_one_key_and_writes_no_file(
    store: Store, database_settings: Settings
) -> None:
    keys = await SessionKeyStore.of(database_settings, store).load()
    again = await SessionKeyStore.of(database_settings, store).load()

    assert keys.all == again.all
    assert len(keys.all[0]) >= 32
    assert not (database_settings.state_dir / SESSION_KEY_FILE).exists()


async def test_replicas_starting_together_store_one_session_key(
    database_settings: Settings,
) -> None:
    stores = [await Store.open(database_settings) for _ in range(4)]
    try:
        loaded = await asyncio.gather(
            *(SessionKeyStore.of(database_settings, store).load() for store in stores)
        )
        stored = await session_rows(stores[0])
    finally:
        for store in stores:
            await store.close()

    assert len({keys.signing for keys in loaded}) == 1
    assert len(stored) == 1


async def test_a_second_host_with_its_own_key_file_uses_the_stores_key(
    store: Store, database_settings: Settings, tmp_path: Path
) -> None:
    master = master_key()
    first, second = (host(database_settings, tmp_path / name, master) for name in ("a", "b"))
    for settings in (first, second):
        ensure_session_key(settings.state_dir)  # each `atrium init` wrote its own
    cookie = Signer(await SessionKeyStore.of(first, store).load()).dumps("session", 1, 3600)

    keys = await SessionKeyStore.of(second, store).load()

    assert keys.signing == ensure_session_key(first.state_dir)
    assert keys.signing != ensure_session_key(second.state_dir)
    assert Signer(keys).loads("session", cookie) == 1


async def test_the_session_key_is_stored_only_sealed(
    store: Store, database_settings: Settings
) -> None:
    keys = await SessionKeyStore.of(database_settings, store).load()

    (row,) = await session_rows(store)

    assert keys.signing not in row.ciphertext
    assert keys.signing.decode() not in repr(row)
    assert row.key_id == SecretBox.load(database_settings).current


# -- rotation ---------------------------------------------------------------------------------


async def test_a_rotated_in_key_verifies_at_once_signs_only_from_its_time_and_the_old_one_verifies(
    store: Store, database_settings: Settings
) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    keystore = SessionKeyStore.of(database_settings, store, clock=clock)
    keys = await keystore.load()
    signer, binding = Signer(keys, clock=clock), SessionBinding(keys)
    nonces = SessionNonces(keys, clock=clock)
    old = keys.signing
    cookie, nonce = signer.dumps("session", "ada", 3600), nonces.issue()
    session = binding.wrap("tools", ALICE, "backend-session-1")

    rotation = await keystore.rotate(signs_after_s=60)
    changed = await keystore.reload(keys)
    meanwhile = keys.signing
    offset[0] = 61

    assert changed
    assert meanwhile == old  # verify-only for its first minute: another replica may lack it
    assert session_kid(keys.signing) == rotation.key.kid
    assert signer.loads("session", cookie) == "ada"  # signed with the old key, still valid
    assert nonces.valid(nonce)
    assert binding.unwrap("tools", ALICE, session) == "backend-session-1"
    assert binding.wrap("tools", ALICE, "backend-session-1") != session  # the new key seals
    assert signer.loads("session", signer.dumps("session", "grace", 60)) == "grace"
    assert not await keystore.reload(keys)  # nothing changed since


async def test_a_second_rotation_retires_the_first_key_and_what_it_signed(
    store: Store, database_settings: Settings
) -> None:
    keystore = SessionKeyStore.of(database_settings, store)
    keys = await keystore.load()
    signer, binding = Signer(keys), SessionBinding(keys)
    first = session_kid(keys.signing)
    cookie = signer.dumps("session", "ada", 3600)
    csrf = signer.csrf_token(cookie)
    session = binding.wrap("tools", ALICE, "backend-session-1")

    await keystore.rotate(signs_after_s=0)
    await keystore.reload(keys)
    kept = (signer.loads("session", cookie), signer.csrf_ok(cookie, csrf))
    second = await keystore.rotate(signs_after_s=0)
    await keystore.reload(keys)

    assert kept == ("ada", True)
    assert second.retired == (first,)
    assert signer.loads("session", cookie) is None
    assert not signer.csrf_ok(cookie, csrf)
    with pytest.raises(GatewayError) as refused:
        binding.unwrap("tools", ALICE, session)
    assert refused.value.status == 404
    (retired,) = [row for row in await session_rows(store) if row.retired_at is not None]
    assert (retired.key_id, retired.nonce, retired.ciphertext) == (None, None, None)


# -- attacks and failures ---------------------------------------------------------------------


async def test_another_master_key_is_a_clear_error_naming_what_to_set(
    store: Store, database_settings: Settings, tmp_path: Path
) -> None:
    first = host(database_settings, tmp_path / "a", master_key())
    await SessionKeyStore.of(first, store).load()
    other = host(database_settings, tmp_path / "b", master_key())

    with pytest.raises(KeyStoreError) as refused:
        await SessionKeyStore.of(other, store).load()

    assert "session key" in str(refused.value)
    assert SECRET_KEY_VARIABLE in str(refused.value)
    assert "same master key" in str(refused.value)


async def test_an_altered_session_key_is_refused_loudly(
    store: Store, database_settings: Settings
) -> None:
    keys = await SessionKeyStore.of(database_settings, store).load()
    (row,) = await session_rows(store)
    altered = bytes([row.ciphertext[0] ^ 1]) + bytes(row.ciphertext[1:])
    async with store.engine.begin() as conn:
        await conn.execute(
            update(signing_keys).where(signing_keys.c.kid == row.kid).values(ciphertext=altered)
        )

    with pytest.raises(KeyStoreError) as refused:
        await SessionKeyStore.of(database_settings, store).load()

    assert session_kid(keys.signing) in str(refused.value)
    assert "altered" in str(refused.value)
    assert "--session" in str(refused.value)


async def test_a_session_key_file_that_holds_no_key_is_not_imported(
    store: Store, database_settings: Settings
) -> None:
    database_settings.state_dir.mkdir(parents=True, exist_ok=True)
    (database_settings.state_dir / SESSION_KEY_FILE).write_text("short\n")

    with pytest.raises(KeyStoreError, match="cannot import the session key"):
        await SessionKeyStore.of(database_settings, store).load()

    assert await session_rows(store) == []


async def test_a_gateway_keeps_its_session_keys_when_the_store_cannot_be_reached(
    store: Store, database_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    keys = await SessionKeyStore.of(database_settings, store).load()
    held = keys.all
    gone = create_async_engine("postgresql+asyncpg://atrium@127.0.0.1:1/nowhere")
    unreachable = SessionKeyStore(
        KeyQueries(gone), SecretBox.load(database_settings), database_settings.state_dir
    )
    try:
        with caplog.at_level(logging.ERROR, logger="atrium.auth.session_keys"):
            reloaded = await unreachable.reload(keys)
    finally:
        await gone.dispose()

    assert not reloaded
    assert keys.all == held
    assert "not reloaded" in caplog.text
