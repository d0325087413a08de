"""Dynamic client registration (RFC 7591): open, checked, capped and self-cleaning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest

from atrium.store import ClientRecord
from tests.auth.flow import OAUTH, REDIRECT, register_client, snapshot
from tests.gateway.helpers import Gateway

NATIVE = {
    "redirect_uris": [REDIRECT],
    "application_type": "native",
    "token_endpoint_auth_method": "none",
}


async def register(http: httpx2.AsyncClient, gateway: Gateway, body: Any) -> httpx2.Response:
    return await http.post(f"{gateway.base}{OAUTH}/register", json=body)


async def test_a_native_client_registers_and_gets_its_metadata_back(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await register(http, gateway, {**NATIVE, "client_name": "Claude", "scope": "user"})

    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["client_id"].startswith("dyn_")
    assert "client_secret" not in body
    assert body["redirect_uris"] == [REDIRECT]
    assert (body["client_name"], body["scope"]) == ("Claude", "user")
    assert isinstance(body["client_id_issued_at"], int)
    stored = await gateway.store.clients.get(body["client_id"])
    assert stored is not None
    assert (stored.kind, stored.token_endpoint_auth_method) == ("dynamic", "none")


async def test_a_web_client_gets_a_secret_shown_once_and_stored_as_a_hash(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    body = {"redirect_uris": ["https://app.example/callback"], "application_type": "web"}

    response = await register(http, gateway, body)

    assert response.status_code == 201
    secret = response.json()["client_secret"]
    assert response.json()["client_secret_expires_at"] == 0
    stored = await gateway.store.clients.get(response.json()["client_id"])
    assert stored is not None
    assert stored.token_endpoint_auth_method == "client_secret_basic"  # RFC 7591 §2 default
    assert stored.secret_hash is not None
    assert secret not in repr(stored)


@pytest.mark.parametrize(
    "body",
    [
        {**NATIVE, "application_type": "desktop"},
        {**NATIVE, "redirect_uris": []},
        {**NATIVE, "grant_types": ["client_credentials"]},
        {**NATIVE, "grant_types": ["implicit"]},
        {**NATIVE, "token_endpoint_auth_method": "private_key_jwt"},
        {**NATIVE, "scope": "user launch-missiles"},
        [NATIVE],
    ],
    ids=[
        "unknown application_type",
        "no redirect_uris",
        "client_credentials",
        "implicit",
        "unsupported auth method",
        "unknown scope",
        "not an object",
    ],
)
async def test_bad_metadata_is_refused_as_invalid_client_metadata(
    gateway: Gateway, http: httpx2.AsyncClient, body: Any
) -> None:
    before = await snapshot(gateway.store)

    response = await register(http, gateway, body)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_client_metadata")
    assert await snapshot(gateway.store) == before


@pytest.mark.parametrize(
    ("application_type", "uri"),
    [
        ("web", "http://app.example/callback"),
        ("web", "com.example.app:/callback"),
        ("native", "http://app.example/callback"),
        ("native", "javascript:alert(1)"),
        ("native", "https://app.example/callback#fragment"),
        ("native", "https://user:pw@app.example/callback"),
        ("native", "/relative/callback"),
    ],
)
async def test_a_redirect_uri_unfit_for_the_application_type_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient, application_type: str, uri: str
) -> None:
    before = await snapshot(gateway.store)
    body = {**NATIVE, "application_type": application_type, "redirect_uris": [uri]}

    response = await register(http, gateway, body)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_redirect_uri")
    assert await snapshot(gateway.store) == before


@pytest.mark.parametrize(
    "uri", ["com.example.app:/oauth", "http://127.0.0.1/callback", "http://[::1]:8000/cb"]
)
async def test_a_native_client_may_use_loopback_or_a_private_scheme(
    gateway: Gateway, http: httpx2.AsyncClient, uri: str
) -> None:
    response = await register(http, gateway, {**NATIVE, "redirect_uris": [uri]})

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("oauth_options", [{"max_dynamic_clients": 2}])
async def test_registration_beyond_the_cap_of_clients_in_use_is_refused_with_429(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    for _ in range(2):
        registered = await register_client(http, gateway.base)
        await gateway.store.clients.touch(registered["client_id"])  # it obtained a token
    before = await snapshot(gateway.store)

    response = await register(http, gateway, NATIVE)

    assert (response.status_code, response.json()["error"]) == (429, "temporarily_unavailable")
    assert response.headers["retry-after"].isdigit()
    assert await snapshot(gateway.store) == before


@pytest.mark.parametrize("oauth_options", [{"max_dynamic_clients": 2}])
async def test_registration_forgets_clients_that_never_obtained_a_token(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=2)
    for name in ("stale-1", "stale-2"):
        await gateway.store.clients.add(
            ClientRecord(
                client_id=name,
                kind="dynamic",
                redirect_uris=[REDIRECT],
                grant_types=["authorization_code"],
                application_type="native",
                token_endpoint_auth_method="none",
                metadata={},
                created_at=long_ago,
            )
        )

    response = await register(http, gateway, NATIVE)

    assert response.status_code == 201, response.text
    assert await gateway.store.clients.get("stale-1") is None
    assert await gateway.store.clients.get("stale-2") is None


async def test_a_client_cannot_choose_its_own_id_or_secret(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    body = await register_client(
        http, gateway.base, client_id="chosen", client_secret="chosen-secret"
    )

    assert body["client_id"] != "chosen"
    assert "client_secret" not in body  # a public client: no secret at all
    stored = await gateway.store.clients.get(body["client_id"])
    assert stored is not None
    assert "client_secret" not in stored.metadata
    assert "client_id" not in stored.metadata
