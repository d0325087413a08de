from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from atrium.settings import Settings
from atrium.store import Store, StoreError
from atrium.store.audit import AuditEvent
from atrium.store.content import include_name
from atrium.store.migrate import HEAD_REVISION, MIGRATIONS_DIR, alembic_config
from atrium.store.tables import metadata


def differences(connection: Connection) -> list[Any]:
    # The full-text index is one dialect's each, outside ``metadata`` (migration 0010).
    context = MigrationContext.configure(connection, opts={"include_name": include_name})
    found: list[Any] = compare_metadata(context, metadata)
    return found


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


async def test_the_auth_revision_goes_down_and_up_keeping_the_audit_records(store: Store) -> None:
    at = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    await store.audit.add_many([AuditEvent(request_id="r1", server="tools", method=None, at=at)])
    async with store.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0003"))
        after_downgrade = await conn.run_sync(table_names)
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
        after_upgrade = await conn.run_sync(differences)

    assert after_downgrade == ["alembic_version", "artifacts", "audit_events", "mcp_servers"]
    assert after_upgrade == []
    assert [(r.request_id, r.at, r.subject) for r in await store.audit.for_request("r1")] == [
        ("r1", at, None)
    ]


def test_the_head_revision_known_without_alembic_is_alembics_head() -> None:
    # An open of a database at HEAD_REVISION skips Alembic: it must be the newest migration.
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    assert scripts.get_current_head() == HEAD_REVISION


async def test_a_database_behind_the_head_is_migrated_when_opened_again(
    database_settings: Settings,
) -> None:
    async with await Store.open(database_settings) as store, store.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0009"))

    async with await Store.open(database_settings) as store, store.engine.begin() as conn:
        assert await conn.run_sync(differences) == []
