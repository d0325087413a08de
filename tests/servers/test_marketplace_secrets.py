"""The marketplace's secrets tools in-process, over real HTTP with the official SDK client:
callers vouched for as the gateway would (two users and an admin), a real SQLite store and the
project's real key ring. Through the gateway with OAuth: ``tests/e2e/test_secrets.py``."""

from __future__ import annotations

import json
import secrets
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from atrium.auth.assertion import (
    HEADER,
    PUBLIC_FILE,
    AssertionSigner,
    AssertionVerifier,
    public_keys,
)
from atrium.auth.operator import AGENT_CLIENT_ID
from atrium.secretbox import SECRET_KEY_FILE
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
    # Nothing is required to pydantic, which would quote the arguments (a value) when one is
    # missing; the descriptions say what is, and the tool checks it.
    assert manage.input_schema.get("required", []) == []
    assert manage.input_schema["properties"]["action"]["enum"] == ["set", "rotate", "delete"]
    for required in ("action", "name"):
        assert "Required" in manage.input_schema["properties"][required]["description"]
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


def pieces(value: str) -> set[str]:
    """Every 6-character piece of ``value``: an error that shortens what it quotes shows one."""
    return {value[i : i + 6] for i in range(len(value) - 5)}


MISTAKES: list[tuple[str, dict[str, Any]]] = [
    ("manage_secrets", {"action": "set", "value": "{V}"}),
    ("manage_secrets", {"name": "API_TOKEN", "value": "{V}"}),
    ("manage_secrets", {"value": "{V}"}),
    ("manage_secrets", {"action": "sett", "name": "API_TOKEN", "value": "{V}"}),
    ("manage_secrets", {"action": ["set"], "name": "API_TOKEN", "value": "{V}"}),
    ("manage_secrets", {"action": "set", "name": 7, "value": "{V}"}),
    ("manage_secrets", {"action": "set", "name": "API_TOKEN", "value": "{V}" * 2000}),
    ("manage_secrets", {"action": "set", "name": "API_TOKEN", "value": {"token": "{V}"}}),
    ("manage_secrets", {"action": "set", "name": "API_TOKEN", "value": ["{V}"]}),
    ("manage_secrets", {"action": "set", "name": "API_TOKEN", "value": "{V}", "scope": "all"}),
    ("manage_secrets", {"action": "delete", "name": "API_TOKEN", "value": "{V}"}),
    ("get_secrets", {"reveal": "perhaps", "value": "{V}"}),
    ("get_secrets", {"names": "API_TOKEN", "value": "{V}"}),
]


def with_value(arguments: Any, value: str) -> Any:
    if isinstance(arguments, dict):
        return {key: with_value(item, value) for key, item in arguments.items()}
    if isinstance(arguments, list):
        return [with_value(item, value) for item in arguments]
    return arguments.replace("{V}", value) if isinstance(arguments, str) else arguments


async def test_no_refusal_echoes_the_value_or_any_piece_of_it(marketplace: Marketplace) -> None:
    value = f"Zq{secrets.token_urlsafe(24)}"
    async with marketplace.client() as client:
        results = [
            await client.call_tool(tool, with_value(arguments, value))
            for tool, arguments in MISTAKES
        ]

    for result, (tool, arguments) in zip(results, MISTAKES, strict=True):
        assert result.is_error, (tool, arguments)
        echoed = sorted(piece for piece in pieces(value) if piece in whole(result))
        assert echoed == [], (tool, arguments, said(result))


async def test_a_value_that_is_json_is_stored_as_the_text_it_is(marketplace: Marketplace) -> None:
    # A service account's key file: the SDK parses JSON in an argument not typed str.
    for value in ('{"type": "service_account", "private_key": "k"}', '["a", "b"]', "null"):
        await marketplace.call(
            "manage_secrets",
            {"action": "set", "name": "SERVICE_KEY", "value": value},
            "root",
            ADMIN,
        )
        revealed = await marketplace.call("get_secrets", {"reveal": True}, "root", ADMIN)
        await marketplace.call(
            "manage_secrets", {"action": "delete", "name": "SERVICE_KEY"}, "root"
        )

        assert [s["value"] for s in structured(revealed)["secrets"]] == [value]


