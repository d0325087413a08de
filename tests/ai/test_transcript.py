"""A conversation's messages through the real store and back: every kind of message round
trips; reading back answers the calls a stopped run left open, drops results of no call, and
skips what cannot be read, so a provider always gets a history it accepts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from atrium.ai.providers.events import ToolCall
from atrium.ai.providers.messages import AssistantMessage, Message, ToolResult, UserMessage
from atrium.ai.transcript import STOPPED, as_json, from_stored, to_stored
from atrium.settings import load_settings
from atrium.store import Store
from atrium.store.conversations import MessageRecord
from atrium.store.tables import ai_messages

CALL = ToolCall("toolu_01a", "mcp__files__read", '{"path": "a.txt"}')
OTHER = ToolCall("toolu_01b", "mcp__files__list", "{}")
SIGNED = ToolCall("atrium_call_1f", "mcp__files__read", '{"path": "b"}', signature="c2lnbg==")
CONVERSATION: list[Message] = [
    UserMessage("Read a.txt ☕ and list"),
    AssistantMessage("Reading.", (CALL, OTHER)),
    ToolResult(CALL.id, CALL.name, "contents of a", is_error=False),
    ToolResult(OTHER.id, OTHER.name, "the server answered with an error", is_error=True),
    AssistantMessage("", (SIGNED, ToolCall("call_x", "mcp__t__t", '{"broken'))),
    ToolResult(SIGNED.id, SIGNED.name, "b"),
    ToolResult("call_x", "mcp__t__t", "the arguments are not valid JSON", is_error=True),
    AssistantMessage("a.txt says: contents of a"),
]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(load_settings(tmp_path, environ={})) as store:
        yield store


async def stored(store: Store, messages: list[Message]) -> tuple[str, list[MessageRecord]]:
    record = await store.conversations.create(subject="alice", agent="helper", title="t")
    await store.conversations.append(record.id, [to_stored(m) for m in messages])
    return record.id, await store.conversations.messages(record.id)


def records(*contents: tuple[str, dict[str, Any]]) -> list[MessageRecord]:
    """Stored messages as the store gives them back, for shapes it would never write."""
    now = datetime(2026, 12, 3, tzinfo=UTC)
    return [
        MessageRecord(seq, role, content, None, None, now)
        for seq, (role, content) in enumerate(contents, 1)
    ]


async def test_every_kind_of_message_round_trips_through_the_store(sqlite_store: Store) -> None:
    _, rows = await stored(sqlite_store, CONVERSATION)

    assert from_stored(rows) == CONVERSATION
    roles = ["user", "assistant", "tool", "tool", "assistant", "tool", "tool", "assistant"]
    assert [row.role for row in rows] == roles


async def test_the_usage_of_an_assistant_turn_is_kept_with_it(sqlite_store: Store) -> None:
    record = await sqlite_store.conversations.create(subject="a", agent="helper", title="t")
    turn = to_stored(AssistantMessage("Hi"), input_tokens=120, output_tokens=7)
    await sqlite_store.conversations.append(record.id, [to_stored(UserMessage("Hi")), turn])

    rows = await sqlite_store.conversations.messages(record.id)

    assert [(r.input_tokens, r.output_tokens) for r in rows] == [(None, None), (120, 7)]


def test_a_message_as_json_names_its_role_first() -> None:
    shown = [as_json(message) for message in CONVERSATION[:3]]

    assert [next(iter(item)) for item in shown] == ["role", "role", "role"]
    assert shown[0] == {"role": "user", "text": "Read a.txt ☕ and list"}
    assert shown[1]["tool_calls"][0] == {
        "id": CALL.id, "name": CALL.name, "arguments": CALL.arguments_json, "signature": None,
    }  # fmt: skip
    assert shown[2] == {
        "role": "tool", "call_id": CALL.id, "name": CALL.name, "content": "contents of a",
        "is_error": False,
    }  # fmt: skip


async def test_calls_a_stopped_run_left_open_are_answered_before_the_next_message(
    sqlite_store: Store,
) -> None:
    _, rows = await stored(
        sqlite_store,
        [
            UserMessage("Read both"),
            AssistantMessage("", (CALL, OTHER)),
            ToolResult(CALL.id, CALL.name, "contents of a"),
            UserMessage("Are you there?"),
            AssistantMessage("", (SIGNED,)),
        ],
    )

    history = from_stored(rows)

    assert history[2:] == [
        ToolResult(CALL.id, CALL.name, "contents of a"),
        ToolResult(OTHER.id, OTHER.name, STOPPED, is_error=True),
        UserMessage("Are you there?"),
        AssistantMessage("", (SIGNED,)),
        ToolResult(SIGNED.id, SIGNED.name, STOPPED, is_error=True),
    ]


def test_results_of_no_open_call_are_dropped() -> None:
    call = {"id": CALL.id, "name": CALL.name, "arguments": "{}"}
    result = {"call_id": CALL.id, "name": CALL.name, "content": "a"}
    rows = records(
        ("tool", {**result, "content": "before any call"}),
        ("user", {"text": "Read"}),
        ("assistant", {"text": "", "tool_calls": [call]}),
        ("tool", result),
        ("tool", {**result, "content": "a second answer"}),
        ("tool", {**result, "call_id": "toolu_01zz", "content": "an unknown call"}),
        ("assistant", {"text": "Again", "tool_calls": []}),
        ("tool", {**result, "content": "an answer too late"}),
    )

    assert from_stored(rows) == [
        UserMessage("Read"),
        AssistantMessage("", (ToolCall(CALL.id, CALL.name, "{}"),)),
        ToolResult(CALL.id, CALL.name, "a"),
        AssistantMessage("Again"),
    ]


def test_messages_of_a_shape_no_one_writes_are_skipped() -> None:
    call = {"id": CALL.id, "name": CALL.name, "arguments": "{}"}
    rows = records(
        ("user", {"text": "Read"}),
        ("user", {"txt": "a typo"}),
        ("assistant", {"text": "", "tool_calls": "not a list"}),
        ("assistant", {"text": "", "tool_calls": [call]}),
        ("tool", {"call_id": CALL.id, "content": "no name"}),
        ("system", {"text": "a role of no one"}),
    )

    assert from_stored(rows) == [
        UserMessage("Read"),
        AssistantMessage("", (ToolCall(CALL.id, CALL.name, "{}"),)),
        ToolResult(CALL.id, CALL.name, STOPPED, is_error=True),
    ]


@pytest.mark.parametrize("damaged", ["user", "assistant", "tool"])
async def test_a_row_damaged_in_the_database_is_skipped_and_the_rest_is_read(
    sqlite_store: Store, damaged: str
) -> None:
    conversation: list[Message] = [
        UserMessage("Read a"),
        AssistantMessage("Reading.", (CALL,)),
        ToolResult(CALL.id, CALL.name, "contents of a"),
        AssistantMessage("It says a."),
        UserMessage("Thanks"),
    ]
    conversation_id, _ = await stored(sqlite_store, conversation)
    seq = {"user": 1, "assistant": 2, "tool": 3}[damaged]
    async with sqlite_store.engine.begin() as connection:
        await connection.execute(
            update(ai_messages)
            .where(ai_messages.c.conversation_id == conversation_id, ai_messages.c.seq == seq)
            .values(content="{cut in the middl")
        )

    history = from_stored(await sqlite_store.conversations.messages(conversation_id))

    expected: dict[str, list[Message]] = {
        "user": conversation[1:],
        # Its call unreadable, the call's result answers nothing: both go.
        "assistant": [conversation[0], *conversation[3:]],
        "tool": [
            *conversation[:2],
            ToolResult(CALL.id, CALL.name, STOPPED, is_error=True),
            *conversation[3:],
        ],
    }
    assert history == expected[damaged]
    assert AssistantMessage() not in history  # an empty turn that Chat Completions refuses


def test_secrets_in_a_calls_arguments_are_not_kept() -> None:
    value = "s3cr3t-9f2c41d7"
    calls = (
        ToolCall(
            "c1",
            "mcp__marketplace__manage_secrets",
            json.dumps({"action": "set", "name": "GITHUB_TOKEN", "value": value}),
        ),
        ToolCall("c2", "mcp__shop__order", json.dumps({"item": "tea", "api_key": value})),
        ToolCall("c3", "mcp__shop__order", '{"item": "te'),  # not JSON: reached no tool
    )

    stored = to_stored(AssistantMessage("Setting it.", calls))

    assert value not in json.dumps(stored.content)
    kept = [json.loads(c["arguments"]) for c in stored.content["tool_calls"][:2]]
    assert kept[0] == {"action": "set", "name": "GITHUB_TOKEN", "value": "***"}
    assert kept[1] == {"item": "tea", "api_key": "***"}
    assert stored.content["tool_calls"][2]["arguments"] == '{"item": "te'
