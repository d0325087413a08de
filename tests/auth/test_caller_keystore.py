"""The caller-assertion keys in the store (issue 18), on SQLite and PostgreSQL: imported from
``caller-keys.json`` at first use, one set for replicas starting together and for a second host
with its own ``atrium init``, whose backends read the public file its supervisor writes from the
store; a rotation published verify-only first; another master key or an altered key refused.

Two gateways and a backend through a rotation: tests/auth/test_two_hosts.py."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from atrium.auth.assertion import (
    PRIVATE_FILE,
    PUBLIC_FILE,
    AssertionSigner,
    AssertionVerifier,
    InvalidAssertion,
    ensure_caller_keys,
)
from atrium.auth.caller_keystore import PURPOSE, CallerKeyStore, published_caller_keys
from atrium.auth.sealed_keys import KeyStoreError
from atrium.secretbox import SECRET_KEY_VARIABLE, new_key
from atrium.settings import Settings, load_settings
from atrium.store import Store
from atrium.store.keys import signing_keys
from tests.conftest import POSTGRES_URL
from tests.polling import until


def master_key() -> str:
    return base64.b64encode(new_key()).decode()


def host(
    database_settings: Settings, folder: Path, master: str | None = None, poll_s: float = 2.0
) -> Settings:
    """Another project folder on the store of ``database_settings`` (SQLite: the first
    project's database file), with ``master`` as its master key if given."""
    environ = dict(database_settings.environ)
    if master is not None:
        environ[SECRET_KEY_VARIABLE] = master
    environ.setdefault("ATRIUM_DATABASE_URL", database_settings.database_url)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "atrium.yaml").write_text(f"gateway:\n  poll_s: {poll_s}\n")
    return load_settings(folder, environ=environ)


def sign(signer: AssertionSigner, server: str = "weather") -> str:
    return signer.sign(
        server=server,
        subject="ada",
        client_id="cursor",
        scopes=frozenset({"tools:read"}),
        origin="external",
        request_id="r1",
    )


def verifier(settings: Settings, server: str = "weather") -> AssertionVerifier:
    """A backend of ``settings``'s folder, as the supervisor starts it."""
    return AssertionVerifier.load(settings.state_dir / PUBLIC_FILE, server)


def published(settings: Settings) -> list[str]:
    data = json.loads((settings.state_dir / PUBLIC_FILE).read_text())
    assert data["issuer"] == settings.issuer
    assert all("d" not in key for key in data["keys"])
    return [str(key["kid"]) for key in data["keys"]]


async def caller_rows(store: Store) -> list[Any]:
    query = select(signing_keys).where(signing_keys.c.purpose == PURPOSE)
    async with store.engine.connect() as conn:
        return list((await conn.execute(query)).all())


# -- first use --------------------------------------------------------------------------------


async def test_first_use_imports_the_key_file_so_backends_running_keep_accepting(
    store: Store, database_settings: Settings
) -> None:
    ensure_caller_keys(database_settings.state_dir, database_settings.issuer)  # `atrium init`
    running_backend = verifier(database_settings)
    file_kid = published(database_settings)

    signer = await CallerKeyStore.of(database_settings, store).signer()

    assert [signer.kid] == file_kid
    assert running_backend.verify(sign(signer)).subject == "ada"
    assert [row.kid for row in await caller_rows(store)] == file_kid


async def test_first_use_without_a_key_file_makes_a_key_and_publishes_only_its_public_half(
    store: Store, database_settings: Settings
) -> None:
    signer = await CallerKeyStore.of(database_settings, store).signer()

    assert published(database_settings) == [signer.kid]
    assert not (database_settings.state_dir / PRIVATE_FILE).exists()
    assert verifier(database_settings).verify(sign(signer)).client_id == "cursor"


async def test_replicas_starting_together_store_one_key_set(
    database_settings: Settings,
) -> None:
    stores = [await Store.open(database_settings) for _ in range(4)]
    try:
        signers = await asyncio.gather(
            *(CallerKeyStore.of(database_settings, store).signer() for store in stores)
        )
        stored = await caller_rows(stores[0])
    finally:
        for store in stores:
            await store.close()

    assert len({signer.kid for signer in signers}) == 1
    assert len(stored) == 1


async def test_a_second_hosts_backends_accept_the_first_hosts_gateway(
    store: Store, database_settings: Settings, tmp_path: Path
) -> None:
    master = master_key()
    first, second = (host(database_settings, tmp_path / name, master) for name in ("a", "b"))
    for settings in (first, second):
        ensure_caller_keys(settings.state_dir, settings.issuer)  # each `atrium init`
    gateway = await CallerKeyStore.of(first, store).signer()

    # The second host's supervisor, as it starts: its public file from the store.
    async with published_caller_keys(second):
        backend = verifier(second)

    assert backend.verify(sign(gateway)).subject == "ada"
    assert published(second) == [gateway.kid]


async def test_the_private_keys_are_stored_only_sealed(
    store: Store, database_settings: Settings
) -> None:
    ensure_caller_keys(database_settings.state_dir, database_settings.issuer)
    await CallerKeyStore.of(database_settings, store).load()
    private = json.loads((database_settings.state_dir / PRIVATE_FILE).read_text())["keys"][0]

    (row,) = await caller_rows(store)

    assert str(private["d"]).encode() not in row.ciphertext
    assert base64.urlsafe_b64decode(str(private["d"]) + "==") not in row.ciphertext
    assert str(private["d"]) not in repr(row)


# -- rotation ---------------------------------------------------------------------------------


