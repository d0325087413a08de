"""The ``soul`` server end to end: real ``atrium init`` + ``atrium start``, the official MCP
client through the gateway with OAuth bearer tokens for two users (the first admin and bob),
the project's model as a provider fake on loopback, and a client's own model answering MCP
sampling across the gateway in both protocol eras."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from atrium.servers.soul.prompts import delimited
from atrium.settings import load_settings
from atrium.store import Store
from tests.ai.project import KEY_VARIABLE, write_ai_config
from tests.ai.providers_fake import AnthropicFake, text
from tests.auth.flow import jwt_claims
from tests.e2e.instance import Instance, started_instance
from tests.polling import wait_until
from tests.processes import free_port
from tests.servers.soul_client import Sampler, failed, structured

ARTICLE = "The gateway checks every token, then forwards the call to the server that owns it."
QUESTION = "What does the release checklist say about rollbacks?"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """Atrium with the scaffold's policy for soul, which is given the model key (a server's
    process sees only the environment its YAML passes on), and a second user, bob."""
    yaml = json.dumps(
        {
            "mcp_servers": {
                "soul": {
                    "binary": "atrium-mcp-soul",
                    "port": free_port(),
                    "oauth": {
                        "required": True,
                        "scopes": ["user", "tools:read", "tools:write", "admin"],
                        "audience": "mcp",
                    },
                    "env": {KEY_VARIABLE: {"$env": KEY_VARIABLE}},
                }
            }
        }
    )
    project = tmp_path_factory.mktemp("soul") / "project"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_VARIABLE, "test-key")
        with started_instance(project, servers={"soul": yaml}) as started:
            wait_until(lambda: _running(started), what="soul running", timeout_s=60)
            started.atrium("admin", "users", "create", "bob", "--role", "user")
            yield started


@pytest.fixture(scope="module")
def tokens(instance: Instance) -> dict[str, str]:
    """Bearer tokens for soul, issued once: the admin's, bob's, and bob's with tools:read."""
    return {
        "admin": token(instance, "admin"),
        "bob": token(instance, "bob"),
        "bob-read": token(instance, "bob", "tools:read"),
    }


@pytest.fixture
def no_provider(instance: Instance) -> Iterator[None]:
    """The scaffold's AI config (no provider) during the test, whatever a test wrote."""
    path = instance.project / "services/ai/config.yaml"
    scaffold = path.read_text()
    yield
    path.write_text(scaffold)


def _running(instance: Instance) -> bool:
    try:
        answer = httpx2.get(f"{instance.base}/api/v1/mcp/registry/soul", timeout=2).json()
    except (httpx2.HTTPError, ValueError):
        return False
    return bool(answer.get("status") == "running")


def token(instance: Instance, user: str, *scopes: str) -> str:
    flags = [flag for scope in scopes for flag in ("--scopes", scope)]
    issue = ("admin", "token", "issue", "--user", user, "--server", "soul", *flags)
    return instance.atrium(*issue).strip()


@asynccontextmanager
async def client_of(
    instance: Instance, bearer: str, *, sampling: Sampler | None = None, mode: str = "auto"
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {bearer}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(
            streamable_http_client(instance.url("soul"), http_client=http),
            mode=mode,
            sampling_callback=sampling,
        ) as client,
    ):
        yield client


async def test_each_user_gets_answers_from_what_they_may_read(
    instance: Instance, tokens: dict[str, str], no_provider: None
) -> None:
    admin, bob = tokens["admin"], tokens["bob"]
    async with await Store.open(load_settings(instance.project, instance.env)) as store:
        await store.content.save_post(
            owner=str(jwt_claims(admin)["sub"]),
            slug="release-checklist",
            title="Release checklist",
            body="Before a release, rehearse rollbacks on staging.",
            status="published",
        )
        await store.content.save_post(
            owner=str(jwt_claims(bob)["sub"]),
            slug="bob-rollbacks",
            title="Bob's rollback notes",
            body="Draft: the release checklist skips rollbacks on Fridays.",
        )
    with AnthropicFake([text("Rehearse them [release-checklist]."), text("Same.")]) as fake:
        write_ai_config(instance.project, fake)
        answers = {}
        for user, bearer in (("bob", bob), ("admin", admin)):
            async with client_of(instance, bearer) as client:
                result = await client.call_tool("answer_from_content", {"question": QUESTION})
            answers[user] = structured(result)
    posts = {
        user: {s["key"] for s in answer["sources"] if s["kind"] == "post"}
        for user, answer in answers.items()
    }
    assert posts == {"bob": {"release-checklist", "bob-rollbacks"}, "admin": {"release-checklist"}}
    assert answers["bob"]["found"] is True
    assert [s["key"] for s in answers["bob"]["sources"] if s["cited"]] == ["release-checklist"]
    assert "Fridays" in json.dumps(fake.requests[0].body)
    assert "Fridays" not in json.dumps(fake.requests[1].body)  # bob's draft is his alone


async def test_the_writing_tools_answer_a_read_only_token_on_the_project_model(
    instance: Instance, tokens: dict[str, str], no_provider: None
) -> None:
    script = [text("A gateway checks tokens."), text("Gateway\nTokens")]
    with AnthropicFake(script) as fake:
        write_ai_config(instance.project, fake)
        async with client_of(instance, tokens["bob-read"]) as client:
            listed = {tool.name for tool in (await client.list_tools()).tools}
            summary = await client.call_tool("summarize", {"text": ARTICLE, "max_words": 20})
            keywords = await client.call_tool("extract_keywords", {"text": ARTICLE, "count": 2})
    assert listed == {
        "summarize",
        "rewrite",
        "suggest_titles",
        "extract_keywords",
        "answer_from_content",
    }
    assert structured(summary)["summary"] == "A gateway checks tokens."
    assert structured(summary)["model"]["via"] == "provider"
    assert structured(keywords)["keywords"] == ["Gateway", "Tokens"]
    assert delimited(ARTICLE) in json.dumps(fake.requests[0].body, ensure_ascii=False).replace(
        "\\n", "\n"
    )


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_without_a_provider_the_callers_own_model_answers_through_the_gateway(
    instance: Instance, tokens: dict[str, str], no_provider: None, mode: str
) -> None:
    sampler = Sampler("Tokens are checked first.", model="client-llm")
    bob = tokens["bob"]
    async with client_of(instance, bob, sampling=sampler, mode=mode) as client:
        result = await client.call_tool("summarize", {"text": ARTICLE})
    async with client_of(instance, bob, mode=mode) as client:
        refused = failed(await client.call_tool("summarize", {"text": ARTICLE}))
    assert structured(result)["summary"] == "Tokens are checked first."
    assert structured(result)["model"]["model"] == "client-llm"
    assert delimited(ARTICLE) in sampler.user_text()
    assert "services/ai/config.yaml" in refused
