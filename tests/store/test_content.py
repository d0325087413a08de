"""Blog posts and the full-text search over the project's content, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from atrium.settings import Settings
from atrium.store import IndexDocument, SlugTaken, Store
from atrium.store.content import include_name, markdown_headings, search_terms
from atrium.store.migrate import alembic_config
from atrium.store.skills import SkillDocument
from atrium.store.tables import metadata

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)

HOSTILE = [
    '"',
    '""',
    "NEAR(",
    "NEAR(a b",
    "*",
    "a*",
    "^start",
    "AND OR NOT",
    "title:deploy",
    "{title body}: x",
    "'); DROP TABLE blog_posts; --",
    "-deploy",
    "deploy + - ( ) : ' \\",
    "\x00",
    "\u200b",
    "!",
    "",
    "   ",
    "& | ! <-> :*",
    "word " * 500,
]


def ticking() -> Callable[[], datetime]:
    """A clock a minute later at every call, so that each write has its own time."""
    minutes = itertools.count()
    return lambda: T0 + timedelta(minutes=next(minutes))


def playbook(key: str, title: str, body: str) -> IndexDocument:
    return IndexDocument("playbook", key, title, body)


async def test_a_saved_post_reads_back(store: Store) -> None:
    saved = await store.content.save_post(
        owner="ada", slug="hello", title="Hello", body="# Hi\n", tags=["intro"]
    )

    found = await store.content.get_post("hello")

    assert found == saved
    assert (saved.status, saved.tags, saved.published_at) == ("draft", ("intro",), None)
    assert await store.content.get_post("nothing-here") is None


async def test_a_taken_slug_is_refused_unless_its_owner_overwrites(
    database_settings: Settings,
) -> None:
    async with await Store.open(database_settings, clock=ticking()) as store:
        first = await store.content.save_post(owner="ada", slug="s", title="One", body="one")
        with pytest.raises(SlugTaken) as own:
            await store.content.save_post(owner="ada", slug="s", title="Two", body="two")
        with pytest.raises(SlugTaken) as other:
            await store.content.save_post(
                owner="bob", slug="s", title="Mine", body="x", overwrite=True
            )
        published = await store.content.save_post(
            owner="ada", slug="s", title="Two", body="two", status="published", overwrite=True
        )
        again = await store.content.save_post(
            owner="ada", slug="s", title="Two", body="2", status="published", overwrite=True
        )
        draft = await store.content.save_post(
            owner="ada", slug="s", title="Two", body="2", overwrite=True
        )

    assert (own.value.by_caller, other.value.by_caller) == (True, False)
    assert (published.created_at, published.body) == (first.created_at, "two")
    assert published.published_at == published.updated_at > first.updated_at
    assert again.published_at == published.published_at
    assert draft.published_at is None


async def test_posts_are_listed_to_their_owner_and_published_ones_to_everyone(
    database_settings: Settings,
) -> None:
    async with await Store.open(database_settings, clock=ticking()) as store:
        await store.content.save_post(owner="ada", slug="ada-draft", title="A", body="a")
        await store.content.save_post(
            owner="ada", slug="ada-post", title="B", body="b", status="published"
        )
        await store.content.save_post(owner="bob", slug="bob-draft", title="C", body="c")

        def slugs(posts: list[Any]) -> list[str]:
            return [post.slug for post in posts]

        for_bob = slugs(await store.content.list_posts(subject="bob"))
        bob_own = slugs(await store.content.list_posts(subject="bob", mine_only=True))
        anonymous = slugs(await store.content.list_posts(subject=None))
        ada_drafts = slugs(await store.content.list_posts(subject="ada", status="draft"))
        pages = [
            slugs(await store.content.list_posts(subject="ada", limit=1, offset=n))
            for n in range(3)
        ]

    assert for_bob == ["bob-draft", "ada-post"]
    assert bob_own == ["bob-draft"]
    assert anonymous == ["ada-post"]
    assert ada_drafts == ["ada-draft"]
    assert pages == [["ada-post"], ["ada-draft"], []]


async def test_search_ranks_matches_with_snippets_and_shows_only_what_the_caller_may_see(
    store: Store,
) -> None:
    await store.content.save_post(
        owner="ada",
        slug="deploying",
        title="Deploying servers",
        body="How we deploy MCP servers behind the gateway with OAuth.",
        status="published",
    )
    await store.content.save_post(
        owner="ada", slug="secret-plan", title="Plan", body="Deploy the secret gateway plan."
    )
    await store.content.sync_documents(
        "playbook",
        [playbook("ops", "Operations", "## Restart\nA gateway restart is rarely needed.\n")],
    )

    for_ada = await store.content.search("deploy gateway", subject="ada")
    for_bob = await store.content.search("deploy gateway", subject="bob")
    anonymous = await store.content.search("gateway", subject=None)

    assert {hit.key for hit in for_ada} == {"deploying", "secret-plan", "ops"}
    assert next(hit.key for hit in for_bob) == "deploying"
    assert {hit.key for hit in for_bob} == {"deploying", "ops"}
    assert {hit.key for hit in anonymous} == {"deploying", "ops"}
    ranks = [hit.rank for hit in for_bob]
    assert ranks == sorted(ranks, reverse=True)
    assert ranks[0] > ranks[-1]
    assert "**deploy**" in for_bob[0].snippet.lower()
    assert (for_bob[0].kind, for_bob[0].title) == ("post", "Deploying servers")


async def test_the_index_follows_a_rewritten_post(store: Store) -> None:
    await store.content.save_post(owner="ada", slug="p", title="Zebras", body="stripes")
    await store.content.save_post(
        owner="ada", slug="p", title="Giraffes", body="long necks", overwrite=True
    )

    assert await store.content.search("zebras stripes", subject="ada") == []
    [hit] = await store.content.search("necks", subject="ada")
    assert (hit.key, hit.title) == ("p", "Giraffes")


@pytest.mark.parametrize("query", HOSTILE)
async def test_a_hostile_query_is_only_text(store: Store, query: str) -> None:
    await store.content.save_post(
        owner="ada", slug="p", title="Start", body="deploy word title body", status="published"
    )

    hits = await store.content.search(query, subject="ada")

    assert all(hit.key == "p" for hit in hits)


async def test_syncing_writes_only_what_changed_and_drops_what_is_gone(store: Store) -> None:
    first = [playbook("a", "Alpha", "apples"), playbook("b", "Beta", "bananas")]
    second = [playbook("a", "Alpha", "apricots"), playbook("c", "Gamma", "cherries")]

    added = await store.content.sync_documents("playbook", first)
    unchanged = await store.content.sync_documents("playbook", first)
    changed = await store.content.sync_documents("playbook", second)

    assert (added, unchanged, changed) == (2, 0, 3)
    assert await store.content.search("bananas apples", subject=None) == []
    assert [h.key for h in await store.content.search("apricots cherries", subject=None)] in (
        ["a", "c"],
        ["c", "a"],
    )
    with pytest.raises(ValueError, match="never posts"):
        await store.content.sync_documents("post", [])


async def test_refresh_indexes_skills_for_their_owner_and_shared_ones_for_all(
    store: Store,
) -> None:
    def skill(name: str) -> SkillDocument:
        content = f"---\nname: {name}\ndescription: d\n---\n# Release {name}\n## Checklist\n"
        return SkillDocument(name=name, description="d", content=content)

    own = await store.skills.create("ada", skill("private-release"))
    shared = await store.skills.create("ada", skill("shared-release"), shared=True)

    changed = await store.content.refresh([playbook("r", "Release", "release day")])
    sources = await store.content.sources("release checklist", subject="bob", limit=5)

    assert changed == 3
    assert {hit.key for hit in await store.content.search("release", subject="ada")} == {
        own.id,
        shared.id,
        "r",
    }
    assert {(s.hit.kind, s.hit.key) for s in sources} == {("skill", shared.id), ("playbook", "r")}
    [from_skill] = [s for s in sources if s.hit.kind == "skill"]
    assert from_skill.headings == ("# Release shared-release", "## Checklist")


@pytest.mark.parametrize(
    ("query", "terms"),
    [
        ("How to deploy the Gateway?", ["deploy", "gateway"]),
        ("the how", ["the", "how"]),
        ('NEAR("x" y*)', ["near", "x", "y"]),
        ("Ünïcode naïve", ["ünïcode", "naïve"]),
        ("snake_case", ["snake", "case"]),
    ],
)
def test_search_terms_are_the_words_without_stop_words(query: str, terms: list[str]) -> None:
    assert search_terms(query) == terms


def test_headings_are_read_outside_fenced_code() -> None:
    body = "# Title\ntext\n```sh\n# a comment\n```\n## Setup ##\n~~~\n## not\n~~~\n####### no\n"

    assert markdown_headings(body) == ("# Title", "## Setup")


def differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"include_name": include_name})
    found: list[Any] = compare_metadata(context, metadata)
    return found


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_the_content_revision_goes_down_and_up_and_search_works_again(
    store: Store,
) -> None:
    await store.content.save_post(owner="ada", slug="p", title="Kept", body="text")
    async with store.engine.begin() as conn:
        before = await conn.run_sync(table_names)
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0009"))
        after_downgrade = await conn.run_sync(table_names)
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
        after_upgrade = await conn.run_sync(differences)
    await store.content.save_post(owner="ada", slug="q", title="Again", body="searchable")

    assert {"blog_posts", "content_documents"} <= before
    assert not {name for name in after_downgrade if "blog" in name or "content" in name}
    assert after_upgrade == []
    assert [hit.key for hit in await store.content.search("searchable", subject="ada")] == ["q"]