async def test_a_rotated_in_key_is_published_at_once_and_signs_only_from_its_time(
    store: Store, database_settings: Settings
) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    keystore = CallerKeyStore.of(database_settings, store, clock=clock)
    signer = await keystore.signer()
    old = signer.kid
    path = database_settings.state_dir / PUBLIC_FILE
    backend = AssertionVerifier.load(path, "weather", clock=clock)

    rotation = await keystore.rotate(signs_after_s=60)
    file_now = published(database_settings)
    changed = await signer.reload()
    meanwhile = {signer.kid for _ in range(5)}
    offset[0] = 61
    after = sign(signer)

    assert file_now == [rotation.key.kid, old]  # before any assertion signed with it
    assert changed
    assert meanwhile == {old}
    assert signer.kid == rotation.key.kid
    assert backend.verify(after).subject == "ada"
    assert not await signer.reload()


async def test_a_second_rotation_retires_the_first_key_everywhere(
    store: Store, database_settings: Settings
) -> None:
    keystore = CallerKeyStore.of(database_settings, store)
    signer = await keystore.signer()
    leaked = sign(signer)
    backend = verifier(database_settings)

    await keystore.rotate(signs_after_s=0)
    second = await keystore.rotate(signs_after_s=0)

    assert second.retired == (signer.kid,)
    with pytest.raises(InvalidAssertion, match="unknown key"):
        backend.verify(leaked)
    (retired,) = [row for row in await caller_rows(store) if row.retired_at is not None]
    assert (retired.key_id, retired.nonce, retired.ciphertext) == (None, None, None)


async def test_a_supervisor_publishes_a_rotation_made_elsewhere_at_its_poll(
    store: Store, database_settings: Settings, tmp_path: Path
) -> None:
    master = master_key()
    cli, supervisor = (
        host(database_settings, tmp_path / name, master, poll_s=0.1) for name in ("cli", "b")
    )
    async with published_caller_keys(supervisor):
        rotation = await CallerKeyStore.of(cli, store).rotate(signs_after_s=60)
        await until(
            lambda: rotation.key.kid in published(supervisor),
            what="the supervisor to publish the new key",
            timeout_s=10,
            interval=0.02,
        )


@pytest.mark.postgres
async def test_on_postgresql_a_supervisor_publishes_a_rotation_at_once(
    postgres_schema_prefix: str, tmp_path: Path
) -> None:
    environ = {
        "ATRIUM_DATABASE_URL": POSTGRES_URL,
        "ATRIUM_DATABASE_SCHEMA": f"{postgres_schema_prefix}_{uuid.uuid4().hex[:8]}",
        SECRET_KEY_VARIABLE: master_key(),
    }
    base = host(load_settings(tmp_path, environ=environ), tmp_path / "cli")
    supervisor = host(base, tmp_path / "b", poll_s=3600)
    async with await Store.open(base) as store, published_caller_keys(supervisor) as publishing:
        assert publishing.changes is not None
        await asyncio.wait_for(publishing.changes.listening.wait(), 10)
        rotation = await CallerKeyStore.of(base, store).rotate(signs_after_s=60)
        started = time.monotonic()
        await until(
            lambda: rotation.key.kid in published(supervisor),
            what="the supervisor to publish the new key",
            timeout_s=5,
            interval=0.005,
        )

    assert time.monotonic() - started < 1.0  # the poll is an hour: the notification did it


# -- attacks and failures ---------------------------------------------------------------------


async def test_another_master_key_is_a_clear_error_naming_what_to_set(
    store: Store, database_settings: Settings, tmp_path: Path
) -> None:
    first = host(database_settings, tmp_path / "a", master_key())
    await CallerKeyStore.of(first, store).load()
    other = host(database_settings, tmp_path / "b", master_key())

    with pytest.raises(KeyStoreError) as refused:
        async with published_caller_keys(other):
            pass

    assert "caller-assertion key" in str(refused.value)
    assert SECRET_KEY_VARIABLE in str(refused.value)
    assert "same master key" in str(refused.value)
    assert not (other.state_dir / PUBLIC_FILE).exists()


async def test_an_altered_key_is_refused_and_a_running_gateway_keeps_its_keys(
    store: Store, database_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    signer = await CallerKeyStore.of(database_settings, store).signer()
    # `atrium admin keys rotate --caller`, then someone who can write to the database.
    rotation = await CallerKeyStore.of(database_settings, store).rotate(signs_after_s=0)
    async with store.engine.begin() as conn:
        await conn.execute(
            update(signing_keys)
            .where(signing_keys.c.kid == rotation.key.kid)
            .values(nonce=b"\x00" * 12)
        )

    with caplog.at_level(logging.ERROR, logger="atrium.auth.caller_keystore"):
        reloaded = await signer.reload()
    with pytest.raises(KeyStoreError) as refused:
        await CallerKeyStore.of(database_settings, store).load()

    assert not reloaded
    assert rotation.key.kid not in [held.kid for held in signer.keys]
    assert rotation.key.kid in caplog.text
    assert "altered" in str(refused.value)
    assert "--caller" in str(refused.value)


async def test_a_key_file_that_is_not_a_key_set_is_not_imported(
    store: Store, database_settings: Settings
) -> None:
    database_settings.state_dir.mkdir(parents=True, exist_ok=True)
    (database_settings.state_dir / PRIVATE_FILE).write_text('{"keys": [{"kid": "x", "d": "y"}]}')

    with pytest.raises(KeyStoreError, match="cannot import the caller-assertion keys"):
        await CallerKeyStore.of(database_settings, store).load()

    assert await caller_rows(store) == []
