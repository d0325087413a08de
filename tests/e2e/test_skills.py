"""The marketplace's skills end to end (issue 14): a fresh ``atrium init`` + ``atrium start``,
the marketplace started by the supervisor as scaffolded, and two users with OAuth tokens (the
first admin and bob, a ``user``) calling it through the gateway: what one creates the other
does not see until it is shared, only the owner changes it, a stale update is refused, the
linter checks the servers of tool names against the registry (never minting a token to list
their tools), and only an admin syncs the project's ``skills/`` folder."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mcp.types import CallToolResult

from tests.e2e.instance import Instance, call_tool, ok, refusal, started_instance

SERVER = "marketplace"
DESCRIPTION = "Extract text and tables from PDF files. Use when a task involves PDF documents."


def skill_md(name: str = "pdf-tools", body: str = "Run `pdftotext` on the file.\n") -> str:
    return f"---\nname: {name}\ndescription: {DESCRIPTION}\n---\n{body}"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    project = tmp_path_factory.mktemp("skills") / "project"
    with started_instance(project, builtins=("atrium", "marketplace")) as started:
        started.atrium("admin", "users", "create", "bob", "--role", "user")
        yield started


@pytest.fixture(scope="module")
def tokens(instance: Instance) -> dict[str, str]:
    return {
        user: instance.atrium("admin", "token", "issue", "--user", user, "--server", SERVER).strip()
        for user in ("admin", "bob")
    }


async def call(
    instance: Instance, tokens: dict[str, str], user: str, tool: str, **arguments: Any
) -> CallToolResult:
    return await call_tool(instance, tokens[user], SERVER, tool, **arguments)


async def test_two_users_share_a_skill_only_when_its_owner_says_so(
    instance: Instance, tokens: dict[str, str]
) -> None:
    created = ok(await call(instance, tokens, "admin", "create_skill", content=skill_md()))
    unseen = ok(await call(instance, tokens, "bob", "list_skills"))
    hidden = await call(instance, tokens, "bob", "get_skill", name="pdf-tools")
    shared = ok(
        await call(instance, tokens, "admin", "update_skill", name="pdf-tools", version=1,
                   content=skill_md(body="Use qpdf.\n"), shared=True)
    )  # fmt: skip
    seen = ok(await call(instance, tokens, "bob", "list_skills"))
    not_bobs = await call(
        instance, tokens, "bob", "update_skill", name="pdf-tools", version=2, content=skill_md()
    )
    stale = await call(
        instance, tokens, "admin", "update_skill", name="pdf-tools", version=1, content=skill_md()
    )
    bad = await call(instance, tokens, "bob", "create_skill", content=skill_md("Bad_Name"))

    assert created["skill"]["version"] == 1
    assert unseen["skills"] == []
    assert refusal(hidden).startswith("name:")
    assert (shared["skill"]["version"], shared["skill"]["shared"]) == (2, True)
    [listed] = seen["skills"]
    assert (listed["name"], listed["mine"], listed["version"]) == ("pdf-tools", False, 2)
    assert "only its owner" in refusal(not_bobs)
    assert refusal(stale).startswith("version:")
    assert refusal(bad).startswith("content:")


async def test_analyze_checks_the_servers_of_tool_names_against_the_registry(
    instance: Instance, tokens: dict[str, str]
) -> None:
    body = (
        "Call `mcp__marketplace__list_skills` first.\n"
        "Then `mcp__marketplace__brew_coffee` and `mcp__nowhere__ping`.\n"
        "Also `get_skill` and `make_coffee`.\n"
        "Sign in with $secret:NO_SUCH_SECRET.\n"
    )
    result = ok(await call(instance, tokens, "bob", "analyze_skill", content=skill_md(body=body)))

    found = sorted((f["line"], f["rule"], f["severity"]) for f in result["findings"])
    assert found == [
        (5, "tool-unchecked", "info"),
        (6, "tool-unknown", "warning"),
        (8, "secret-unknown", "warning"),
    ]
    messages = " ".join(f["message"] for f in result["findings"])
    assert "'nowhere'" in messages


async def test_only_an_admin_syncs_the_project_folder(
    instance: Instance, tokens: dict[str, str]
) -> None:
    refused = await call(instance, tokens, "bob", "sync_skills", direction="to_disk")
    ok(await call(instance, tokens, "admin", "create_skill", content=skill_md("house-style")))
    synced = ok(
        await call(instance, tokens, "admin", "sync_skills", direction="to_disk", dry_run=False)
    )

    assert "admin" in refusal(refused)
    assert {(c["name"], c["action"]) for c in synced["changes"]} >= {("house-style", "added")}
    written = instance.project / "skills/house-style/SKILL.md"
    assert written.read_text() == skill_md("house-style")
