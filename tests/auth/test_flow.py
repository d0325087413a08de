"""The authorization code flow from registration to a tool call, through real sockets."""

from __future__ import annotations

from typing import Any

import httpx2

from tests.auth.conftest import PASSWORD
from tests.auth.flow import Browser, Pkce, authorize_url, exchange_code
from tests.gateway.helpers import Gateway, call_modern, messages


async def test_a_registered_client_signs_a_user_in_and_calls_a_tool(
    gateway: Gateway, browser: Browser, client: dict[str, Any], http: httpx2.AsyncClient
) -> None:
    pkce = Pkce.new()
    url = authorize_url(
        gateway.base,
        client["client_id"],
        pkce,
        scope="user tools:write",  # user lets in, tools:write calls (atrium.auth.roles)
        resource=gateway.url("users"),
    )

    back = await browser.consent_redirect(url, "user", PASSWORD)
    assert back["state"] == "xyz"
    assert back["iss"] == gateway.base
    tokens = await exchange_code(
        http, gateway.base, client["client_id"], back["code"], pkce.verifier
    )

    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "tools:write user"
    assert body["refresh_token"]
    http.headers["Authorization"] = f"Bearer {body['access_token']}"
    response = await call_modern(http, gateway.url("users"), "echo", {"text": "hi"})
    assert response.status_code == 200, response.text
    assert messages(response)[0]["result"]["content"][0]["text"] == "hi"
    (record,) = await gateway.audit_of("users")
    assert record.client_id == client["client_id"]
    assert record.subject is not None
