"""The content-manager's blog and research tools in-process over real HTTP: an ``atrium init``
project, its SQLite store, the official SDK client, callers vouched for as the gateway would
(two users, and an anonymous caller)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from atrium import yamlio
from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier
from atrium.servers.content_manager import create_server
from atrium.servers.content_manager.posts import slugify
from atrium.settings import Settings
from atrium.store import Store
from tests.servers.helpers import serving
from tests.trust import vouched_client

SERVER = "content-manager"
OURS = {"create_blog_post", "get_blog_post", "list_blog_posts", "research_blog"}


@asynccontextmanager
async def content_server(settings: Settings) -> AsyncIterator[str]:
    verifier = AssertionVerifier.load(settings.state_dir / PUBLIC_FILE, SERVER)
    async with serving(create_server(settings), verifier) as url:
        yield f"{url}/mcp"


@asynccontextmanager
async def as_user(settings: Settings, url: str, subject: str | None) -> AsyncIterator[Client]:
    async with vouched_client(url, settings.state_dir, SERVER, subject=subject) as client:
        yield client


@asynccontextmanager
async def ada_and_bob(settings: Settings) -> AsyncIterator[tuple[Client, Client]]:
    async with (
        content_server(settings) as url,
        as_user(settings, url, "ada") as ada,
        as_user(settings, url, "bob") as bob,
    ):
        yield ada, bob


def said(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, said(result)
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


def front_matter(text: str) -> Any:
    _, front, body = text.split("---\n", 2)
    return yamlio.loads(front, "post"), body


async def post(client: Client, title: str, **more: Any) -> CallToolResult:
    return await client.call_tool("create_blog_post", {"title": title, "body": "Text.", **more})


async def test_the_tools_are_listed_with_annotations_and_schemas(project: Settings) -> None:
    async with content_server(project) as url, as_user(project, url, "ada") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) >= OURS
    hints = {}
    for name in sorted(OURS):
        tool, annotations = tools[name], tools[name].annotations
        assert tool.title, name
        assert tool.description, name
        assert tool.output_schema, name
        assert annotations is not None
        hints[name] = (annotations.read_only_hint, annotations.destructive_hint)
        # research_blog may send the sources to the project's model API for a draft.
        assert annotations.open_world_hint is (name == "research_blog")
    assert hints == {
        "create_blog_post": (False, True),
        "get_blog_post": (True, False),
        "list_blog_posts": (True, False),
        "research_blog": (True, False),
    }
    create = tools["create_blog_post"].input_schema
    assert set(create["properties"]) == {"title", "body", "tags", "status", "overwrite"}
    assert sorted(create["required"]) == ["body", "title"]
    assert all(p.get("description") for p in create["properties"].values())


async def test_a_post_is_stored_and_written_as_markdown_with_frontmatter(
    project: Settings,
) -> None:
    async with ada_and_bob(project) as (ada, _):
        result = await ada.call_tool(
            "create_blog_post",
            {
                "title": "Héllo, World: Don't Panic!",
                "body": "# Intro\n\nSome *Markdown*.\n",
                "tags": ["mcp", "MCP", " getting   started "],
                "status": "published",
            },
        )

    saved = structured(result)
    path = project.project_dir / "content/blog/hello-world-dont-panic.md"
    front, body = front_matter(path.read_text())
    assert (saved["slug"], saved["path"]) == (
        "hello-world-dont-panic",
        "content/blog/hello-world-dont-panic.md",
    )
    assert (saved["replaced"], saved["mine"], saved["tags"]) == (
        False,
        True,
        ["mcp", "getting started"],
    )
    assert dict(front) | {"date": "-", "updated": "-", "published": "-"} == {
        "title": "Héllo, World: Don't Panic!",
        "slug": "hello-world-dont-panic",
        "author": "ada",
        "status": "published",
        "tags": ["mcp", "getting started"],
        "date": "-",
        "updated": "-",
        "published": "-",
    }
    assert body == "\n# Intro\n\nSome *Markdown*.\n"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    async with await Store.open(project) as store:
        stored = await store.content.get_post("hello-world-dont-panic")
    assert stored is not None
    assert (stored.owner, stored.status) == ("ada", "published")


async def test_a_slug_is_replaced_only_by_its_owner_with_overwrite(project: Settings) -> None:
    path = project.project_dir / "content/blog/launch-notes.md"
    async with ada_and_bob(project) as (ada, bob):
        first = structured(await post(ada, "Launch notes"))
        again = await post(ada, "Launch notes!")
        other = await bob.call_tool(
            "create_blog_post", {"title": "Launch Notes", "body": "Bob's.", "overwrite": True}
        )
        kept = path.read_text()
        replaced = structured(
            await ada.call_tool(
                "create_blog_post",
                {"title": "Launch notes", "body": "Second.", "overwrite": True},
            )
        )

    assert first["replaced"] is False
    assert again.is_error
    assert "overwrite=true" in said(again)
    assert other.is_error
    assert "another user" in said(other)
    assert "Text." in kept
    assert "Bob's." not in kept
    assert replaced["replaced"] is True
    assert replaced["created_at"] == first["created_at"]
    assert path.read_text().endswith("\nSecond.\n")


async def test_a_draft_is_its_owners_and_a_published_post_everyones(project: Settings) -> None:
    async with ada_and_bob(project) as (ada, bob):
        structured(await post(ada, "Ada draft"))
        structured(await post(ada, "Ada news", status="published"))
        structured(await post(bob, "Bob draft"))
        bob_sees = structured(await bob.call_tool("list_blog_posts", {}))
        bob_own = structured(await bob.call_tool("list_blog_posts", {"scope": "mine"}))
        draft = await bob.call_tool("get_blog_post", {"slug": "ada-draft"})
        news = await bob.call_tool("get_blog_post", {"slug": "ada-news"})
        ada_draft = await ada.call_tool("get_blog_post", {"slug": "ada-draft"})

    assert [(p["slug"], p["mine"]) for p in bob_sees["posts"]] == [
        ("bob-draft", True),
        ("ada-news", False),
    ]
    assert [p["slug"] for p in bob_own["posts"]] == ["bob-draft"]
    assert draft.is_error
    assert "no blog post 'ada-draft'" in said(draft)
    assert structured(news)["body"] == "Text."
    assert said(news).startswith("---\ntitle: Ada news\n")
    assert structured(ada_draft)["status"] == "draft"


async def test_an_anonymous_caller_reads_published_posts_and_creates_nothing(
    project: Settings,
) -> None:
    async with content_server(project) as url:
        async with as_user(project, url, "ada") as ada:
            structured(await post(ada, "Public", status="published"))
            structured(await post(ada, "Private"))
        async with as_user(project, url, None) as anonymous:
            created = await post(anonymous, "Nobody's")
            mine = await anonymous.call_tool("list_blog_posts", {"scope": "mine"})
            listed = structured(await anonymous.call_tool("list_blog_posts", {}))

    assert created.is_error
    assert "signed-in" in said(created)
    assert mine.is_error
    assert "scope" in said(mine)
    assert [p["slug"] for p in listed["posts"]] == ["public"]
    assert not (project.project_dir / "content/blog/nobody-s.md").exists()


async def test_posts_are_listed_a_page_at_a_time(project: Settings) -> None:
    async with ada_and_bob(project) as (ada, _):
        for n in range(3):
            structured(await post(ada, f"Post {n}"))
        first = structured(await ada.call_tool("list_blog_posts", {"limit": 2}))
        second = structured(
            await ada.call_tool("list_blog_posts", {"limit": 2, "offset": first["next_offset"]})
        )

    assert [p["slug"] for p in first["posts"]] == ["post-2", "post-1"]
    assert first["next_offset"] == 2
    assert ([p["slug"] for p in second["posts"]], second["next_offset"]) == (["post-0"], None)


@pytest.mark.parametrize(
    ("tool", "arguments", "named"),
    [
        ("create_blog_post", {"title": "  ", "body": "x"}, "title"),
        ("create_blog_post", {"title": "!!! ???", "body": "x"}, "title"),
        ("create_blog_post", {"title": "日本語", "body": "x"}, "title"),
        ("create_blog_post", {"title": "x" * 201, "body": "x"}, "title"),
        ("create_blog_post", {"title": "T", "body": " \n "}, "body"),
        ("create_blog_post", {"title": "T", "body": "x", "tags": ["a"] * 21}, "tags"),
        ("create_blog_post", {"title": "T", "body": "x", "tags": ["ok", "x" * 41]}, "tags[1]"),
        ("create_blog_post", {"title": "T", "body": "x", "tags": ["a\x07b"]}, "tags[0]"),
        ("create_blog_post", {"title": "T", "body": "x", "status": "live"}, "status"),
        ("get_blog_post", {"slug": "../../atrium"}, "slug"),
        ("get_blog_post", {"slug": "no-such-post"}, "slug"),
        ("list_blog_posts", {"limit": 0}, "limit"),
        ("list_blog_posts", {"scope": "theirs"}, "scope"),
        ("research_blog", {"topic": "?!"}, "topic"),
        ("research_blog", {"topic": "x", "limit": 26}, "limit"),
    ],
)
async def test_bad_input_is_a_tool_error_naming_the_argument(
    project: Settings, tool: str, arguments: dict[str, Any], named: str
) -> None:
    async with ada_and_bob(project) as (ada, _):
        result = await ada.call_tool(tool, arguments)

    assert result.is_error
    assert named in said(result)
    assert "Traceback" not in said(result)
    assert not (project.project_dir / "content/blog").exists()


async def test_a_file_written_by_hand_is_never_replaced(project: Settings) -> None:
    path = project.project_dir / "content/blog/handmade.md"
    path.parent.mkdir(parents=True)
    path.write_text("mine\n")
    async with ada_and_bob(project) as (ada, _):
        result = await post(ada, "Handmade", overwrite=True)

    assert result.is_error
    assert "content/blog/handmade.md" in said(result)
    assert path.read_text() == "mine\n"


async def test_a_blog_folder_leading_out_of_the_project_is_refused(
    project: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (project.project_dir / "content").mkdir()
    (project.project_dir / "content/blog").symlink_to(elsewhere, target_is_directory=True)
    async with ada_and_bob(project) as (ada, _):
        result = await post(ada, "Escape")

    assert result.is_error
    assert "outside the project" in said(result)
    assert list(elsewhere.iterdir()) == []


async def test_a_post_whose_file_cannot_be_written_says_it_is_stored(project: Settings) -> None:
    (project.project_dir / "content").mkdir()
    (project.project_dir / "content/blog").write_text("a file where the folder should be\n")
    async with ada_and_bob(project) as (ada, _):
        result = await post(ada, "Unwritable")
        listed = structured(await ada.call_tool("list_blog_posts", {"scope": "mine"}))

    assert result.is_error
    assert "content/blog/unwritable.md could not be written" in said(result)
    assert [p["slug"] for p in listed["posts"]] == ["unwritable"]


async def test_research_ranks_what_the_caller_may_see_and_outlines_its_headings(
    project: Settings,
) -> None:
    body = "## Read the log\nThe server log says why.\n### Restart it\nThen restart.\n"
    async with ada_and_bob(project) as (ada, bob):
        structured(
            await ada.call_tool(
                "create_blog_post",
                {"title": "Why my server failed", "body": body, "status": "published"},
            )
        )
        structured(await post(ada, "Server failure drafts"))
        for_bob = structured(await bob.call_tool("research_blog", {"topic": "server log"}))
        for_ada = structured(await ada.call_tool("research_blog", {"topic": "server failure"}))

    sources = {(s["kind"], s["key"]) for s in for_bob["sources"]}
    assert ("post", "why-my-server-failed") in sources
    assert ("playbook", "troubleshoot-a-server") in sources
    assert ("post", "server-failure-drafts") not in sources
    assert ("post", "server-failure-drafts") in {(s["kind"], s["key"]) for s in for_ada["sources"]}
    ranks = [s["rank"] for s in for_bob["sources"]]
    assert ranks == sorted(ranks, reverse=True)
    assert any("**log**" in s["snippet"].lower() for s in for_bob["sources"])
    outline = {o["heading"]: o for o in for_bob["outline"]}
    assert outline["Read the log"]["sources"] == ["post:why-my-server-failed"]
    assert outline["Restart it"]["level"] == 3
    assert outline["Read its log"]["sources"] == ["playbook:troubleshoot-a-server"]
    assert "Troubleshoot a server" not in outline  # a level-1 heading is the source's title


async def test_research_finds_a_playbook_as_it_is_on_disk_now(project: Settings) -> None:
    playbook = project.project_dir / "services/playbooks/rotate-keys.md"
    async with ada_and_bob(project) as (ada, _):
        before = structured(await ada.call_tool("research_blog", {"topic": "zeppelin"}))
        playbook.write_text("---\ntitle: Rotate keys\n---\n## Zeppelin mode\nRotate.\n")
        after = structured(await ada.call_tool("research_blog", {"topic": "zeppelin"}))
        playbook.unlink()
        gone = structured(await ada.call_tool("research_blog", {"topic": "zeppelin"}))

    assert before["sources"] == gone["sources"] == []
    assert [(s["kind"], s["key"]) for s in after["sources"]] == [("playbook", "rotate-keys")]
    assert after["outline"] == [
        {"heading": "Zeppelin mode", "level": 2, "sources": ["playbook:rotate-keys"]}
    ]


@pytest.mark.parametrize("topic", ['"', "NEAR(", "*", "AND (OR", "server:*"])
async def test_a_hostile_topic_is_searched_as_plain_words(project: Settings, topic: str) -> None:
    async with ada_and_bob(project) as (ada, _):
        result = await ada.call_tool("research_blog", {"topic": f"{topic} server {topic}"})

    assert {s["key"] for s in structured(result)["sources"]} >= {"troubleshoot-a-server"}


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Hello World", "hello-world"),
        ("  Ünïcödé — façade ", "unicode-facade"),
        ("It's 2026!", "its-2026"),
        ("a" * 100, "a" * 80),
        ("word " * 30, "-".join(["word"] * 16)),
        ("日本語", ""),
    ],
)
def test_slugs_are_lowercase_ascii_words(title: str, slug: str) -> None:
    assert slugify(title) == slug
