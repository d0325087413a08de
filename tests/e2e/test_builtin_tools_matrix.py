"""The built-in tools that no other end-to-end test calls for two users, through the gateway with
OAuth (issue 14): one ``atrium init`` + ``atrium start`` with all four built-in servers, the
atrium server opened to users, the first admin and bob (a ``user``) each with a bearer token
per server, and the model as a provider fake on loopback.

What one user owns (skills, secrets, posts, conversations) the other does not see unless it is
shared; what nobody owns (playbooks, agents, the soul's writing tools) answers both alike. The
rest of the matrix is in test_skills, test_secrets, test_content, test_featured_image, test_soul,
test_run_agent and test_build_flow (the artifact viewer)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextResourceContents

from atrium.auth.issuing import mint_user_token
from atrium.settings import load_settings
from atrium.store import Store
from tests.ai.project import KEY_VARIABLE, write_agent, write_ai_config
from tests.ai.providers_fake import AnthropicFake, text
from tests.e2e.instance import Instance, call_tool, ok, refusal, started_instance
from tests.processes import free_port

BUILTINS = ("atrium", "marketplace", "content-manager", "soul")
PEOPLE = ["user", "tools:read", "tools:write", "admin"]
DESCRIPTION = "Extract text and tables from PDF files. Use when a task involves PDF documents."
CLIENT_ID = "an-mcp-client"
ARTICLE = "The gateway checks every token, then forwards the call to the server that owns it."


def skill_md(name: str, body: str = "Run `pdftotext` on the file.\n") -> str:
    return f"---\nname: {name}\ndescription: {DESCRIPTION}\n---\n{body}"


def with_model_key(binary: str) -> dict[str, Any]:
    """A built-in server open to every signed-in user, given the model key (a server's process
    sees only the environment its YAML passes on)."""
    return {
        "binary": binary,
        "port": free_port(),
        "oauth": {"required": True, "scopes": PEOPLE, "audience": "mcp"},
        "env": {KEY_VARIABLE: {"$env": KEY_VARIABLE}},
    }


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    servers = {
        name: json.dumps({"mcp_servers": {name: with_model_key(f"atrium-mcp-{name}")}})
        for name in ("atrium", "soul")
    }
    project = tmp_path_factory.mktemp("matrix") / "project"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_VARIABLE, "test-key")
        with started_instance(project, servers=servers, builtins=BUILTINS) as started:
            started.atrium("admin", "users", "create", "bob", "--role", "user")
            write_agent(project, "helper")
            yield started


@pytest.fixture(scope="module")
def tokens(instance: Instance) -> dict[tuple[str, str], str]:
    """(user, server) → a bearer token of that user for that server, with all the scopes of the
    user's role, as an external MCP client holds one (minted here: eight ``atrium admin token
    issue`` processes would take most of this module's time)."""
    settings = load_settings(instance.project, instance.env)

    async def mint() -> dict[tuple[str, str], str]:
        async with await Store.open(settings) as store:
            issue = partial(mint_user_token, store, settings, client_id=CLIENT_ID, ttl_s=3600)
            return {
                (user, server): await issue(username=user, server=server, scopes=[])
                for user in ("admin", "bob")
                for server in BUILTINS
            }

    return asyncio.run(mint())


class Caller:
    def __init__(self, instance: Instance, tokens: dict[tuple[str, str], str], server: str):
        self.instance, self.tokens, self.server = instance, tokens, server

    async def __call__(self, user: str, tool: str, **arguments: Any) -> CallToolResult:
        token = self.tokens[(user, self.server)]
        return await call_tool(self.instance, token, self.server, tool, **arguments)


