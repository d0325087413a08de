"""The AI service from an agent's name and a message to its events: real provider adapters
against their fakes, the npm everything server as tools, a real store. What a user must fix
raises from ``start`` before any event; the model API failing ends the run with ``failed``;
a conversation continues by its id, its owner's only."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from atrium.ai.discovery import RunAs
from atrium.ai.providers.messages import AssistantMessage
from atrium.ai.run_events import (
    RunFailed,
    RunFinished,
    RunStarted,
    TextChunk,
    ToolFinished,
    ToolStarted,
    TurnUsage,
    as_json,
)
from atrium.ai.service import MAX_MESSAGE_CHARS, ConversationNotFound
from atrium.ai.transcript import from_stored
from atrium.auth.revocation_list import revoke_subject
from atrium.client.mcpjson import HttpTarget, ServerSpec
from atrium.errors import (
    EXIT_CONFIG,
    EXIT_NOT_FOUND,
    AtriumError,
    ConfigError,
    NotFoundError,
    UsageError,
)
from atrium.settings import Settings, load_settings
from atrium.store import UserRecord
from tests.ai.conftest import (
    ALICE,
    ECHO,
    ai_project,
    conversation_of,
    of_type,
    refused,
    request_text,
    run,
    service_of,
)
from tests.ai.project import write_agent
from tests.ai.providers_fake import (
    AnthropicFake,
    Call,
    GeminiFake,
    OpenAIChatFake,
    OpenAIResponsesFake,
    ProviderFake,
    Reply,
    ScriptItem,
    Usage,
    rate_limited,
    server_error,
    text,
    tool_call,
    tool_calls,
)

FAKES: dict[str, Callable[[list[Any]], ProviderFake]] = {
    "anthropic": AnthropicFake,
    "openai": OpenAIResponsesFake,
    "openai-chat": OpenAIChatFake,
    "gemini": GeminiFake,
}
EVERY_PROVIDER = pytest.mark.parametrize("kind", list(FAKES))


@EVERY_PROVIDER
async def test_every_provider_answers_calls_a_tool_and_calls_two_at_once(
    kind: str, tmp_path: Path
) -> None:
    script = [
        text("Hello there"),
        tool_call(ECHO, {"message": "ping"}),
        text("pong"),
        tool_calls((ECHO, {"message": "left"}), (ECHO, {"message": "right"})),
        text("both"),
    ]
    with FAKES[kind](script) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            plain = await run(service, "Hi")
            one = await run(service, "Echo ping")
            two = await run(service, "Echo two words")

    finished = [of_type(events, RunFinished)[0] for events in (plain, one, two)]
    assert [(f.reason, f.rounds, f.tool_calls) for f in finished] == [
        ("answered", 1, 0),
        ("answered", 2, 1),
        ("answered", 2, 2),
    ]
    assert [f.text for f in finished] == ["Hello there", "pong", "both"]
    assert [e.ok for e in of_type(one + two, ToolFinished)] == [True, True, True]
    assert "Echo: ping" in request_text(fake.requests[2].body)
    assert "Echo: left" in request_text(fake.requests[4].body)
    assert "Echo: right" in request_text(fake.requests[4].body)
    assert fake.remaining == 0


def _kinds(events: list[Any]) -> list[str]:
    """The event types in order, a run of text pieces as one."""
    kinds: list[str] = []
    for event in events:
        if not (kinds and kinds[-1] == "text" == event.type):
            kinds.append(event.type)
    return kinds


async def test_a_two_round_run_tells_each_step_and_stores_each_message(tmp_path: Path) -> None:
    asking = Reply("Let me echo.", (Call(ECHO, '{"message": "hello"}'),), Usage(100, 20))
    script = [asking, text("It said hello.", usage=Usage(150, 30))]
    with AnthropicFake(script) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            events = await run(service, "Echo hello")
            stored = await service.store.conversations.messages(conversation_of(events))

    assert _kinds(events) == [
        "started", "text", "usage", "tool_started", "tool_finished", "text", "usage", "finished",
    ]  # fmt: skip
    assert all(next(iter(as_json(event))) == "type" for event in events)
    started, begun, ended = (
        events[0],
        of_type(events, ToolStarted)[0],
        of_type(events, ToolFinished)[0],
    )
    assert isinstance(started, RunStarted)
    assert ECHO in started.tools
    assert started.servers == {"everything": None}
    assert (begun.name, begun.arguments, begun.round) == (ECHO, {"message": "hello"}, 1)
    assert (ended.call_id, ended.ok, ended.error, ended.round) == (begun.call_id, True, None, 1)
    assert ended.duration_ms > 0
    assert "".join(e.text for e in of_type(events, TextChunk)) == "Let me echo.It said hello."
    usage = [(u.round, u.input_tokens, u.output_tokens) for u in of_type(events, TurnUsage)]
    assert usage == [(1, 100, 20), (2, 150, 30)]
    assert events[-1] == RunFinished(
        started.conversation_id, "answered", "It said hello.", 2, 1, 250, 50
    )

    second = fake.requests[1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"][1] == {
        "type": "tool_use", "id": begun.call_id, "name": ECHO, "input": {"message": "hello"},
    }  # fmt: skip
    assert second[2]["content"] == [
        {"type": "tool_result", "tool_use_id": begun.call_id, "content": "Echo: hello",
         "is_error": False},
    ]  # fmt: skip

    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert [(m.input_tokens, m.output_tokens) for m in stored] == [
        (None, None), (100, 20), (None, None), (150, 30),
    ]  # fmt: skip
    assert stored[1].content["tool_calls"][0]["id"] == begun.call_id
    assert stored[2].content == {
        "call_id": begun.call_id, "name": ECHO, "content": "Echo: hello", "is_error": False,
    }  # fmt: skip


async def test_a_server_that_cannot_start_is_told_and_the_run_goes_on(tmp_path: Path) -> None:
    with AnthropicFake([text("Still here")]) as fake:
        settings = ai_project(tmp_path, fake)
        document = json.loads((tmp_path / ".mcp.json").read_text())
        document["mcpServers"]["broken"] = {"command": str(tmp_path / "no-such-program")}
        (tmp_path / ".mcp.json").write_text(json.dumps(document))
        async with service_of(settings) as service:
            events = await run(service, "Hi")

    started = events[0]
    assert isinstance(started, RunStarted)
    assert started.servers["everything"] is None
    assert started.servers["broken"]
    assert ECHO in started.tools
    assert of_type(events, RunFinished)[0].text == "Still here"


async def test_a_conversation_continues_by_its_id_with_its_history_resent(tmp_path: Path) -> None:
    with OpenAIChatFake([text("Noted: 42."), text("It was 42.")]) as fake:
        settings = ai_project(tmp_path, fake, tools=False)
        async with service_of(settings) as service:
            first = await run(service, "Remember 42")
            conversation = conversation_of(first)
            second = await run(service, "What was it?", conversation_id=conversation)
            record = await service.conversation(conversation, ALICE)

    assert conversation_of(second) == conversation
    sent = [(m["role"], m["content"]) for m in fake.requests[1].body["messages"]]
    assert sent[1:] == [
        ("user", "Remember 42"), ("assistant", "Noted: 42."), ("user", "What was it?"),
    ]  # fmt: skip
    assert (record.subject, record.agent, record.messages) == ("alice", "helper", 4)


async def test_someone_elses_conversation_is_not_found_and_another_agents_is_refused(
    tmp_path: Path,
) -> None:
    with OpenAIChatFake([text("Mine.")]) as fake:
        settings = ai_project(tmp_path, fake, tools=False)
        write_agent(tmp_path, "other")
        async with service_of(settings) as service:
            conversation = conversation_of(await run(service, "Secret"))
            mallory = RunAs("mallory", frozenset({"admin"}))
            with pytest.raises(ConversationNotFound) as not_yours:
                await refused(service, "Show me", run_as=mallory, conversation_id=conversation)
            with pytest.raises(UsageError) as other_agent:
                await refused(service, "Go on", agent="other", conversation_id=conversation)
            with pytest.raises(ConversationNotFound):
                await refused(service, "Go on", conversation_id="0" * 32)
            stored = await service.store.conversations.messages(conversation)

    assert not_yours.value.exit_code == EXIT_NOT_FOUND
    assert other_agent.value.exit_code == EXIT_CONFIG
    assert len(fake.requests) == 1
    assert [m.role for m in stored] == ["user", "assistant"]


@dataclass(frozen=True)
class Broken:
    """A setup a user must fix, and what ``start`` raises for it."""

    name: str
    error: type[AtriumError]
    message: str = "Hi"
    agent: str = "helper"
    run_as: RunAs = ALICE
    agent_file: str | None = None  # the agent ``agent``'s whole file
    config: Callable[[dict[str, Any]], None] | None = None  # changes to services/ai/config.yaml
    key: bool = True
    where: tuple[str, int | None] | None = None  # the problem's file and line (None: any)


BROKEN = [
    Broken("unknown agent", NotFoundError, agent="nobody"),
    Broken("agent with a bad key", ConfigError, agent="typo",
           agent_file="---\nname: typo\ndescription: x\nmodel: inherit\ncolour: blue\n---\nHi\n",
           where=("services/agents/typo.md", 5)),
    Broken("unknown provider in the model", ConfigError, agent="nope",
           agent_file="---\nname: nope\nmodel: nope:x\n---\nHi\n",
           where=("services/agents/nope.md", 3)),
    Broken("unset key variable", ConfigError, key=False),
    Broken("unknown provider type", ConfigError,
           config=lambda ai: ai["providers"]["fake"].update(type="cohere"),
           where=("services/ai/config.yaml", None)),
    Broken("empty message", UsageError, message=" \n\t "),
    Broken("message too long", UsageError, message="x" * (MAX_MESSAGE_CHARS + 1)),
    Broken("agents too deep", UsageError, run_as=RunAs("alice", frozenset(), depth=3)),
]  # fmt: skip


@pytest.mark.parametrize("broken", BROKEN, ids=[b.name for b in BROKEN])
async def test_what_a_user_must_fix_raises_from_start_before_any_event(
    broken: Broken, tmp_path: Path
) -> None:
    with OpenAIChatFake([text("never")]) as fake:
        settings = ai_project(tmp_path, fake, tools=False)
        if broken.agent_file is not None:
            (tmp_path / f"services/agents/{broken.agent}.md").write_text(broken.agent_file)
        if broken.config is not None:
            path = tmp_path / "services/ai/config.yaml"
            document = json.loads(path.read_text())
            broken.config(document["ai"])
            path.write_text(json.dumps(document, indent=2))
        if not broken.key:
            settings = load_settings(tmp_path, environ={})
        async with service_of(settings) as service:
            with pytest.raises(broken.error) as raised:
                await refused(service, broken.message, agent=broken.agent, run_as=broken.run_as)
            conversations = await service.store.conversations.list()

    assert raised.value.exit_code == broken.error.exit_code
    if broken.where is not None:
        assert isinstance(raised.value, ConfigError)
        problem = raised.value.problems[0]
        assert problem.source == broken.where[0]
        assert problem.line == (broken.where[1] or problem.line)
        assert problem.line is not None
    if not broken.key:
        assert isinstance(raised.value, ConfigError)
        assert raised.value.problems[0].key_path == "ai.providers.fake.api_key"
    assert fake.requests == []
    assert conversations == []


async def test_a_message_at_the_limit_and_a_run_two_levels_deep_are_taken(tmp_path: Path) -> None:
    with OpenAIChatFake([text("Long."), text("Deep.")]) as fake:
        async with service_of(ai_project(tmp_path, fake, tools=False)) as service:
            await run(service, "x" * MAX_MESSAGE_CHARS)
            await run(service, "Hi", run_as=RunAs("alice", frozenset(), depth=2))

    assert [len(r.body["messages"][-1]["content"]) for r in fake.requests] == [MAX_MESSAGE_CHARS, 2]


@EVERY_PROVIDER
async def test_a_429_with_retry_after_is_waited_out_within_one_run(
    kind: str, tmp_path: Path
) -> None:
    with FAKES[kind]([rate_limited("0.05"), text("After the wait")]) as fake:
        async with service_of(ai_project(tmp_path, fake, tools=False)) as service:
            events = await run(service, "Hi")

    assert of_type(events, RunFailed) == []
    assert of_type(events, RunFinished)[0].text == "After the wait"
    assert len(fake.requests) == 2


@EVERY_PROVIDER
async def test_a_model_api_failing_past_its_retries_ends_the_run_with_failed(
    kind: str, tmp_path: Path
) -> None:
    with FAKES[kind]([server_error()] * 3) as fake:
        async with service_of(ai_project(tmp_path, fake, tools=False)) as service:
            events = await run(service, "Hi")
            stored = await service.store.conversations.messages(conversation_of(events))

    assert [event.type for event in events] == ["started", "failed"]
    failed = events[-1]
    assert isinstance(failed, RunFailed)
    assert (failed.kind, failed.conversation_id) == ("provider", conversation_of(events))
    assert "500" in failed.error
    assert len(fake.requests) == 3
    assert [(m.role, m.content) for m in stored] == [("user", {"text": "Hi"})]


async def test_a_run_that_fails_after_a_tool_round_keeps_it_and_continues(tmp_path: Path) -> None:
    script: list[ScriptItem] = [tool_call(ECHO, {"message": "kept"}), *[server_error()] * 3]
    script.append(text("Back."))
    with AnthropicFake(script) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            failed = await run(service, "Echo kept")
            conversation = conversation_of(failed)
            again = await run(service, "Try again", conversation_id=conversation)

    assert failed[-1].type == "failed"
    assert again[-1].type == "finished"
    roles = [
        (m["role"], [b["type"] for b in m["content"]]) for m in fake.requests[-1].body["messages"]
    ]
    assert roles == [
        ("user", ["text"]), ("assistant", ["tool_use"]), ("user", ["tool_result", "text"]),
    ]  # fmt: skip
    assert "Echo: kept" in request_text(fake.requests[-1].body)


@pytest.mark.parametrize(
    "database_settings", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_conversation_round_trips_through_postgresql(
    database_settings: Settings, tmp_path: Path
) -> None:
    script = [tool_call(ECHO, {"message": "naïve ☕ 日本"}), text("Done ✓"), text("Again ✓")]
    with AnthropicFake(script) as fake:
        settings = ai_project(tmp_path, fake, environ=dict(database_settings.environ))
        async with service_of(settings) as service:
            first = await run(service, "Echo naïve ☕ 日本")
            conversation = conversation_of(first)
            await run(service, "Once more", conversation_id=conversation)
            stored = await service.store.conversations.messages(conversation)

    assert [m.role for m in stored] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]
    assert stored[2].content["content"] == "Echo: naïve ☕ 日本"
    assert from_stored(stored)[-1] == AssistantMessage("Again ✓")
    resent = fake.requests[-1].body["messages"]
    assert len(resent) == 5  # the tool result and the new message share one user turn
    assert "Echo: naïve ☕ 日本" in request_text(resent)


@pytest.mark.parametrize("message", ["nul \x00 inside", "lone \udcff surrogate"])
async def test_a_message_no_store_can_hold_is_refused_before_any_event(
    database_settings: Settings, tmp_path: Path, message: str
) -> None:
    # A NUL is refused by PostgreSQL's text columns; a lone surrogate (a non-UTF-8 byte in
    # argv, a "\udcff" escape in a JSON body) by every UTF-8 encoder. Refused on both stores.
    with OpenAIChatFake([text("never")]) as fake:
        environ = dict(database_settings.environ)
        settings = ai_project(tmp_path, fake, tools=False, environ=environ)
        async with service_of(settings) as service:
            with pytest.raises(UsageError):
                await refused(service, message)
            assert await service.store.conversations.list() == []
    assert fake.requests == []


@pytest.mark.parametrize("change", ["revoked", "disabled", "unchanged"])
async def test_a_run_mints_no_new_tokens_for_a_user_revoked_or_disabled_since(
    change: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OpenAIChatFake([]) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            user = UserRecord(id="u-1", username="carol", password_hash="x", role="user")
            await service.store.users.add(user)
            run_as = RunAs(subject="u-1", scopes=frozenset({"user"}), since=time.time() - 5)
            spec = ServerSpec("open", HttpTarget("http://127.0.0.1:9/mcp"), registry=True)
            auth = service.auth_for(run_as)(spec)
            assert auth is not None
            request = httpx2.Request("POST", "http://127.0.0.1:9/mcp")
            await anext(auth.async_auth_flow(request))  # the run's first token
            if change == "revoked":
                await revoke_subject(service.store, "u-1", revoke_refresh=False)
            elif change == "disabled":
                await service.store.users.set_disabled("carol", True)
            later = time.time() + 3600
            monkeypatch.setattr(time, "time", lambda: later)
            renewed = anext(auth.async_auth_flow(request))
            if change == "unchanged":
                assert (await renewed).headers["Authorization"].startswith("Bearer ")
            else:
                with pytest.raises(AtriumError, match="may no longer call tools"):
                    await renewed
