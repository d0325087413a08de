"""The content-manager's posts and research end to end (issue 14): a fresh ``atrium init`` +
``atrium start``, the content-manager started by the supervisor as scaffolded, and two users
with OAuth tokens (the first admin and bob, a ``user``) calling it through the gateway: a draft
is its owner's alone, a published post everyone's, only the owner replaces a post, research
finds only what the caller may see, and a read-only token reads but never writes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from tests.e2e.instance import Instance, call_tool, ok, refusal, started_instance

SERVER = "content-manager"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    project = tmp_path_factory.mktemp("content") / "project"
    with started_instance(project, builtins=("atrium", "content-manager")) as started:
        started.atrium("admin", "users", "create", "bob", "--role", "user")
        yield started


@pytest.fixture(scope="module")
def tokens(instance: Instance) -> dict[str, str]:
    def issue(user: str, *scopes: str) -> str:
        more = [arg for scope in scopes for arg in ("--scopes", scope)]
        command = ("admin", "token", "issue", "--user", user, "--server", SERVER, *more)
        return instance.atrium(*command).strip()

    return {"admin": issue("admin"), "bob": issue("bob"), "reader": issue("bob", "tools:read")}


async def call(
    instance: Instance, tokens: dict[str, str], user: str, tool: str, **arguments: Any
) -> CallToolResult:
    return await call_tool(instance, tokens[user], SERVER, tool, **arguments)


async def test_two_users_see_their_own_drafts_and_each_others_published_posts(
    instance: Instance, tokens: dict[str, str]
) -> None:
    body = "## Why\nThe gateway checks every token.\n## How\nRotate the keys monthly.\n"
    draft = ok(
        await call(
            instance,
            tokens,
            "admin",
            "create_blog_post",
            title="Key rotation plans",
            body="Rotate the gateway keys.",
        )
    )
    news = ok(await call(instance, tokens, "admin", "create_blog_post", title="Gateway tokens",
                         body=body, tags=["security"], status="published"))  # fmt: skip
    bobs = ok(await call(instance, tokens, "bob", "create_blog_post",
                         title="Bob's gateway notes", body="Notes on the gateway."))  # fmt: skip
    listed = ok(await call(instance, tokens, "bob", "list_blog_posts"))
    hidden = await call(instance, tokens, "bob", "get_blog_post", slug=draft["slug"])
    taken = await call(instance, tokens, "bob", "create_blog_post",
                       title="Gateway tokens", body="Mine now.", overwrite=True)  # fmt: skip
    researched = ok(await call(instance, tokens, "bob", "research_blog", topic="gateway keys"))
    admin_research = ok(await call(instance, tokens, "admin", "research_blog", topic="gateway"))

    assert (draft["slug"], news["slug"], bobs["slug"]) == (
        "key-rotation-plans",
        "gateway-tokens",
        "bobs-gateway-notes",
    )
    assert [(p["slug"], p["mine"]) for p in listed["posts"]] == [
        ("bobs-gateway-notes", True),
        ("gateway-tokens", False),
    ]
    assert refusal(hidden).startswith("slug:")
    assert refusal(taken).startswith("title:")
    assert "another user" in refusal(taken)
    found = [(s["kind"], s["key"]) for s in researched["sources"]]
    assert ("post", "gateway-tokens") in found
    assert ("post", "bobs-gateway-notes") in found
    assert ("post", "key-rotation-plans") not in found
    admin_found = {s["key"] for s in admin_research["sources"]}
    assert {"key-rotation-plans", "gateway-tokens"} <= admin_found
    assert "bobs-gateway-notes" not in admin_found
    assert {"Why", "How"} <= {o["heading"] for o in researched["outline"]}
    written = (instance.project / "content/blog/gateway-tokens.md").read_text()
    assert written.startswith("---\ntitle: Gateway tokens\n")
    assert written.endswith("monthly.\n")


async def test_a_read_only_token_researches_and_cannot_write_a_post(
    instance: Instance, tokens: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {tokens['reader']}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(instance.url(SERVER), http_client=http)
        async with Client(transport) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            researched = await client.call_tool("research_blog", {"topic": "troubleshoot"})
            with pytest.raises(MCPError) as refused:
                await client.call_tool("create_blog_post", {"title": "Nope", "body": "x"})
    anonymous = httpx2.post(instance.url(SERVER), json={"jsonrpc": "2.0", "id": 1,
                            "method": "tools/list"}, timeout=10)  # fmt: skip

    assert {"list_blog_posts", "get_blog_post", "research_blog"} <= names
    assert "create_blog_post" not in names
    assert ("playbook", "troubleshoot-a-server") in {
        (s["kind"], s["key"]) for s in ok(researched)["sources"]
    }
    assert refused.value.data == {"error": "insufficient_scope"}  # the gateway's refusal
    assert not (instance.project / "content/blog/nope.md").exists()
    assert anonymous.status_code == 401


async def test_each_users_drafted_outline_comes_from_only_their_own_posts(
    instance: Instance, tokens: dict[str, str]
) -> None:
    # Imported here: this test was added after the module's others, whose imports it leaves be.
    import json

    from tests.ai.project import write_ai_config
    from tests.ai.providers_fake import OpenAIChatFake, text

    for user, title in (("admin", "Zephyr tuning notes"), ("bob", "Zephyr cabling notes")):
        body = f"## {title.split()[1].title()}\nHow the zephyr relay is set up.\n"
        ok(await call(instance, tokens, user, "create_blog_post", title=title, body=body))
    config = instance.project / "services/ai/config.yaml"
    scaffold = config.read_text()
    drafts = ["# Zephyr\n- Tuning [post:zephyr-tuning-notes]", "# Zephyr\n- Cabling"]
    try:
        # A local OpenAI-compatible server needs no key, so the supervised server needs no env.
        with OpenAIChatFake([text(draft) for draft in drafts]) as fake:
            write_ai_config(instance.project, fake, key=False)
            admin = ok(await call(instance, tokens, "admin", "research_blog", topic="zephyr",
                                  draft=True))  # fmt: skip
            bob = ok(await call(instance, tokens, "bob", "research_blog", topic="zephyr"))
    finally:
        config.write_text(scaffold)

    assert [s["key"] for s in admin["sources"]] == ["zephyr-tuning-notes"]
    assert [s["key"] for s in bob["sources"]] == ["zephyr-cabling-notes"]
    assert (admin["draft"], bob["draft"]) == tuple(drafts)
    assert admin["draft_model"]["provider"] == "fake"
    asked_for_admin, asked_for_bob = (json.dumps(r.body) for r in fake.requests)
    assert "[post:zephyr-tuning-notes]" in asked_for_admin
    assert "zephyr-cabling" not in asked_for_admin
    assert "Cabling" not in asked_for_admin
    assert "[post:zephyr-cabling-notes]" in asked_for_bob
    assert "zephyr-tuning" not in asked_for_bob
    assert "Tuning" not in asked_for_bob