@asynccontextmanager
async def agent_client(marketplace: Marketplace, scopes: frozenset[str]) -> AsyncIterator[Client]:
    """A client vouched for as the AI service's agents are: client ``AGENT_CLIENT_ID``."""
    state_dir = marketplace.settings.state_dir
    signer = AssertionSigner.load(state_dir, public_keys(state_dir)["issuer"])

    async def vouch(request: httpx2.Request) -> None:
        request.headers[HEADER] = signer.sign(
            server="marketplace",
            subject="root",
            client_id=AGENT_CLIENT_ID,
            scopes=scopes,
            origin="in-app",
            request_id=uuid.uuid4().hex,
        )

    async with (
        httpx2.AsyncClient(timeout=30, event_hooks={"request": [vouch]}) as http,
        Client(streamable_http_client(marketplace.url, http_client=http)) as client,
    ):
        yield client


async def test_an_agent_may_not_reveal_even_for_an_admin(marketplace: Marketplace) -> None:
    await marketplace.call(
        "manage_secrets", {"action": "set", "name": "ROOT_TOKEN", "value": VALUE}, "root", ADMIN
    )

    async with agent_client(marketplace, ADMIN) as agent:
        refused = await agent.call_tool("get_secrets", {"reveal": True})
        listed = await agent.call_tool("get_secrets", {})
    by_the_person = await marketplace.call("get_secrets", {"reveal": True}, "root", ADMIN)

    assert refused.is_error
    assert said(refused).startswith("Error executing tool get_secrets: reveal:")
    assert "agent" in said(refused)
    assert VALUE not in whole(refused)
    assert [s["name"] for s in structured(listed)["secrets"]] == ["ROOT_TOKEN"]
    assert [s["value"] for s in structured(by_the_person)["secrets"]] == [VALUE]


async def test_a_lost_key_ring_is_never_replaced_and_the_caller_is_not_told_its_path(
    marketplace: Marketplace, caplog: pytest.LogCaptureFixture
) -> None:
    ring = marketplace.settings.state_dir / SECRET_KEY_FILE
    await marketplace.call("manage_secrets", {"action": "set", "name": "API_TOKEN", "value": VALUE})
    ring.unlink()  # a state folder restored without its key ring

    stored = await marketplace.call(
        "manage_secrets", {"action": "set", "name": "NEW_TOKEN", "value": NEW_VALUE}
    )
    revealed = await marketplace.call("get_secrets", {"reveal": True}, "ada", ADMIN)

    assert stored.is_error
    assert revealed.is_error
    assert not ring.exists()
    for result in (stored, revealed):
        assert str(marketplace.settings.project_dir) not in whole(result)
        assert "log" in said(result)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2
    assert all(str(ring) in error and "restore" in error for error in errors)
    async with await Store.open(marketplace.settings) as store:
        assert [r.name for r in await store.secrets.list("ada")] == ["API_TOKEN"]


async def test_the_first_secret_of_a_project_without_a_ring_starts_one(
    marketplace: Marketplace,
) -> None:
    ring = marketplace.settings.state_dir / SECRET_KEY_FILE
    ring.unlink()  # a project made before `atrium init` wrote rings: nothing stored yet

    stored = await marketplace.call(
        "manage_secrets", {"action": "set", "name": "API_TOKEN", "value": VALUE}
    )
    revealed = await marketplace.call("get_secrets", {"reveal": True}, "ada", ADMIN)

    assert structured(stored)["version"] == 1
    assert ring.stat().st_mode & 0o777 == 0o600
    assert [s["value"] for s in structured(revealed)["secrets"]] == [VALUE]


async def test_a_failing_store_is_logged_and_the_caller_gets_no_database_detail(
    marketplace: Marketplace, caplog: pytest.LogCaptureFixture
) -> None:
    await marketplace.call("manage_secrets", {"action": "set", "name": "API_TOKEN", "value": VALUE})
    database = next(marketplace.settings.state_dir.glob("*.db"))
    with sqlite3.connect(database) as conn:
        conn.execute("DROP TABLE secrets")

    listed = await marketplace.call("get_secrets", {})

    assert listed.is_error
    assert "database" not in said(listed)
    assert str(marketplace.settings.project_dir) not in whole(listed)
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "database" in error
    assert "secrets" in error


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
