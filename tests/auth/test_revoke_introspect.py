"""Token revocation (RFC 7009) and introspection (RFC 7662) against a running gateway."""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest

from atrium.auth.access_tokens import TokenIssuer
from atrium.auth.issuing import confidential_client as confidential_record
from atrium.client.dpop import generate_key
from tests.auth.flow import (
    CALLS,
    OAUTH,
    Browser,
    basic,
    bearer,
    call_tool,
    refresh,
    register_client,
    snapshot,
    token_proof,
    tokens_for,
)
from tests.gateway.helpers import Gateway

Client = dict[str, Any]


async def resource_server(gateway: Gateway) -> dict[str, str]:
    """Basic credentials of a confidential client an operator created, as a header."""
    record, secret = confidential_record("a resource server", [], [])
    await gateway.store.clients.add(record)
    return basic(record.client_id, secret)


async def introspect(
    http: httpx2.AsyncClient, gateway: Gateway, token: str, headers: dict[str, str]
) -> httpx2.Response:
    return await http.post(
        f"{gateway.base}{OAUTH}/introspect", data={"token": token}, headers=headers
    )


async def revoke(
    http: httpx2.AsyncClient, gateway: Gateway, client_id: str, token: str
) -> httpx2.Response:
    data = {"token": token, "client_id": client_id}
    return await http.post(f"{gateway.base}{OAUTH}/revoke", data=data)


# -- revocation ---------------------------------------------------------------------------


async def test_revoking_an_unknown_token_answers_200_and_changes_nothing(
    gateway: Gateway, client: Client, http: httpx2.AsyncClient
) -> None:
    before = await snapshot(gateway.store)

    for token in ("not-a-token", "a.b.c", gateway.token("users", "user") + "x"):
        response = await revoke(http, gateway, client["client_id"], token)
        assert response.status_code == 200  # RFC 7009 §2.2: tells nothing about what exists

    assert await snapshot(gateway.store) == before


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
async def test_a_client_cannot_revoke_another_clients_token(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient, kind: str
) -> None:
    server = gateway.url("users")
    tokens = await tokens_for(
        browser, http, gateway.base, client["client_id"], resource=server, scope=CALLS
    )
    other = await register_client(http, gateway.base)
    before = await snapshot(gateway.store)

    response = await revoke(http, gateway, other["client_id"], tokens[kind])

    assert (response.status_code, response.json()["error"]) == (400, "unauthorized_client")
    assert await snapshot(gateway.store) == before
    assert (
        await call_tool(http, server, "echo", bearer(tokens["access_token"]))
    ).status_code == 200


async def test_revocation_needs_the_token_and_a_known_client(
    gateway: Gateway, client: Client, http: httpx2.AsyncClient
) -> None:
    no_token = await http.post(
        f"{gateway.base}{OAUTH}/revoke", data={"client_id": client["client_id"]}
    )
    no_client = await revoke(http, gateway, "dyn_nobody", "whatever")

    assert (no_token.status_code, no_token.json()["error"]) == (400, "invalid_request")
    assert (no_client.status_code, no_client.json()["error"]) == (401, "invalid_client")


# -- introspection ------------------------------------------------------------------------


async def test_introspection_needs_a_confidential_client(
    gateway: Gateway, client: Client, http: httpx2.AsyncClient
) -> None:
    token = gateway.token("users", "user")
    before = await snapshot(gateway.store)

    public = await http.post(
        f"{gateway.base}{OAUTH}/introspect", data={"token": token, "client_id": client["client_id"]}
    )
    anonymous = await introspect(http, gateway, token, {})

    assert (public.status_code, public.json()["error"]) == (401, "invalid_client")
    # RFC 6749 §5.2: "no client authentication included" is invalid_client too.
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "invalid_client")
    assert "active" not in public.json()
    assert await snapshot(gateway.store) == before


