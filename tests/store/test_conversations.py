from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, func, inspect, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from atrium.settings import Settings, load_settings
from atrium.store import NewMessage, Store, StoreError, UnknownConversation
from atrium.store.content import include_name
from atrium.store.migrate import alembic_config
from atrium.store.tables import ai_messages, metadata

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def ticking() -> Callable[[], datetime]:
    """A clock a minute later at every call, so that each write has its own time."""
    minutes = itertools.count()
    return lambda: T0 + timedelta(minutes=next(minutes))


def said(text: str) -> NewMessage:
    return NewMessage("user", {"text": text})


def answered(text: str, input_tokens: int = 10, output_tokens: int = 5) -> NewMessage:
    return NewMessage("assistant", {"text": text}, input_tokens, output_tokens)


async def test_a_created_conversation_reads_back_empty(database_settings: Settings) -> None:
    async with await Store.open(database_settings, clock=lambda: T0) as store:
        created = await store.conversations.create(subject="u1", agent="helper", title="Hi")

        found = await store.conversations.get(created.id)
        messages = await store.conversations.messages(created.id)

    assert found == created
    assert (created.subject, created.agent, created.title) == ("u1", "helper", "Hi")
    assert (created.created_at, created.updated_at, created.messages) == (T0, T0, 0)
    assert len(created.id) == 32
    assert int(created.id, 16) >= 0
    assert messages == []


async def test_the_title_is_cut_to_200_characters(store: Store) -> None:
    long_title = "é" * 150 + "x" * 100

    created = await store.conversations.create(subject="u1", agent="helper", title=long_title)
    found = await store.conversations.get(created.id)

    assert found is not None
    assert found.title == created.title == "é" * 150 + "x" * 50


async def test_a_subject_longer_than_its_column_is_refused_on_both_databases(
    store: Store,
) -> None:
    with pytest.raises(ValueError, match="subject"):
        await store.conversations.create(subject="s" * 256, agent="helper", title="t")
    with pytest.raises(ValueError, match="agent"):
        await store.conversations.create(subject="u1", agent="a" * 65, title="t")

    assert await store.conversations.list() == []


async def test_appended_messages_read_back_in_order_with_their_usage(
    database_settings: Settings,
) -> None:
    async with await Store.open(database_settings, clock=ticking()) as store:
        created = await store.conversations.create(subject="u1", agent="helper", title="q")
        tool_result = {"call_id": "c1", "content": [{"type": "text", "text": "ünïcode ✓"}]}
        await store.conversations.append(created.id, [said("q"), answered("calling", 120, 8)])
        await store.conversations.append(created.id, [NewMessage("tool", tool_result)])

        messages = await store.conversations.messages(created.id)
        found = await store.conversations.get(created.id)

    rows = [(m.seq, m.role, m.content, m.input_tokens, m.output_tokens) for m in messages]
    assert rows == [
        (1, "user", {"text": "q"}, None, None),
        (2, "assistant", {"text": "calling"}, 120, 8),
        (3, "tool", tool_result, None, None),
    ]
    first_append, second_append = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    assert [m.created_at for m in messages] == [first_append, first_append, second_append]
    assert found is not None
    assert (found.messages, found.created_at, found.updated_at) == (3, T0, second_append)


async def test_appending_nothing_changes_nothing(database_settings: Settings) -> None:
    async with await Store.open(database_settings, clock=ticking()) as store:
        created = await store.conversations.create(subject="u1", agent="helper", title="q")

        await store.conversations.append(created.id, [])

        assert await store.conversations.get(created.id) == created


