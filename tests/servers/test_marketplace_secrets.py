"""The marketplace's secrets tools in-process, over real HTTP with the official SDK client:
callers vouched for as the gateway would (two users and an admin), a real SQLite store and the
project's real key ring. Through the gateway with OAuth: ``tests/e2e/test_secrets.py``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier
from atrium.servers.marketplace import create_server
from atrium.settings import Settings
from atrium.store import PROJECT_OWNER, Store
from tests.servers.helpers import serving
from tests.trust import vouched_client

USER = frozenset({"user", "tools:write"})
ADMIN = frozenset({"user", "tools:write", "admin"})
VALUE = "s3cr3t-ada-0123456789"
NEW_VALUE = "s3cr3t-ada-rotated-9876"


@pytest.fixture
async def marketplace(project: Settings) -> AsyncIterator[Marketplace]:
    """The marketplace of ``project``, served on loopback for the whole test."""
    verifier = AssertionVerifier.load(project.state_dir / PUBLIC_FILE, "marketplace")
    async with serving(create_server(project), verifier) as url:
        yield Marketplace(project, f"{url}/mcp")


@dataclass(frozen=True)
class Marketplace:
    settings: Settings
    url: str

    @asynccontextmanager
    async def client(
        self, subject: str | None = "ada", scopes: frozenset[str] = USER
    ) -> AsyncIterator[Client]:
        state_dir = self.settings.state_dir
        async with vouched_client(
            self.url, state_dir, "marketplace", subject=subject, scopes=scopes
        ) as client:
            yield client

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        subject: str | None = "ada",
        scopes: frozenset[str] = USER,
    ) -> CallToolResult:
        async with self.client(subject, scopes) as client:
            return await client.call_tool(tool, arguments)


def said(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


def whole(result: CallToolResult) -> str:
    return json.dumps(result.model_dump(mode="json"))


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, said(result)
    assert result.structured_content is not None
    content: dict[str, Any] = result.structured_content
    return content


async def test_the_secret_tools_are_listed_with_honest_annotations_and_schemas(
    marketplace: Marketplace,
) -> None:
    async with marketplace.client() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    manage, get = tools["manage_secrets"], tools["get_secrets"]
    assert manage.annotations is not None
    assert get.annotations is not None
    assert (manage.annotations.read_only_hint, manage.annotations.destructive_hint) == (
        False,
        True,
    )
    assert manage.annotations.idempotent_hint is False
    assert (get.annotations.read_only_hint, get.annotations.idempotent_hint) == (True, True)
    assert sorted(manage.input_schema["required"]) == ["action", "name"]
    assert manage.input_schema["properties"]["value"]["type"] == "string"
    assert set(get.input_schema["properties"]) == {"reveal", "names", "scope"}
    assert manage.title
    assert get.title
    assert {"version", "owner"} <= set((manage.output_schema or {})["properties"])
    assert {"secrets", "missing", "revealed"} <= set((get.output_schema or {})["properties"])


async def test_set_and_rotate_version_a_secret_and_no_answer_holds_its_value(
    marketplace: Marketplace,
) -> None:
    set_result = await marketplace.call(
        "manage_secrets", {"action": "set", "name": "API_TOKEN", "value": VALUE}
    )
    rotated = await marketplace.call(
        "manage_secrets", {"action": "rotate", "name": "API_TOKEN", "value": NEW_VALUE}
    )
    listed = await marketplace.call("get_secrets", {})

    assert structured(set_result)["version"] == 1
    assert structured(rotated)["version"] == 2
    assert structured(rotated)["created_at"] == structured(set_result)["created_at"]
    (secret,) = structured(listed)["secrets"]
    assert (secret["name"], secret["version"], secret["owner"]) == ("API_TOKEN", 2, "ada")
    assert (secret["value"], structured(listed)["revealed"]) == (None, False)
    for result in (set_result, rotated, listed):
        assert VALUE not in whole(result)
        assert NEW_VALUE not in whole(result)


async def test_another_user_sees_none_of_them_and_keeps_their_own(marketplace: Marketplace) -> None:
    await marketplace.call("manage_secrets", {"action": "set", "name": "API_TOKEN", "value": VALUE})

    bobs_list = await marketplace.call("get_secrets", {"names": ["API_TOKEN"]}, subject="bob")
    bobs_rotate = await marketplace.call(
        "manage_secrets",
        {"action": "rotate", "name": "API_TOKEN", "value": "x-bob"},
        subject="bob",
    )
    bobs_own = await marketplace.call(
        "manage_secrets",
        {"action": "set", "name": "API_TOKEN", "value": "bobs-own-value"},
        subject="bob",
    )
    adas = await marketplace.call("get_secrets", {})

    assert structured(bobs_list)["secrets"] == []
    assert structured(bobs_list)["missing"] == ["API_TOKEN"]
    assert bobs_rotate.is_error
    assert "name:" in said(bobs_rotate)
    assert structured(bobs_own)["version"] == 1
    assert [s["version"] for s in structured(adas)["secrets"]] == [1]


async def test_revealing_takes_admin_and_each_reveal_is_logged_without_the_value(
    marketplace: Marketplace, caplog: pytest.LogCaptureFixture
) -> None:
    await marketplace.call("manage_secrets", {"action": "set", "name": "API_TOKEN", "value": VALUE})
    await marketplace.call(
        "manage_secrets",
        {"action": "set", "name": "ROOT_TOKEN", "value": NEW_VALUE},
        subject="root",
        scopes=ADMIN,
    )
    caplog.set_level("INFO")

    refused = await marketplace.call("get_secrets", {"reveal": True})
    revealed = await marketplace.call("get_secrets", {"reveal": True}, subject="root", scopes=ADMIN)

    assert refused.is_error
    assert "reveal:" in said(refused)
    assert VALUE not in whole(refused)
    (secret,) = structured(revealed)["secrets"]
    assert (secret["name"], secret["value"]) == ("ROOT_TOKEN", NEW_VALUE)
    assert structured(revealed)["revealed"] is True
    reveals = [r for r in caplog.records if "revealed" in r.getMessage()]
    assert len(reveals) == 1
    assert "root" in reveals[0].getMessage()
    assert "ROOT_TOKEN" in reveals[0].getMessage()
    assert all(
        NEW_VALUE not in r.getMessage() and VALUE not in r.getMessage() for r in caplog.records
    )


async def test_the_project_scope_is_for_admins_and_is_what_server_yaml_reads(
    marketplace: Marketplace,
) -> None:
    arguments = {"action": "set", "name": "DB_PASSWORD", "value": VALUE, "scope": "project"}

    by_a_user = await marketplace.call("manage_secrets", arguments)
    listed_by_a_user = await marketplace.call("get_secrets", {"scope": "project"})
    by_an_admin = await marketplace.call("manage_secrets", arguments, subject="root", scopes=ADMIN)
    listed = await marketplace.call(
        "get_secrets", {"scope": "project"}, subject="root", scopes=ADMIN
    )
    admins_own = await marketplace.call("get_secrets", {}, subject="root", scopes=ADMIN)

    assert by_a_user.is_error
    assert listed_by_a_user.is_error
    assert "scope:" in said(by_a_user)
    assert structured(by_an_admin)["owner"] == "project"
    assert [s["name"] for s in structured(listed)["secrets"]] == ["DB_PASSWORD"]
    assert structured(admins_own)["secrets"] == []
    async with await Store.open(marketplace.settings) as store:
        stored = await store.secrets.list(PROJECT_OWNER)
    assert [(r.name, r.updated_by) for r in stored] == [("DB_PASSWORD", "root")]


async def test_delete_removes_a_secret_and_a_second_delete_is_refused(
    marketplace: Marketplace,
) -> None:
    await marketplace.call("manage_secrets", {"action": "set", "name": "API_TOKEN", "value": VALUE})

    deleted = await marketplace.call("manage_secrets", {"action": "delete", "name": "API_TOKEN"})
    again = await marketplace.call("manage_secrets", {"action": "delete", "name": "API_TOKEN"})
    listed = await marketplace.call("get_secrets", {})

    assert structured(deleted)["version"] is None
    assert again.is_error
    assert "name:" in said(again)
    assert structured(listed)["secrets"] == []


BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"action": "set", "name": "api-token", "value": VALUE}, "name:"),
    ({"action": "set", "name": "API_TOKEN"}, "value:"),
    ({"action": "set", "name": "API_TOKEN", "value": ""}, "value:"),
    ({"action": "set", "name": "API_TOKEN", "value": 4242424242}, "value:"),
    ({"action": "set", "name": "API_TOKEN", "value": [VALUE]}, "value:"),
    ({"action": "set", "name": "API_TOKEN", "value": "a\x00" + VALUE}, "value:"),
    ({"action": "rotate", "name": "NOT_STORED", "value": VALUE}, "name:"),
    ({"action": "delete", "name": "NOT_STORED", "value": VALUE}, "value:"),
    ({"action": "set", "name": "TAKEN", "value": VALUE}, "name:"),
]


async def test_bad_input_is_a_tool_error_naming_the_argument_and_never_quoting_the_value(
    marketplace: Marketplace,
) -> None:
    await marketplace.call("manage_secrets", {"action": "set", "name": "TAKEN", "value": "first"})
    async with marketplace.client() as client:
        results = [await client.call_tool("manage_secrets", args) for args, _ in BAD_INPUTS]

    for result, (arguments, argument) in zip(results, BAD_INPUTS, strict=True):
        assert result.is_error, arguments
        assert said(result).startswith(f"Error executing tool manage_secrets: {argument}")
        assert VALUE not in whole(result)
        assert "4242424242" not in whole(result)


async def test_a_bad_name_in_the_names_filter_is_named(marketplace: Marketplace) -> None:
    result = await marketplace.call("get_secrets", {"names": ["API_TOKEN", "bad name"]})

    assert result.is_error
    assert "names:" in said(result)


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("get_secrets", {}),
        ("manage_secrets", {"action": "set", "name": "API_TOKEN", "value": VALUE}),
    ],
)
async def test_an_anonymous_caller_is_refused(
    marketplace: Marketplace, tool: str, arguments: dict[str, Any]
) -> None:
    result = await marketplace.call(tool, arguments, subject=None, scopes=frozenset())

    assert result.is_error
    assert "signed-in" in said(result)
    async with await Store.open(marketplace.settings) as store:
        assert await store.secrets.key_ids() == set()
