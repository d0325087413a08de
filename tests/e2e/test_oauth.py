"""End to end with OAuth required: `atrium init` and `atrium start` for real, then the
official Python client signs in by discovery alone, and the MCP Inspector CLI lists tools with
a token from `atrium admin token issue`.

The built-in `atrium` server keeps the scaffold's policy (`oauth.required: true`, scope
`admin`); the first administrator is the one `atrium init` created and printed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from tests.auth.flow import Browser
from tests.e2e.instance import Instance, started_instance
from tests.e2e.test_hosting import inspector


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    with started_instance(tmp_path_factory.mktemp("oauth") / "project") as running:
        yield running


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def signing_in_provider(instance: Instance, storage: MemoryStorage) -> OAuthClientProvider:
    """The SDK's provider; its browser step is the admin signing in and allowing access."""
    redirected: dict[str, str] = {}

    async def open_browser(url: str) -> None:
        async with Browser.open(instance.base) as browser:
            redirected.update(await browser.consent_redirect(url, "admin", instance.password))

    async def wait_for_callback() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(
            code=redirected["code"], state=redirected.get("state"), iss=redirected.get("iss")
        )

    metadata = OAuthClientMetadata(
        client_name="e2e test client",
        redirect_uris=["http://127.0.0.1:4999/callback"],
        grant_types=["authorization_code", "refresh_token"],
    )
    return OAuthClientProvider(
        instance.url("atrium"), metadata, storage, open_browser, wait_for_callback
    )


async def test_the_official_client_signs_in_by_discovery_and_calls_a_tool(
    instance: Instance,
) -> None:
    storage = MemoryStorage()
    provider = signing_in_provider(instance, storage)

    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        transport = streamable_http_client(instance.url("atrium"), http_client=http)
        async with Client(transport) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool("list_playbooks", {})

    assert {"atrium", "list_playbooks", "show_playbook"} <= tools
    assert not result.is_error
    assert "add-a-stdio-server" in json.dumps(result.model_dump(mode="json"))
    assert storage.tokens is not None
    assert storage.tokens.refresh_token
    assert storage.client is not None
    assert storage.client.client_id.startswith("dyn_")
    audit = json.loads(instance.atrium("infra", "logs", "request", "list", "--json"))
    signed_in = [row for row in audit if row.get("client_id") == storage.client.client_id]
    assert any(row["tool"] == "list_playbooks" and row["subject"] for row in signed_in)


def test_without_a_token_the_gateway_points_to_its_metadata(instance: Instance) -> None:
    response = httpx2.post(instance.url("atrium"), json={}, timeout=10)

    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    metadata_url = re.search(r'resource_metadata="([^"]+)"', challenge)
    assert metadata_url, challenge
    metadata = httpx2.get(metadata_url[1], timeout=10).json()
    assert metadata["resource"] == instance.url("atrium")
    assert metadata["authorization_servers"] == [instance.base]


def test_the_inspector_lists_tools_with_a_token_from_the_cli(instance: Instance) -> None:
    token = instance.atrium("admin", "token", "issue", "--user", "admin", "--server", "atrium")

    listed = inspector(
        instance.url("atrium"),
        "--transport",
        "http",
        "--method",
        "tools/list",
        "--header",
        f"Authorization: Bearer {token.strip()}",
    )

    assert listed.returncode == 0, listed.stderr
    names = {tool["name"] for tool in json.loads(listed.stdout)["tools"]}
    assert "list_playbooks" in names