async def read_resource(instance: Instance, token: str, server: str, uri: str) -> str | MCPError:
    """The text of ``uri`` through the gateway, or the error that refused it."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(instance.url(server), http_client=http)
        async with Client(transport) as client:
            try:
                [contents] = (await client.read_resource(uri)).contents
            except MCPError as refused:
                return refused
    assert isinstance(contents, TextResourceContents)
    return contents.text


async def test_playbooks_and_agents_read_the_same_for_both_users(
    instance: Instance, tokens: dict[tuple[str, str], str]
) -> None:
    atrium = Caller(instance, tokens, "atrium")
    seen = {}
    for user in ("admin", "bob"):
        playbooks = ok(await atrium(user, "list_playbooks"))
        shown = ok(await atrium(user, "show_playbook", name="troubleshoot-a-server"))
        agents = ok(await atrium(user, "list_agents"))
        resource = await read_resource(
            instance, tokens[(user, "atrium")], "atrium", "playbook://troubleshoot-a-server"
        )
        seen[user] = (playbooks, shown, agents, resource)
    unknown = await atrium("bob", "show_playbook", name="no-such-playbook")
    escaping = await atrium("bob", "show_playbook", name="../secret")

    assert seen["admin"] == seen["bob"]
    playbooks, shown, agents, resource = seen["bob"]
    assert [p["name"] for p in playbooks["playbooks"]] == [
        "add-a-stdio-server",
        "troubleshoot-a-server",
    ]
    assert shown["title"] == "Troubleshoot a server"
    assert resource == shown["body"]
    assert {a["name"] for a in agents["agents"]} == {"assistant", "helper"}
    assert "troubleshoot-a-server" in refusal(unknown)
    assert escaping.is_error


async def test_a_conversation_with_an_agent_is_continued_only_by_the_user_who_began_it(
    instance: Instance, tokens: dict[tuple[str, str], str]
) -> None:
    atrium = Caller(instance, tokens, "atrium")
    script = [text("Admin's first answer."), text("Bob's own answer."), text("Admin again.")]
    with AnthropicFake(script) as fake:
        write_ai_config(instance.project, fake, auto_discover=False)
        admins = ok(await atrium("admin", "run_agent", agent="helper", message="One"))
        conversation = admins["conversation_id"]
        stolen = await atrium(
            "bob", "run_agent", agent="helper", message="Mine?", conversation_id=conversation
        )
        bobs = ok(await atrium("bob", "run_agent", agent="helper", message="Two"))
        borrowed = await atrium(
            "admin", "run_agent", agent="helper", message="His?",
            conversation_id=bobs["conversation_id"],
        )  # fmt: skip
        again = ok(
            await atrium(
                "admin", "run_agent", agent="helper", message="Three", conversation_id=conversation
            )
        )
        unknown = await atrium("bob", "run_agent", agent="nobody", message="Hi")

    assert admins["text"] == "Admin's first answer."
    assert f"conversation '{conversation}' not found" in refusal(stolen)
    assert bobs["text"] == "Bob's own answer."
    assert bobs["conversation_id"] != conversation
    assert "not found" in refusal(borrowed)
    assert (again["conversation_id"], again["text"]) == (conversation, "Admin again.")
    assert "helper" in refusal(unknown)
    assert len(fake.requests) == 3  # the refused calls never reached the model
    history = [m["role"] for m in fake.requests[2].body["messages"]]
    assert history == ["user", "assistant", "user"]
    assert "Two" not in json.dumps(fake.requests[2].body)  # bob's run is not in admin's


async def test_the_writing_tools_answer_each_user_and_keep_nothing(
    instance: Instance, tokens: dict[tuple[str, str], str]
) -> None:
    soul = Caller(instance, tokens, "soul")
    script = [text("The gateway vets each token."), text("Tokens first\nThe checking gateway")]
    with AnthropicFake(script) as fake:
        write_ai_config(instance.project, fake)
        rewritten = ok(await soul("admin", "rewrite", text=ARTICLE, tone="formal"))
        titles = ok(await soul("bob", "suggest_titles", text=ARTICLE, count=2))
        bad_tone = await soul("bob", "rewrite", text=ARTICLE, tone="angry")
        empty = await soul("admin", "suggest_titles", text="  ")

    assert rewritten["text"] == "The gateway vets each token."
    assert rewritten["tone"] == "formal"
    assert titles["titles"] == ["Tokens first", "The checking gateway"]
    assert len(fake.requests) == 2
    assert "tone" in refusal(bad_tone)
    assert "'text' is empty" in refusal(empty)


async def test_a_private_skill_is_neither_analyzed_nor_read_by_another_user_until_shared(
    instance: Instance, tokens: dict[tuple[str, str], str]
) -> None:
    market = Caller(instance, tokens, "marketplace")
    ok(await market("admin", "create_skill", content=skill_md("private-notes")))
    hidden = await market("bob", "analyze_skill", name="private-notes")
    own = ok(await market("admin", "analyze_skill", name="private-notes"))
    ok(
        await market(
            "admin", "update_skill", name="private-notes", version=1, shared=True,
            content=skill_md("private-notes", "Use qpdf.\n"),
        )
    )  # fmt: skip
    [listed] = ok(await market("bob", "list_skills", query="private"))["skills"]
    owner = listed["owner"]
    analyzed = ok(await market("bob", "analyze_skill", name="private-notes", owner=owner))
    current = ok(await market("bob", "get_skill", name="private-notes", owner=owner))
    earlier = await market("bob", "get_skill", name="private-notes", owner=owner, version=1)
    bobs_own = ok(await market("bob", "list_skills", mine=True))

    assert refusal(hidden).startswith("name:")
    assert own["findings"] is not None
    assert (listed["mine"], listed["shared"], listed["version"]) == (False, True, 2)
    assert analyzed["findings"] is not None
    assert (current["shown_version"], current["content"]) == (
        2,
        skill_md("private-notes", "Use qpdf.\n"),
    )
    assert refusal(earlier).startswith("version:")  # the earlier version stays its owner's
    assert bobs_own["skills"] == []


async def test_a_secret_of_the_same_name_is_each_users_own_to_rotate_and_delete(
    instance: Instance, tokens: dict[tuple[str, str], str]
) -> None:
    market = Caller(instance, tokens, "marketplace")
    ok(await market("admin", "manage_secrets", action="set", name="DEPLOY_KEY", value="admin-v1"))
    ok(await market("bob", "manage_secrets", action="set", name="DEPLOY_KEY", value="bob-v1"))
    rotated = ok(
        await market("bob", "manage_secrets", action="rotate", name="DEPLOY_KEY", value="bob-v2")
    )
    ok(await market("admin", "manage_secrets", action="set", name="ADMIN_ONLY", value="a"))
    not_bobs = await market(
        "bob", "manage_secrets", action="rotate", name="ADMIN_ONLY", value="stolen"
    )
    deleted = ok(await market("bob", "manage_secrets", action="delete", name="DEPLOY_KEY"))
    again = await market("bob", "manage_secrets", action="delete", name="DEPLOY_KEY")
    bobs = ok(await market("bob", "get_secrets"))
    admins = ok(await market("admin", "get_secrets", reveal=True))

    assert (rotated["version"], deleted["version"]) == (2, None)
    assert refusal(not_bobs).startswith("name:")
    assert refusal(again).startswith("name:")
    assert bobs["secrets"] == []
    values = {s["name"]: (s["version"], s["value"]) for s in admins["secrets"]}
    assert values == {"ADMIN_ONLY": (1, "a"), "DEPLOY_KEY": (1, "admin-v1")}


async def test_each_user_lists_only_their_own_posts_with_scope_mine(
    instance: Instance, tokens: dict[tuple[str, str], str]
) -> None:
    content = Caller(instance, tokens, "content-manager")
    ok(await content("admin", "create_blog_post", title="Admin's launch notes",
                     body="We launch on Monday.", status="published"))  # fmt: skip
    ok(await content("bob", "create_blog_post", title="Bob's draft ideas", body="Ideas."))
    mine = {
        user: ok(await content(user, "list_blog_posts", scope="mine")) for user in ("admin", "bob")
    }
    published = ok(await content("bob", "get_blog_post", slug="admins-launch-notes"))
    draft = await content("admin", "get_blog_post", slug="bobs-draft-ideas")
    drafts = ok(await content("admin", "list_blog_posts", status="draft"))

    assert [p["slug"] for p in mine["admin"]["posts"]] == ["admins-launch-notes"]
    assert [p["slug"] for p in mine["bob"]["posts"]] == ["bobs-draft-ideas"]
    assert all(p["mine"] for listing in mine.values() for p in listing["posts"])
    assert (published["mine"], published["body"].strip()) == (False, "We launch on Monday.")
    assert refusal(draft).startswith("slug:")
    assert drafts["posts"] == []  # bob's draft is not among the admin's
