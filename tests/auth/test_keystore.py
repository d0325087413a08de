"""The access-token signing keys in the store (issue 18), on SQLite and PostgreSQL: imported
from the key file at first use, one set for replicas starting together and for a second host
with its own ``atrium init``, sealed under the master key, rotated verify-only first. And the
attacks: an altered or moved sealed value, another master key, a retired key's tokens.

Replicas of one gateway, end to end: tests/auth/test_keystore_replicas.py."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from atrium.auth.access_tokens import TokenIssuer, TokenVerifier
from atrium.auth.errors import OAuthError
from atrium.auth.issuing import mint_access_token
from atrium.auth.keys import SIGNING_KEYS_FILE, KeySet, ensure_signing_keys, new_signing_key
from atrium.auth.keystore import PURPOSE, KeyStore, KeyStoreError, key_states, project_keys
from atrium.secretbox import (
    SECRET_KEY_FILE,
    SECRET_KEY_VARIABLE,
    SecretBox,
    SecretKeyError,
    new_key,
)
from atrium.settings import Settings, load_settings
from atrium.store import Store
from atrium.store.keys import KeyQueries, NewKey, sealing_owner, signing_keys
from atrium.store.secrets import rotate_secret_key
from tests.cli.helpers import run_atrium

ISSUER = "http://127.0.0.1:8080"


def mint(keys: KeySet | ECKey) -> str:
    held = keys if isinstance(keys, KeySet) else KeySet([keys])
    token, _ = TokenIssuer(held, ISSUER, ttl_s=300).mint(
        subject="u", client_id="c", audience=["mcp"], scopes=["user"]
    )
    return token


def refusal(keys: KeySet, token: str) -> str | None:
    """None when ``keys`` accept ``token``, else the OAuth error code of the refusal."""
    try:
        TokenVerifier(keys, ISSUER).verify(token)
    except OAuthError as error:
        return error.error
    return None


def kid_of(token: str) -> str:
    return str(jws.extract_compact(token.encode()).headers()["kid"])


def master_key() -> str:
    return base64.b64encode(new_key()).decode()


def host(database_settings: Settings, folder: Path, master: str) -> Settings:
    """Another project folder on the store of ``database_settings``, with ``master`` as its
    master key (SQLite: the first project's database file, as a second replica's)."""
    environ = {**database_settings.environ, SECRET_KEY_VARIABLE: master}
    environ.setdefault("ATRIUM_DATABASE_URL", database_settings.database_url)
    return load_settings(folder, environ=environ)


async def rows(store: Store) -> list[Any]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(select(signing_keys))).all())


async def set_row(store: Store, kid: str, **values: Any) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(update(signing_keys).where(signing_keys.c.kid == kid).values(**values))


# -- first use --------------------------------------------------------------------------------


async def test_first_use_imports_the_key_file_so_a_token_minted_before_still_verifies(
    store: Store, database_settings: Settings
) -> None:
    ensure_signing_keys(database_settings.state_dir)  # `atrium init` before the upgrade
    file_keys = KeySet.load(database_settings.state_dir)
    before = mint(file_keys)

    keys = await KeyStore.of(database_settings, store).load()

    assert refusal(keys, before) is None
    assert keys.signing.kid == file_keys.signing.kid
    assert [row.kid for row in await rows(store)] == [file_keys.signing.kid]


async def test_first_use_without_a_key_file_makes_one_key_and_writes_no_file(
    store: Store, database_settings: Settings
) -> None:
    keys = await KeyStore.of(database_settings, store).load()
    again = await KeyStore.of(database_settings, store).load()

    assert [key.kid for key in keys.keys] == [key.kid for key in again.keys]
    assert len(keys.keys) == 1
    assert not (database_settings.state_dir / SIGNING_KEYS_FILE).exists()


async def test_replicas_starting_together_store_one_key_set(database_settings: Settings) -> None:
    stores = [await Store.open(database_settings) for _ in range(4)]
    try:
        loaded = await asyncio.gather(
            *(KeyStore.of(database_settings, store).load() for store in stores)
        )
        stored = await rows(stores[0])
    finally:
        for store in stores:
            await store.close()

    assert len({keys.signing.kid for keys in loaded}) == 1
    assert len(stored) == 1


async def test_the_private_key_is_stored_only_sealed(
    store: Store, database_settings: Settings
) -> None:
    keys = await KeyStore.of(database_settings, store).load()
    private = keys.signing.as_dict(private=True)

    (row,) = await rows(store)

    assert str(private["d"]).encode() not in row.ciphertext
    assert base64.urlsafe_b64decode(str(private["d"]) + "==") not in row.ciphertext
    assert str(private["d"]) not in repr(row)
    assert row.key_id == SecretBox.load(database_settings).current


# -- rotation ---------------------------------------------------------------------------------


async def test_a_rotated_in_key_verifies_at_once_and_signs_only_from_its_time(
    store: Store, database_settings: Settings
) -> None:
    offset = [0.0]
    keystore = KeyStore(
        store.keys,
        SecretBox.load(database_settings),
        database_settings.state_dir,
        clock=lambda: time.time() + offset[0],
    )
    keys = await keystore.load()
    old = keys.signing.kid

    rotation = await keystore.rotate(signs_after_s=60)
    changed = await keystore.refresh(keys)
    new_key_token = mint(keys.get(rotation.key.kid) or keys.signing)
    signed_meanwhile = {kid_of(mint(keys)) for _ in range(10)}
    offset[0] = 61

    assert changed
    assert signed_meanwhile == {old}
    assert refusal(keys, new_key_token) is None  # valid before it is due: another replica's clock
    assert kid_of(new_key_token) == rotation.key.kid != old
    assert keys.signing.kid == rotation.key.kid
    assert not await keystore.refresh(keys)  # nothing changed since


async def test_rotation_keeps_the_newest_keys_and_refuses_the_retired_ones_tokens(
    store: Store, database_settings: Settings
) -> None:
    keystore = KeyStore.of(database_settings, store)
    keys = await keystore.load()
    verifier = TokenVerifier(keys, ISSUER)
    oldest = mint(keys)
    assert verifier.verify(oldest).subject == "u"  # remembered from now on

    first = await keystore.rotate(signs_after_s=0)
    await keystore.refresh(keys)
    kept = refusal(keys, oldest)
    second = await keystore.rotate(signs_after_s=0)
    await keystore.refresh(keys)

    assert kept is None
    assert second.retired == (kid_of(oldest),)
    with pytest.raises(OAuthError) as refused:
        verifier.verify(oldest)
    assert refused.value.error == "invalid_token"
    fresh = await KeyStore.of(database_settings, store).load()  # another process
    assert [key.kid for key in fresh.keys] == [second.key.kid, first.key.kid]
    assert refusal(fresh, oldest) == "invalid_token"
    retired = {row.kid: row for row in await rows(store)}[kid_of(oldest)]
    assert retired.retired_at is not None
    assert (retired.key_id, retired.nonce, retired.ciphertext) == (None, None, None)


async def test_a_second_rotation_within_the_delay_retires_the_signer_and_says_so(
    store: Store, database_settings: Settings
) -> None:
    keystore = KeyStore.of(database_settings, store)
    keys = await keystore.load()

    first = await keystore.rotate(signs_after_s=600)
    second = await keystore.rotate(signs_after_s=600)
    await keystore.refresh(keys)

    assert (first.early, second.early) == (False, True)
    # The operator ended the signing key: the first key to come signs, before its time.
    assert keys.signing.kid == first.key.kid
    states = {state.kid: state for state in await key_states(store)}
    assert states[first.key.kid].retired_at is None
    assert sum(state.retired_at is not None for state in states.values()) == 1


async def test_a_rotation_needs_a_sane_delay_and_keep(
    store: Store, database_settings: Settings
) -> None:
    keystore = KeyStore.of(database_settings, store)

    with pytest.raises(ValueError, match="before it is stored"):
        await keystore.rotate(signs_after_s=-1)
    with pytest.raises(ValueError, match="keep"):
        await keystore.rotate(keep=0)


# -- attacks on the stored keys ---------------------------------------------------------------


async def test_a_key_whose_sealed_value_was_altered_is_refused_loudly(
    store: Store, database_settings: Settings
) -> None:
    keys = await KeyStore.of(database_settings, store).load()
    (row,) = await rows(store)
    altered = bytes([row.ciphertext[0] ^ 1]) + bytes(row.ciphertext[1:])
    await set_row(store, row.kid, ciphertext=altered)

    with pytest.raises(KeyStoreError) as refused:
        await KeyStore.of(database_settings, store).load()

    assert str(keys.signing.kid) in str(refused.value)
    assert "altered" in str(refused.value)


async def test_a_sealed_value_moved_to_another_key_is_refused(
    store: Store, database_settings: Settings
) -> None:
    keystore = KeyStore.of(database_settings, store)
    await keystore.load()
    rotation = await keystore.rotate(signs_after_s=0)
    (other,) = [row for row in await rows(store) if row.kid != rotation.key.kid]
    # The attacker's own key is the one not rotated in; they make its row hold the new key.
    await set_row(store, rotation.key.kid, nonce=other.nonce, ciphertext=other.ciphertext)

    with pytest.raises(KeyStoreError) as refused:
        await KeyStore.of(database_settings, store).load()

    assert rotation.key.kid in str(refused.value)


async def test_a_key_stored_under_a_kid_that_is_not_its_thumbprint_is_refused(
    store: Store, database_settings: Settings
) -> None:
    # Written through the store with the master key: the kid still has to be the key's own.
    box = SecretBox.load(database_settings)
    impostor = NewKey("a-kid-of-my-choosing", json.dumps(new_signing_key()))
    await store.keys.ensure(PURPOSE, lambda: [impostor], box=box)

    with pytest.raises(KeyStoreError, match="thumbprint"):
        await KeyStore.of(database_settings, store).load()


async def test_a_gateway_keeps_its_keys_when_a_new_key_does_not_open(
    store: Store, database_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    keystore = KeyStore.of(database_settings, store)
    keys = await keystore.load()
    held = [key.kid for key in keys.keys]
    rotation = await keystore.rotate(signs_after_s=0)
    await set_row(store, rotation.key.kid, nonce=b"\x00" * 12)

    with caplog.at_level(logging.ERROR, logger="atrium.auth.keystore"):
        reloaded = await keystore.reload(keys)

    assert not reloaded
    assert [key.kid for key in keys.keys] == held
    assert rotation.key.kid in caplog.text


async def test_a_gateway_keeps_its_keys_when_the_store_cannot_be_reached(
    store: Store, database_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    keys = await KeyStore.of(database_settings, store).load()
    gone = create_async_engine("postgresql+asyncpg://atrium@127.0.0.1:1/nowhere")
    unreachable = KeyStore(
        KeyQueries(gone), SecretBox.load(database_settings), database_settings.state_dir
    )
    try:
        with caplog.at_level(logging.ERROR, logger="atrium.auth.keystore"):
            reloaded = await unreachable.reload(keys)
    finally:
        await gone.dispose()

    assert not reloaded
    assert len(keys.keys) == 1
    assert "not reloaded" in caplog.text


# -- the master key ---------------------------------------------------------------------------


async def test_another_master_key_is_a_clear_error_naming_what_to_set(
    store: Store, database_settings: Settings, tmp_path: Path
) -> None:
    first = host(database_settings, database_settings.project_dir, master_key())
    await KeyStore.of(first, store).load()
    (tmp_path / "other").mkdir()
    other = host(database_settings, tmp_path / "other", master_key())

    with pytest.raises(KeyStoreError) as refused:
        await KeyStore.of(other, store).load()

    assert SECRET_KEY_VARIABLE in str(refused.value)
    assert "same master key" in str(refused.value)


async def test_a_lost_master_key_ring_is_a_clear_error_and_no_new_ring(
    store: Store, database_settings: Settings
) -> None:
    await KeyStore.of(database_settings, store).load()  # seals under .atrium/secret-key
    ring = database_settings.state_dir / SECRET_KEY_FILE
    ring.unlink()

    with pytest.raises(SecretKeyError) as refused:
        await KeyStore.of(database_settings, store).load()
    with pytest.raises(SecretKeyError):
        await KeyStore.of(database_settings, store).rotate()

    assert "restore it" in str(refused.value)
    assert not ring.exists()  # a new ring would leave the stored keys unreadable for good


async def test_rotating_the_master_key_reseals_the_signing_keys(
    store: Store, database_settings: Settings
) -> None:
    keys = await KeyStore.of(database_settings, store).load()
    before = mint(keys)
    old_master = SecretBox.load(database_settings).current

    rotation = await rotate_secret_key(store.secrets, database_settings)

    assert rotation.retired == (old_master,)
    assert {row.key_id for row in await rows(store)} == {rotation.key_id}
    assert SecretBox.load(database_settings).key_ids == {rotation.key_id}
    fresh = await KeyStore.of(database_settings, store).load()
    assert refusal(fresh, before) is None


async def test_the_sealed_value_names_its_purpose_and_kid(
    store: Store, database_settings: Settings
) -> None:
    await KeyStore.of(database_settings, store).load()
    (row,) = await rows(store)
    box = SecretBox.load(database_settings)
    sealed = (await store.keys.list(PURPOSE))[0].sealed
    assert sealed is not None

    opened = box.open(sealed, owner=sealing_owner(PURPOSE), name=row.kid)

    assert ECKey.import_key(json.loads(opened)).thumbprint() == row.kid


# -- two hosts, one store ---------------------------------------------------------------------


def test_a_second_host_with_its_own_init_accepts_the_first_hosts_tokens(
    database_settings: Settings, tmp_path: Path
) -> None:
    master = master_key()
    folders = [tmp_path / "host-a", tmp_path / "host-b"]
    for folder in folders:
        assert run_atrium("init", str(folder)).exit_code == 0
    first, second = (host(database_settings, folder, master) for folder in folders)
    claims: dict[str, Any] = {"subject": "u", "client_id": "c", "server": "atrium"}

    from_first = mint_access_token(first, scopes=["admin"], ttl_s=300, **claims)
    from_second = mint_access_token(second, scopes=["admin"], ttl_s=300, **claims)

    file_kids = [KeySet.load(folder / ".atrium").signing.kid for folder in folders]
    assert file_kids[0] != file_kids[1]  # each init made its own key file
    assert kid_of(from_first) == kid_of(from_second) == file_kids[0]  # the first to start
    for settings, token in ((second, from_first), (first, from_second)):
        claims_seen = TokenVerifier(project_keys(settings), settings.issuer).verify(token)
        assert claims_seen.subject == "u"


# -- the CLI ----------------------------------------------------------------------------------


def test_the_cli_rotates_and_lists_each_keys_state(tmp_path: Path) -> None:
    assert run_atrium("init", str(tmp_path)).exit_code == 0
    file_kid = str(KeySet.load(tmp_path / ".atrium").signing.kid)
    admin = ("--project", str(tmp_path), "admin", "keys")

    unstored = run_atrium(*admin, "list")
    rotated = run_atrium(*admin, "rotate", "--keep", "3", "--signs-after", "600")
    listed = run_atrium(*admin, "list")
    again = run_atrium(*admin, "rotate", "--signs-after", "600")
    relisted = run_atrium(*admin, "list")

    assert "no signing key stored yet" in unstored.stdout
    assert rotated.exit_code == 0, rotated.stderr
    new_kid = rotated.stdout.split()[3].rstrip(":")
    assert "verify-only until" in rotated.stdout
    states = dict(line.split("  ", 1) for line in listed.stdout.splitlines())
    assert states[file_kid] == "signs"
    assert states[new_kid].startswith("verify-only until ")
    assert again.exit_code == 0, again.stderr
    assert "warning" in again.stderr  # it retired the signing key
    states = dict(line.split("  ", 1) for line in relisted.stdout.splitlines())
    assert states[file_kid].startswith("retired ")
    assert states[new_kid] == "signs"


def test_the_cli_with_another_master_key_says_what_to_set_without_a_traceback(
    tmp_path: Path,
) -> None:
    assert run_atrium("init", str(tmp_path)).exit_code == 0
    admin = ("--project", str(tmp_path), "admin", "keys", "rotate")
    assert run_atrium(*admin, env={SECRET_KEY_VARIABLE: master_key()}).exit_code == 0

    result = run_atrium(*admin, env={SECRET_KEY_VARIABLE: master_key()})
    token = run_atrium(
        "--project",
        str(tmp_path),
        "admin",
        "token",
        "revoke",
        mint(KeySet.load(tmp_path / ".atrium")),
        env={SECRET_KEY_VARIABLE: master_key()},
    )

    assert result.exit_code != 0
    assert SECRET_KEY_VARIABLE in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert token.exit_code != 0
    assert SECRET_KEY_VARIABLE in token.stderr
