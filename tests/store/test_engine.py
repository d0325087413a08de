from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from atrium.errors import EXIT_CONFIG, ConfigError
from atrium.settings import Settings, load_settings
from atrium.store import ServerRecord, Store, StoreError
from atrium.store.errors import masked_url
from atrium.store.tables import metadata


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def github() -> ServerRecord:
    return ServerRecord("github", {"port": 5001}, True, "http", 5001, "services/mcp/github.yaml")


async def test_open_creates_a_private_state_folder_and_database_file(tmp_path: Path) -> None:
    settings = load_settings(project_dir=tmp_path, environ={})

    async with await Store.open(settings) as store:
        await store.servers.save([github()])
        wal = tmp_path / ".atrium" / "atrium.db-wal"
        assert mode(wal) == 0o600

    assert mode(tmp_path / ".atrium") == 0o700
    assert mode(tmp_path / ".atrium" / "atrium.db") == 0o600


async def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    settings = load_settings(project_dir=tmp_path, environ={})

    async with await Store.open(settings) as store, store.engine.connect() as conn:
        journal_mode = await conn.scalar(text("PRAGMA journal_mode"))
        foreign_keys = await conn.scalar(text("PRAGMA foreign_keys"))

    assert (journal_mode, foreign_keys) == ("wal", 1)


async def test_a_schema_set_in_the_environment_with_sqlite_is_a_config_error(
    tmp_path: Path,
) -> None:
    settings = load_settings(project_dir=tmp_path, environ={"ATRIUM_DATABASE_SCHEMA": "atrium"})

    with pytest.raises(ConfigError) as caught:
        await Store.open(settings)

    assert caught.value.exit_code == EXIT_CONFIG
    assert caught.value.problems[0].source == "environment variable ATRIUM_DATABASE_SCHEMA"
    assert not (tmp_path / ".atrium").exists()


async def test_a_schema_set_in_atrium_yaml_with_sqlite_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "atrium.yaml").write_text("store:\n  schema: atrium\n")
    settings = load_settings(project_dir=tmp_path, environ={})

    with pytest.raises(ConfigError) as caught:
        await Store.open(settings)

    problem = caught.value.problems[0]
    assert (problem.source, problem.key_path) == ("atrium.yaml", "store.schema")


async def test_an_unreachable_database_is_a_store_error_naming_the_masked_url(
    tmp_path: Path,
) -> None:
    # Port 1 on loopback refuses at once: no PostgreSQL server is needed to see the failure.
    url = "postgresql://atrium:s3cret@127.0.0.1:1/atrium"
    settings = load_settings(project_dir=tmp_path, environ={"ATRIUM_DATABASE_URL": url})

    with pytest.raises(StoreError) as caught:
        await Store.open(settings)

    assert caught.value.url == "postgresql+asyncpg://atrium:***@127.0.0.1:1/atrium"
    assert "s3cret" not in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / ".atrium").mkdir()
    (tmp_path / ".atrium" / "atrium.db").write_bytes(b"these are not the pages of a database" * 200)
    settings = load_settings(project_dir=tmp_path, environ={})

    with pytest.raises(StoreError) as caught:
        await Store.open(settings)

    assert caught.value.url.endswith("/.atrium/atrium.db")


def test_masked_url_hides_the_password_in_user_info_and_query() -> None:
    assert masked_url("postgresql+asyncpg://u:p%40ss@db:5432/atrium?password=x&ssl=on") == (
        "postgresql+asyncpg://u:***@db:5432/atrium?password=***&ssl=on"
    )


async def test_reopening_keeps_the_data_and_migrates_nothing_twice(
    database_settings: Settings,
) -> None:
    async with await Store.open(database_settings) as store:
        await store.servers.save([github()])

    async with await Store.open(database_settings) as store:
        found = await store.servers.get("github")

    assert found is not None
    assert found.port == 5001


async def test_processes_starting_together_migrate_one_after_the_other(
    database_settings: Settings,
) -> None:
    # Four engines stand for four processes; all must come up on the same fresh database.
    opened = await asyncio.gather(
        *(Store.open(database_settings) for _ in range(4)), return_exceptions=True
    )
    stores = [store for store in opened if isinstance(store, Store)]
    try:
        listed = [await store.servers.list() for store in stores]
    finally:
        await asyncio.gather(*(store.close() for store in stores))

    assert [o for o in opened if not isinstance(o, Store)] == []
    assert listed == [[], [], [], []]


@pytest.mark.postgres
@pytest.mark.parametrize("database_settings", ["postgres"], indirect=True)
async def test_open_creates_the_postgres_schema_and_uses_only_it(
    database_settings: Settings,
) -> None:
    async with await Store.open(database_settings) as store, store.engine.connect() as conn:
        current = await conn.scalar(text("SELECT current_schema()"))
        tables = await conn.scalars(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": database_settings.database_schema},
        )

        assert current == database_settings.database_schema
        assert sorted(tables) == sorted(["alembic_version", *metadata.tables])


async def test_an_empty_schema_variable_counts_as_unset(tmp_path: Path) -> None:
    settings = load_settings(project_dir=tmp_path, environ={"ATRIUM_DATABASE_SCHEMA": ""})

    async with await Store.open(settings) as store:
        assert await store.servers.list() == []