async def test_an_active_access_token_is_described(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    server = gateway.url("users")
    tokens = await tokens_for(browser, http, gateway.base, client["client_id"], resource=server)
    user = await gateway.store.users.by_username("user")
    assert user is not None

    response = await introspect(
        http, gateway, tokens["access_token"], await resource_server(gateway)
    )

    assert response.status_code == 200
    body = response.json()
    assert body["active"] is True
    assert (body["sub"], body["client_id"], body["scope"]) == (user.id, client["client_id"], "user")
    assert (body["aud"], body["iss"], body["token_type"]) == ([server], gateway.base, "Bearer")
    assert body["exp"] > time.time()


async def test_a_revoked_access_token_is_inactive(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(browser, http, gateway.base, client["client_id"])
    credentials = await resource_server(gateway)
    assert (await introspect(http, gateway, tokens["access_token"], credentials)).json()["active"]

    await revoke(http, gateway, client["client_id"], tokens["access_token"])

    response = await introspect(http, gateway, tokens["access_token"], credentials)
    assert response.json() == {"active": False}


async def test_a_refresh_token_is_active_until_rotated(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(browser, http, gateway.base, client["client_id"])
    credentials = await resource_server(gateway)
    active = (await introspect(http, gateway, tokens["refresh_token"], credentials)).json()
    assert (active["active"], active["token_type"]) == (True, "refresh_token")
    assert active["client_id"] == client["client_id"]

    fresh = await refresh(http, gateway.base, client["client_id"], tokens["refresh_token"])

    rotated = await introspect(http, gateway, tokens["refresh_token"], credentials)
    assert rotated.json() == {"active": False}
    successor = await introspect(http, gateway, fresh.json()["refresh_token"], credentials)
    assert successor.json()["active"] is True


async def test_a_revoked_refresh_token_is_inactive(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(browser, http, gateway.base, client["client_id"])
    credentials = await resource_server(gateway)

    await revoke(http, gateway, client["client_id"], tokens["refresh_token"])

    for token in (tokens["refresh_token"], tokens["access_token"]):
        assert (await introspect(http, gateway, token, credentials)).json() == {"active": False}


async def test_expired_garbled_and_unknown_tokens_are_inactive(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    auth = gateway.parts.auth
    issuer = TokenIssuer(auth.keys, auth.issuer, ttl_s=600, clock=lambda: time.time() - 3600)
    expired, _ = issuer.mint(subject="u", client_id="c", audience=["mcp"], scopes=["user"])
    credentials = await resource_server(gateway)

    for token in (expired, gateway.token("users", "user")[:-4] + "AAAA", "unknown", "a.b.c"):
        response = await introspect(http, gateway, token, credentials)
        assert response.json() == {"active": False}, token


async def test_a_dpop_bound_token_is_described_with_its_key(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    key = generate_key()
    tokens = await tokens_for(
        browser, http, gateway.base, client["client_id"], headers=token_proof(key, gateway.base)
    )

    response = await introspect(
        http, gateway, tokens["access_token"], await resource_server(gateway)
    )

    body = response.json()
    assert (body["token_type"], body["cnf"]) == ("DPoP", {"jkt": key.thumbprint()})


async def test_a_confidential_client_must_authenticate_to_revoke(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    record, secret = confidential_record("a machine", ["user"], [])
    await gateway.store.clients.add(record)
    data = {"grant_type": "client_credentials"}
    issued = await http.post(
        f"{gateway.base}{OAUTH}/token", data=data, headers=basic(record.client_id, secret)
    )
    token = issued.json()["access_token"]
    before = await snapshot(gateway.store)

    response = await http.post(
        f"{gateway.base}{OAUTH}/revoke",
        data={"token": token},
        headers=basic(record.client_id, secret + "x"),
    )

    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert await snapshot(gateway.store) == before


async def test_a_self_registered_client_with_a_secret_may_not_introspect(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    registered = await register_client(
        http, gateway.base, token_endpoint_auth_method="client_secret_basic"
    )
    token = gateway.token("users", "user")

    response = await introspect(
        http, gateway, token, basic(registered["client_id"], registered["client_secret"])
    )

    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
