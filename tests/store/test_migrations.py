from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from atrium.settings import Settings
from atrium.store import Store, StoreError
from atrium.store.migrate import alembic_config
from atrium.store.tables import metadata


def differences(connection: Connection) -> list[Any]:
    return compare_metadata(MigrationContext.configure(connection), metadata)


def table_names(connection: Connection) -> list[str]:
    return sorted(inspect(connection).get_table_names())


async def test_the_migrated_schema_equals_the_tables(store: Store) -> None:
    async with store.engine.connect() as conn:
        found = await conn.run_sync(differences)

    assert found == []


async def test_downgrade_to_base_drops_the_tables_and_upgrade_restores_them(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
        after_downgrade = await conn.run_sync(table_names)
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
        after_upgrade = await conn.run_sync(differences)

    assert after_downgrade == ["alembic_version"]
    assert after_upgrade == []


async def test_a_database_from_a_newer_atrium_is_a_store_error(
    database_settings: Settings,
) -> None:
    async with await Store.open(database_settings) as store, store.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))

    with pytest.raises(StoreError) as caught:
        await Store.open(database_settings)

    assert caught.value.action == "open and migrate the database"
