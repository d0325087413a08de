"""Bad inputs to every built-in server's tools and resources (issue 14), the ones the server's
own tests leave out: each is a tool error (or a resource error) that names the argument at
fault, carries no traceback, and changes nothing. Each server is served in-process on loopback
with callers vouched for as the gateway would, on a project made by ``atrium init``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent

from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier
from atrium.servers.atrium.server import create_server as create_atrium
from atrium.servers.content_manager import create_server as create_content_manager
from atrium.servers.marketplace import create_server as create_marketplace
from atrium.servers.soul import create_server as create_soul
from atrium.settings import Settings, load_settings
from atrium.store import Store
from tests.ai.project import KEY_VARIABLE, write_agent, write_ai_config
from tests.ai.providers_fake import AnthropicFake
from tests.servers.helpers import serving
from tests.servers.skills_client import skill_md
from tests.trust import vouched_client

WRITE = frozenset({"user", "tools:read", "tools:write"})
ADMIN = WRITE | {"admin"}
Case = tuple[str, dict[str, Any], str]  # tool, arguments, what the error must name


@asynccontextmanager
async def clients(
    project: Settings, name: str, create: Callable[[Settings], MCPServer[Any]]
) -> AsyncIterator[Callable[..., Any]]:
    """``connect(subject, scopes)``: clients of the server ``name`` of ``project``, served for
    the whole block, each request vouched for as ``subject`` with ``scopes``."""
    verifier = AssertionVerifier.load(project.state_dir / PUBLIC_FILE, name)
    async with serving(create(project), verifier) as url:

        def connect(subject: str | None = "ada", scopes: frozenset[str] = WRITE) -> Any:
            return vouched_client(
                f"{url}/mcp", project.state_dir, name, subject=subject, scopes=scopes
            )

        yield connect


def said(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


def told(result: CallToolResult) -> str:
    """The error without the SDK's "Error executing tool <name>: " and, for arguments that
    failed their schema, without pydantic's "1 validation error for <tool>Arguments" line,
    which names the tool (``run_commandArguments`` holds "command" whatever was wrong)."""
    message = said(result).split(": ", 1)[-1]
    first, _, rest = message.partition("\n")
    return rest if "validation error" in first and first.endswith("Arguments") else message


async def refusals(client: Client, cases: list[Case]) -> list[tuple[Case, CallToolResult]]:
    return [(case, await client.call_tool(case[0], case[1])) for case in cases]


def assert_refused(answered: list[tuple[Case, CallToolResult]]) -> None:
    """Each call is a tool error naming its argument, without a traceback or a result."""
    for (tool, arguments, named), result in answered:
        where = f"{tool}({json.dumps(arguments)[:80]})"
        assert result.is_error, where
        assert result.structured_content is None, where
        assert named in told(result), f"{where}: {said(result)!r} does not name {named!r}"
        assert "Traceback" not in said(result), where
        assert 'File "' not in said(result), where


ATRIUM_CASES: list[Case] = [
    ("atrium", {}, "command"),
    ("atrium", {"command": 42}, "command"),
    ("atrium", {"command": ""}, "command not allowed"),
    ("atrium", {"command": "   "}, "command not allowed"),
    ("atrium", {"command": "plugins mcp list --url=http://127.0.0.1:1"}, "--url"),
    ("show_playbook", {}, "name"),
    ("show_playbook", {"name": "Not_A_Name"}, "name"),
    ("show_playbook", {"name": "x" * 100}, "name"),
    ("run_agent", {"agent": "helper"}, "message"),
    ("run_agent", {"message": "Hello"}, "agent"),
    ("run_agent", {"agent": "../helper", "message": "Hello"}, "helper"),
    ("run_agent", {"agent": "helper", "message": "Hello", "conversation_id": 7}, "conversation_id"),
    ("run_agent", {"agent": "helper", "message": "Hi", "conversation_id": "nope"}, "nope"),
]


async def test_the_atrium_servers_bad_inputs_are_named_and_reach_no_model(
    project: Settings,
) -> None:
    settings = load_settings(project.project_dir, {**project.environ, KEY_VARIABLE: "test-key"})
    write_agent(settings.project_dir, "helper")
    with AnthropicFake([]) as fake:
        write_ai_config(settings.project_dir, fake, auto_discover=False)
        async with (
            clients(settings, "atrium", create_atrium) as connect,
            connect(scopes=ADMIN) as client,
        ):
            answered = await refusals(client, ATRIUM_CASES)
            with pytest.raises(MCPError) as unknown:
                await client.read_resource("playbook://no-such-playbook")
            with pytest.raises(MCPError) as outside:
                await client.read_resource("playbook://..%2F..%2Fatrium")

    assert_refused(answered)
    assert fake.requests == []
    assert "no-such-playbook" in unknown.value.error.message
    assert "Traceback" not in outside.value.error.message
    async with await Store.open(settings) as store:
        assert await store.artifacts.list_recent(limit=10) == []  # no refused command ran


MARKETPLACE_CASES: list[Case] = [
    ("create_skill", {}, "content"),
    ("create_skill", {"content": skill_md(), "files": ["a.md"]}, "files"),
    ("update_skill", {"name": "pdf-tools", "version": 0, "content": skill_md()}, "version"),
    ("update_skill", {"name": "pdf-tools", "version": "one", "content": skill_md()}, "version"),
    ("update_skill", {"name": "no-such-skill", "version": 1, "content": skill_md()}, "name:"),
    ("update_skill", {"name": "x" * 65, "version": 1, "content": skill_md()}, "name"),
    ("update_skill", {"name": "pdf-tools", "version": 1, "content": "no frontmatter"}, "content:"),
    (
        "update_skill",
        {"name": "pdf-tools", "version": 1, "content": skill_md(), "files": {"/etc/x": "x"}},
        "files:",
    ),
    ("get_skill", {}, "name"),
    ("get_skill", {"name": "pdf-tools", "version": 0}, "version"),
    ("get_skill", {"name": "pdf-tools", "owner": "nobody"}, "name:"),
    ("get_skill", {"name": "x" * 65}, "name"),
    ("list_skills", {"limit": 0}, "limit"),
    ("list_skills", {"limit": 101}, "limit"),
    ("list_skills", {"query": "x" * 201}, "query"),
    ("list_skills", {"cursor": "eyJub3QiOiAiYSBjdXJzb3IifQ=="}, "cursor:"),
    ("analyze_skill", {}, "name, content:"),
    ("analyze_skill", {"name": "no-such-skill"}, "name:"),
    ("sync_skills", {}, "direction"),
    ("sync_skills", {"direction": "sideways"}, "direction"),
    ("sync_skills", {"direction": "both", "prune": True}, "prune:"),
    ("get_secrets", {"names": ["A"] * 101}, "names"),
    ("get_secrets", {"scope": "everyone"}, "scope"),
]


async def test_the_marketplaces_bad_inputs_are_named_and_change_nothing(project: Settings) -> None:
    async with (
        clients(project, "marketplace", create_marketplace) as connect,
        connect(scopes=ADMIN) as client,
    ):
        created = await client.call_tool("create_skill", {"content": skill_md()})
        answered = await refusals(client, MARKETPLACE_CASES)
        after = await client.call_tool("get_skill", {"name": "pdf-tools"})

    assert not created.is_error, said(created)
    assert_refused(answered)
    assert (after.structured_content or {})["version"] == 1
    assert not (project.project_dir / "skills").exists()  # no sync ran


CONTENT_CASES: list[Case] = [
    ("create_blog_post", {"title": "T"}, "body"),
    ("create_blog_post", {"body": "x"}, "title"),
    ("create_blog_post", {"title": "T", "body": "x", "tags": "a, b"}, "tags"),
    ("create_blog_post", {"title": "T", "body": "x", "tags": [1, 2]}, "tags"),
    ("create_blog_post", {"title": "T", "body": "x" * 500_001}, "body"),
    ("get_blog_post", {}, "slug"),
    ("get_blog_post", {"slug": "a" * 81}, "slug"),
    ("get_blog_post", {"slug": "Hello World"}, "slug:"),
    ("list_blog_posts", {"limit": 101}, "limit"),
    ("list_blog_posts", {"offset": -1}, "offset"),
    ("list_blog_posts", {"status": "archived"}, "status"),
    ("research_blog", {}, "topic"),
    ("research_blog", {"topic": "x" * 501}, "topic"),
    ("research_blog", {"topic": "gateway", "limit": 0}, "limit"),
    ("generate_featured_image", {}, "title"),
    ("generate_featured_image", {"title": "Post", "slug": "a" * 81}, "slug"),
    ("generate_featured_image", {"title": "Post", "style": 3}, "style"),
]


async def test_the_content_managers_bad_inputs_are_named_and_write_nothing(
    project: Settings,
) -> None:
    async with clients(project, "content-manager", create_content_manager) as connect:
        async with connect() as client:
            answered = await refusals(client, CONTENT_CASES)
            with pytest.raises(MCPError) as malformed:
                await client.read_resource("artifact://content-manager/not-an-id")
        async with connect(subject=None) as anonymous:
            mine = await anonymous.call_tool("list_blog_posts", {"scope": "mine"})

    assert_refused([*answered, (("list_blog_posts", {"scope": "mine"}, "scope"), mine)])
    assert "not-an-id" in malformed.value.error.message
    assert not (project.project_dir / "content/blog").exists()
    async with await Store.open(project) as store:
        assert await store.artifacts.list_recent(limit=10) == []


SOUL_CASES: list[Case] = [
    ("summarize", {}, "text"),
    ("summarize", {"text": "A text.", "max_words": 1001}, "max_words"),
    ("summarize", {"text": 12}, "text"),
    ("rewrite", {"text": "A text."}, "tone"),
    ("suggest_titles", {"text": " "}, "'text' is empty"),
    ("suggest_titles", {"text": "A text.", "count": 0}, "count"),
    ("extract_keywords", {"text": "A text.", "count": 31}, "count"),
    ("extract_keywords", {"text": "x" * 40_001}, "'text'"),
    ("answer_from_content", {}, "question"),
    ("answer_from_content", {"question": "Why?", "limit": 11}, "limit"),
]


async def test_the_souls_bad_inputs_are_named_and_reach_no_model(project: Settings) -> None:
    settings = load_settings(project.project_dir, {**project.environ, KEY_VARIABLE: "test-key"})
    with AnthropicFake([]) as fake:
        write_ai_config(settings.project_dir, fake)
        async with clients(settings, "soul", create_soul) as connect, connect() as client:
            answered = await refusals(client, SOUL_CASES)

    assert_refused(answered)
    assert fake.requests == []
