"""``store.skills``: owned, shared and versioned Agent Skills, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from atrium.settings import Settings
from atrium.store import (
    AlreadyExists,
    SkillDocument,
    Store,
    UnknownSkill,
    VersionConflict,
)


def document(
    name: str = "pdf-tools", body: str = "Use pdftotext.", **extra: object
) -> SkillDocument:
    description = str(extra.pop("description", f"Works with {name}."))
    content = f"---\nname: {name}\ndescription: {description}\n---\n{body}\n"
    return SkillDocument(name=name, description=description, content=content, **extra)  # type: ignore[arg-type]


async def test_a_created_skill_reads_back_as_version_one_with_its_tags_and_files(
    store: Store,
) -> None:
    created = await store.skills.create(
        "ada", document(tags=("pdf", "docs"), files={"scripts/run.py": "print(1)\n"})
    )
    found = await store.skills.get("ada", "pdf-tools")

    assert found == created
    assert (found.version, found.tags, found.shared) == (1, ("docs", "pdf"), False)
    assert found.files == {"scripts/run.py": "print(1)\n"}
    assert found.content.startswith("---\nname: pdf-tools\n")


async def test_names_are_unique_per_owner_only(store: Store) -> None:
    await store.skills.create("ada", document())

    with pytest.raises(AlreadyExists) as caught:
        await store.skills.create("ada", document(body="again"))
    await store.skills.create("bob", document())

    assert caught.value.kind == "skill"
    assert (await store.skills.get("ada", "pdf-tools")).content.endswith("Use pdftotext.\n")  # type: ignore[union-attr]
    assert (await store.skills.get("bob", "pdf-tools")) is not None


async def test_an_update_writes_the_next_version_and_keeps_the_one_before(store: Store) -> None:
    first = await store.skills.create("ada", document(tags=("pdf",)), shared=True)
    second = await store.skills.update(
        "ada", "pdf-tools", document(body="Use qpdf.", tags=("qpdf",)), expected_version=1
    )

    history = await store.skills.history(first.id)
    numbers = await store.skills.version_numbers(first.id)
    old = await store.skills.version_of(first.id, 1)
    current = await store.skills.get("ada", "pdf-tools")

    assert [v.version for v in history] == numbers == [2, 1]
    assert old is not None
    assert old.content == first.content
    assert current == second
    assert (current.version, current.tags, current.shared) == (2, ("qpdf",), True)
    assert current.created_at == first.created_at


async def test_an_update_from_a_stale_version_is_a_conflict_and_writes_nothing(
    store: Store,
) -> None:
    created = await store.skills.create("ada", document())
    await store.skills.update("ada", "pdf-tools", document(body="v2"), expected_version=1)

    with pytest.raises(VersionConflict) as caught:
        await store.skills.update("ada", "pdf-tools", document(body="v2b"), expected_version=1)

    assert (caught.value.expected, caught.value.current) == (1, 2)
    assert [v.version for v in await store.skills.history(created.id)] == [2, 1]


async def test_of_two_updates_from_one_version_exactly_one_is_written(store: Store) -> None:
    created = await store.skills.create("ada", document())

    outcomes = await asyncio.gather(
        *(
            store.skills.update("ada", "pdf-tools", document(body=f"v{n}"), expected_version=1)
            for n in range(2)
        ),
        return_exceptions=True,
    )

    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "SkillRecord",
        "VersionConflict",
    ]
    assert [v.version for v in await store.skills.history(created.id)] == [2, 1]


async def test_only_the_owner_can_update_a_skill(store: Store) -> None:
    await store.skills.create("ada", document(), shared=True)

    with pytest.raises(UnknownSkill):
        await store.skills.update("bob", "pdf-tools", document(body="mine"), expected_version=1)


async def test_a_reader_sees_their_own_skill_first_then_the_oldest_shared_one_but_gets_own_only(
    database_settings: Settings,
) -> None:
    times = iter(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n) for n in range(10))
    async with await Store.open(database_settings, clock=lambda: next(times)) as store:
        await store.skills.create("ada", document(body="ada's"), shared=True)
        await store.skills.create("cy", document(body="cy's"), shared=True)
        await store.skills.create("dee", document(name="private", body="dee's"))

        as_bob = await store.skills.visible("bob", "pdf-tools")
        cy_for_bob = await store.skills.visible("bob", "pdf-tools", owner="cy")
        private_for_bob = await store.skills.visible("bob", "private")
        bobs_own_before = await store.skills.get("bob", "pdf-tools")
        await store.skills.create("bob", document(body="bob's"))
        own_for_bob = await store.skills.visible("bob", "pdf-tools")

    owners = [found.owner if found else None for found in (as_bob, cy_for_bob, own_for_bob)]
    assert owners == ["ada", "cy", "bob"]
    assert private_for_bob is None
    assert bobs_own_before is None  # what agents load: shared ones are never bob's own


async def test_listing_filters_by_text_and_tag_and_pages_by_name(store: Store) -> None:
    for name in ("alpha", "beta", "gamma", "delta"):
        await store.skills.create("ada", document(name=name, tags=(name[0],)))
    await store.skills.create("ada", document(name="percent", body="100% sure"))
    await store.skills.create("bob", document(name="bobs", body="Alpha beta"), shared=True)
    await store.skills.create("bob", document(name="hidden", body="alpha"))

    first = await store.skills.list("ada", limit=3)
    rest = await store.skills.list("ada", after=(first[-1].name, first[-1].id), limit=3)
    by_text = await store.skills.list("ada", text="ALPHA")
    percent = await store.skills.list("ada", text="0%")
    underscore = await store.skills.list("ada", text="_")
    by_tag = await store.skills.list("ada", tag="g")
    own = await store.skills.list("ada", owned_only=True)

    assert [s.name for s in first + rest] == ["alpha", "beta", "bobs", "delta", "gamma", "percent"]
    assert [s.name for s in by_text] == ["alpha", "bobs"]
    assert [s.name for s in percent] == ["percent"]
    assert underscore == []
    assert [(s.name, s.tags) for s in by_tag] == [("gamma", ("g",))]
    assert "bobs" not in {s.name for s in own}


async def test_owned_lists_only_the_owners_skills_with_content(store: Store) -> None:
    await store.skills.create("ada", document(name="b-skill"))
    await store.skills.create("ada", document(name="a-skill", files={"x.md": "x"}))
    await store.skills.create("bob", document(name="c-skill"), shared=True)

    owned = await store.skills.owned("ada")

    assert [(s.name, s.files) for s in owned] == [("a-skill", {"x.md": "x"}), ("b-skill", {})]


async def test_deleting_a_skill_removes_its_versions_and_tags(store: Store) -> None:
    created = await store.skills.create("ada", document(tags=("pdf",)))
    await store.skills.update("ada", "pdf-tools", document(body="v2"), expected_version=1)

    assert await store.skills.delete("bob", "pdf-tools") is False
    assert await store.skills.delete("ada", "pdf-tools") is True
    assert await store.skills.get("ada", "pdf-tools") is None
    assert await store.skills.history(created.id) == []
    assert await store.skills.list("ada", tag="pdf") == []
    assert await store.skills.delete("ada", "pdf-tools") is False


async def test_an_overlong_description_is_refused_on_every_database(store: Store) -> None:
    with pytest.raises(ValueError, match="1024"):
        await store.skills.create("ada", document(description="x" * 1025))