async def test_concurrent_appends_to_one_conversation_keep_every_message(store: Store) -> None:
    created = await store.conversations.create(subject="u1", agent="helper", title="q")
    batches = [[said(f"{n}.{i}") for i in range(3)] for n in range(8)]

    await asyncio.gather(*(store.conversations.append(created.id, b) for b in batches))

    messages = await store.conversations.messages(created.id)
    found = await store.conversations.get(created.id)
    assert [m.seq for m in messages] == list(range(1, 25))
    texts = [m.content["text"] for m in messages]
    # Each append's messages stay together and in order, whichever append went first.
    runs = [texts[i : i + 3] for i in range(0, 24, 3)]
    expected = [[m.content["text"] for m in batch] for batch in batches]
    assert sorted(runs) == sorted(expected)
    assert found is not None
    assert found.messages == 24


async def test_appending_to_an_unknown_conversation_raises_and_writes_nothing(
    store: Store,
) -> None:
    with pytest.raises(UnknownConversation) as caught:
        await store.conversations.append("0" * 32, [said("hello")])
    with pytest.raises(UnknownConversation):
        await store.conversations.append("0" * 32, [])

    assert isinstance(caught.value, StoreError)
    assert (caught.value.kind, caught.value.key) == ("conversation", "0" * 32)
    async with store.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(ai_messages)) == 0


async def test_a_message_the_store_cannot_keep_is_refused_and_none_of_its_batch_written(
    store: Store,
) -> None:
    created = await store.conversations.create(subject="u1", agent="helper", title="q")
    wrong_role = NewMessage("system", {"text": "x"})  # type: ignore[arg-type]  # the bug tested

    with pytest.raises(ValueError, match="message 1: role"):
        await store.conversations.append(created.id, [said("ok"), wrong_role])
    with pytest.raises(ValueError, match=r"message 1 \(user\): content is not JSON"):
        await store.conversations.append(created.id, [said("ok"), NewMessage("user", {"at": T0})])
    with pytest.raises(ValueError, match="not JSON"):
        await store.conversations.append(created.id, [NewMessage("user", {"x": float("nan")})])

    assert await store.conversations.messages(created.id) == []
    assert await store.conversations.get(created.id) == created


async def test_an_unreadable_stored_content_does_not_hide_the_other_messages(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    created = await store.conversations.create(subject="u1", agent="helper", title="q")
    await store.conversations.append(created.id, [said("a"), said("b"), said("c"), said("d")])
    async with store.engine.begin() as conn:
        for seq, damaged in [(2, '{"text": "b'), (3, '["not", "an", "object"]')]:
            await conn.execute(
                update(ai_messages)
                .where(ai_messages.c.conversation_id == created.id, ai_messages.c.seq == seq)
                .values(content=damaged)
            )

    with caplog.at_level(logging.WARNING, logger="atrium.store.conversations"):
        messages = await store.conversations.messages(created.id)

    assert [m.content for m in messages] == [
        {"text": "a"},
        {"error": "unreadable"},
        {"error": "unreadable"},
        {"text": "d"},
    ]
    assert [m.seq for m in messages] == [1, 2, 3, 4]
    assert len(caplog.records) == 2
    assert created.id in caplog.records[0].getMessage()


async def test_list_is_newest_updated_first_and_filters_by_subject_and_agent(
    database_settings: Settings,
) -> None:
    async with await Store.open(database_settings, clock=ticking()) as store:
        made = {
            name: await store.conversations.create(subject=subject, agent=agent, title=name)
            for name, subject, agent in [
                ("a", "u1", "helper"),
                ("b", "u1", "writer"),
                ("c", "u2", "helper"),
                ("d", "operator:ops", "helper"),
            ]
        }
        await store.conversations.append(made["a"].id, [said("back again")])
        listed = store.conversations.list

        everything = [c.title for c in await listed()]
        of_u1 = [c.title for c in await listed(subject="u1")]
        helpers = [c.title for c in await listed(agent="helper")]
        u1_helpers = [(c.title, c.messages) for c in await listed(subject="u1", agent="helper")]
        newest_two = [c.title for c in await listed(limit=2)]
        nobody = await listed(subject="u3")

    assert everything == ["a", "d", "c", "b"]
    assert of_u1 == ["a", "b"]
    assert helpers == ["a", "d", "c"]
    assert u1_helpers == [("a", 1)]
    assert newest_two == ["a", "d"]
    assert nobody == []


async def test_list_refuses_a_limit_below_one(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.conversations.list(limit=0)


async def test_delete_removes_the_conversation_and_only_its_messages(store: Store) -> None:
    gone = await store.conversations.create(subject="u1", agent="helper", title="gone")
    kept = await store.conversations.create(subject="u1", agent="helper", title="kept")
    await store.conversations.append(gone.id, [said("1"), answered("2")])
    await store.conversations.append(kept.id, [said("3")])

    deleted = await store.conversations.delete(gone.id)
    deleted_again = await store.conversations.delete(gone.id)

    assert (deleted, deleted_again) == (True, False)
    assert await store.conversations.get(gone.id) is None
    assert await store.conversations.messages(gone.id) == []
    assert [m.content for m in await store.conversations.messages(kept.id)] == [{"text": "3"}]
    async with store.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(ai_messages)) == 1


async def test_delete_removes_the_messages_on_sqlite_without_foreign_keys(tmp_path: Path) -> None:
    settings = load_settings(project_dir=tmp_path, environ={})
    async with await Store.open(settings) as migrated:
        created = await migrated.conversations.create(subject="u1", agent="h", title="q")
        await migrated.conversations.append(created.id, [said("1"), said("2")])
    # An engine without Atrium's hooks, as another tool would open the file: SQLite leaves
    # foreign keys unenforced, so no ON DELETE CASCADE happens.
    async with Store(create_async_engine(settings.database_url)) as plain:
        async with plain.engine.connect() as conn:
            assert await conn.scalar(text("PRAGMA foreign_keys")) == 0

        assert await plain.conversations.delete(created.id) is True

        async with plain.engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(ai_messages)) == 0


