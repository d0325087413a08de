"""The ``atrium`` server's agent tools, in-process over real HTTP with the official SDK client:
callers vouched for as the gateway would, a real SQLite store, a model fake on loopback, and a
real stdio server (``mcp-server-time``) from an ``.mcp.json``, so no gateway is needed. The
depth limit's whole chain, agents calling agents through the gateway, is end to end
(``tests/e2e/test_run_agent.py``)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from atrium.ai.service import DEPTH_META, MAX_AGENT_DEPTH
from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier
from atrium.servers.atrium.server import create_server
from atrium.settings import Settings, load_settings
from atrium.store import Store
from tests.ai.project import KEY_VARIABLE, write_agent, write_ai_config
from tests.ai.providers_fake import AnthropicFake, Failure, text, tool_call
from tests.servers.helpers import serving
from tests.trust import vouched_client

TIME_SERVER = Path(sys.executable).parent / "mcp-server-time"
NOW = "mcp__time__get_current_time"
ADMIN = frozenset({"admin"})
RESULT_FIELDS = {
    "conversation_id",
    "text",
    "reason",
    "tool_calls",
    "input_tokens",
    "output_tokens",
}


def with_key(project: Settings) -> Settings:
    """The project's settings with the model key the AI config names set, as the server's
    environment would hold it."""
    return load_settings(project.project_dir, {**project.environ, KEY_VARIABLE: "test-key"})


def with_time_server(settings: Settings, fake: AnthropicFake) -> None:
    """The AI config with only the stdio time server (no registry discovery)."""
    document = {"mcpServers": {"time": {"command": str(TIME_SERVER)}}}
    path = settings.project_dir / "tools/.mcp.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    write_ai_config(
        settings.project_dir, fake, auto_discover=False, mcp_configs=["tools/.mcp.json"]
    )


@asynccontextmanager
async def connected(
    settings: Settings, *, subject: str | None = "ada", scopes: frozenset[str] = ADMIN
) -> AsyncIterator[Client]:
    """A client of the atrium server, each request vouched for as ``subject``."""
    verifier = AssertionVerifier.load(settings.state_dir / PUBLIC_FILE, "atrium")
    async with (
        serving(create_server(settings), verifier) as url,
        vouched_client(
            f"{url}/mcp", settings.state_dir, "atrium", subject=subject, scopes=scopes
        ) as client,
    ):
        yield client


async def run_agent(
    settings: Settings,
    arguments: dict[str, Any],
    *,
    subject: str | None = "ada",
    meta: dict[str, Any] | None = None,
) -> CallToolResult:
    async with connected(settings, subject=subject) as client:
        return await client.call_tool("run_agent", arguments, meta=meta)  # type: ignore[arg-type]


def said(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


async def test_the_agent_tools_are_listed_with_annotations_and_output_schemas(
    project: Settings,
) -> None:
    async with connected(project) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    run, listing = tools["run_agent"], tools["list_agents"]
    assert run.annotations is not None
    assert listing.annotations is not None
    assert (run.annotations.read_only_hint, run.annotations.idempotent_hint) == (False, False)
    assert listing.annotations.read_only_hint is True
    assert set(run.input_schema["properties"]) == {"agent", "message", "conversation_id"}
    assert sorted(run.input_schema["required"]) == ["agent", "message"]
    assert set((run.output_schema or {})["properties"]) == RESULT_FIELDS


async def test_list_agents_lists_each_agent_and_names_a_broken_file(project: Settings) -> None:
    write_agent(project.project_dir, "helper")
    write_agent(project.project_dir, "triage", model="fake:big-model")
    broken = project.project_dir / "services/agents/broken.md"
    broken.write_text("no frontmatter here\n")

    async with connected(project, scopes=frozenset({"tools:read"})) as client:
        result = await client.call_tool("list_agents", {})

    listing = result.structured_content
    assert listing is not None
    agents = {agent["name"]: agent for agent in listing["agents"]}
    assert sorted(agents) == ["assistant", "helper", "triage"]  # ``assistant``: atrium init's
    assert agents["helper"] == {
        "name": "helper",
        "description": "The helper agent",
        "model": "inherit",
    }
    assert agents["triage"]["model"] == "fake:big-model"
    assert len(listing["problems"]) == 1
    assert "broken.md" in listing["problems"][0]


async def test_an_agent_without_tools_answers_as_its_caller(project: Settings) -> None:
    settings = with_key(project)
    write_agent(settings.project_dir, "helper")
    with AnthropicFake([text("All servers are up.")]) as fake:
        write_ai_config(settings.project_dir, fake, auto_discover=False)
        result = await run_agent(settings, {"agent": "helper", "message": "How are we doing?"})

    assert not result.is_error, said(result)
    run = result.structured_content
    assert run is not None
    assert set(run) == RESULT_FIELDS
    assert (run["text"], run["reason"], run["tool_calls"]) == (
        "All servers are up.",
        "answered",
        [],
    )
    assert (run["input_tokens"], run["output_tokens"]) == (21, 9)
    assert said(result) == "All servers are up."
    [request] = fake.requests
    assert request.body["messages"][-1]["content"][0]["text"] == "How are we doing?"
    async with await Store.open(settings) as store:
        [conversation] = await store.conversations.list(subject="ada")
    assert (conversation.id, conversation.agent) == (run["conversation_id"], "helper")


async def test_an_agent_calls_a_stdio_tool_and_the_client_hears_of_each_call(
    project: Settings,
) -> None:
    settings = with_key(project)
    write_agent(settings.project_dir, "clock", allowed_tools=[NOW])
    heard_of: list[tuple[float, str | None]] = []

    async def heard(progress: float, total: float | None, message: str | None) -> None:
        heard_of.append((progress, message))

    script = [tool_call(NOW, {"timezone": "Etc/UTC"}), text("It is late in Greenwich.")]
    with AnthropicFake(script) as fake:
        with_time_server(settings, fake)
        async with connected(settings) as client:
            result = await client.call_tool(
                "run_agent", {"agent": "clock", "message": "What time is it?"},
                progress_callback=heard,
            )  # fmt: skip

    assert not result.is_error, said(result)
    run = result.structured_content
    assert run is not None
    [call] = run["tool_calls"]
    assert (call["name"], call["ok"], call["error"]) == (NOW, True, None)
    assert run["text"] == "It is late in Greenwich."
    assert [done for done, _ in heard_of] == [1]
    tool_results = [
        block
        for message in fake.requests[1].body["messages"]
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    [answered] = tool_results
    assert json.loads(answered["content"])["timezone"] == "Etc/UTC"


async def test_a_run_continues_its_callers_conversation_and_no_one_elses(
    project: Settings,
) -> None:
    settings = with_key(project)
    write_agent(settings.project_dir, "helper")
    with AnthropicFake([text("First."), text("Second.")]) as fake:
        write_ai_config(settings.project_dir, fake, auto_discover=False)
        first = await run_agent(settings, {"agent": "helper", "message": "One"})
        conversation = (first.structured_content or {})["conversation_id"]
        again = {"agent": "helper", "message": "Two", "conversation_id": conversation}
        second = await run_agent(settings, again)
        stolen = await run_agent(settings, again, subject="bob")

    assert not second.is_error, said(second)
    assert (second.structured_content or {})["conversation_id"] == conversation
    sent = fake.requests[1].body["messages"]
    assert [message["role"] for message in sent] == ["user", "assistant", "user"]
    assert stolen.is_error
    assert stolen.structured_content is None
    assert len(fake.requests) == 2  # bob's call never reached the model


async def test_an_unknown_agent_is_a_tool_error_naming_the_known_ones(project: Settings) -> None:
    settings = with_key(project)
    write_agent(settings.project_dir, "helper")
    with AnthropicFake([]) as fake:
        write_ai_config(settings.project_dir, fake, auto_discover=False)
        result = await run_agent(settings, {"agent": "nobody", "message": "Hello"})

    assert result.is_error
    assert "helper" in said(result)
    assert fake.requests == []


async def test_an_anonymous_caller_cannot_run_an_agent(project: Settings) -> None:
    settings = with_key(project)
    write_agent(settings.project_dir, "helper")
    with AnthropicFake([text("never sent")]) as fake:
        write_ai_config(settings.project_dir, fake, auto_discover=False)
        result = await run_agent(settings, {"agent": "helper", "message": "Hi"}, subject=None)

    assert result.is_error
    assert fake.requests == []
    async with await Store.open(settings) as store:
        assert await store.conversations.list() == []


@pytest.mark.parametrize("depth", ["1", -1, True, 1.5, {"depth": 1}])
async def test_a_depth_that_is_not_a_non_negative_integer_is_refused(
    project: Settings, depth: Any
) -> None:
    settings = with_key(project)
    write_agent(settings.project_dir, "helper")
    with AnthropicFake([text("never sent")]) as fake:
        write_ai_config(settings.project_dir, fake, auto_discover=False)
        result = await run_agent(
            settings, {"agent": "helper", "message": "Hi"}, meta={DEPTH_META: depth}
        )

    assert result.is_error
    assert DEPTH_META in said(result)
    assert fake.requests == []


async def test_a_run_at_the_depth_limit_is_refused_and_one_below_it_runs(
    project: Settings,
) -> None:
    settings = with_key(project)
    write_agent(settings.project_dir, "helper")
    with AnthropicFake([text("One level left.")]) as fake:
        write_ai_config(settings.project_dir, fake, auto_discover=False)
        deepest = await run_agent(
            settings, {"agent": "helper", "message": "Hi"}, meta={DEPTH_META: MAX_AGENT_DEPTH - 1}
        )
        refused = await run_agent(
            settings, {"agent": "helper", "message": "Hi"}, meta={DEPTH_META: MAX_AGENT_DEPTH}
        )

    assert not deepest.is_error, said(deepest)
    assert refused.is_error
    assert refused.structured_content is None
    assert len(fake.requests) == 1


async def test_a_model_api_that_fails_mid_run_is_a_tool_error_naming_the_conversation(
    project: Settings,
) -> None:
    settings = with_key(project)
    write_agent(settings.project_dir, "helper")
    with AnthropicFake([Failure(400, None, "this request is malformed")]) as fake:
        write_ai_config(settings.project_dir, fake, auto_discover=False)
        result = await run_agent(settings, {"agent": "helper", "message": "Hi"})

    assert result.is_error
    async with await Store.open(settings) as store:
        [conversation] = await store.conversations.list(subject="ada")
    assert conversation.id in said(result)


async def test_a_missing_model_key_says_where_the_server_reads_it(project: Settings) -> None:
    write_agent(project.project_dir, "helper")  # ``project`` has no ATRIUM_TEST_MODEL_KEY
    with AnthropicFake([text("never sent")]) as fake:
        write_ai_config(project.project_dir, fake, auto_discover=False)
        result = await run_agent(project, {"agent": "helper", "message": "Hi"})

    assert result.is_error
    assert KEY_VARIABLE in said(result)
    assert "services/mcp/atrium.yaml" in said(result)
    assert fake.requests == []