async def test_an_append_racing_a_delete_leaves_nothing_behind(store: Store) -> None:
    created = await store.conversations.create(subject="u1", agent="helper", title="q")
    await store.conversations.append(created.id, [said("1")])

    outcomes = await asyncio.gather(
        store.conversations.append(created.id, [said("2")]),
        store.conversations.delete(created.id),
        return_exceptions=True,
    )

    assert outcomes[1] is True
    assert outcomes[0] is None or isinstance(outcomes[0], UnknownConversation)
    assert await store.conversations.get(created.id) is None
    async with store.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(ai_messages)) == 0


async def test_unknown_ids_read_as_nothing(store: Store) -> None:
    await store.conversations.create(subject="u1", agent="helper", title="q")

    assert await store.conversations.get("f" * 32) is None
    assert await store.conversations.get("not even hex") is None
    assert await store.conversations.messages("f" * 32) == []
    assert await store.conversations.delete("f" * 32) is False


def differences(connection: Connection) -> list[Any]:
    # The full-text index is one dialect's each, outside ``metadata`` (migration 0010).
    context = MigrationContext.configure(connection, opts={"include_name": include_name})
    found: list[Any] = compare_metadata(context, metadata)
    return found


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_the_conversations_revision_goes_down_and_up_cleanly(store: Store) -> None:
    created = await store.conversations.create(subject="u1", agent="helper", title="q")
    await store.conversations.append(created.id, [said("1")])
    ours = {"ai_conversations", "ai_messages"}
    async with store.engine.begin() as conn:
        before = await conn.run_sync(table_names)
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0006"))
        after_downgrade = await conn.run_sync(table_names)
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
        after_upgrade = await conn.run_sync(differences)

    assert ours <= before
    assert not ours & after_downgrade  # later revisions go down too: only ours are checked
    assert {"mcp_servers", "artifacts", "users"} <= after_downgrade
    assert after_upgrade == []
    assert await store.conversations.list() == []
