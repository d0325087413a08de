"""The token endpoint (RFC 6749 §3.2): codes with PKCE, refresh rotation, client credentials
and DPoP binding, through a running gateway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest

from atrium.auth.hashing import new_token, token_hash
from atrium.auth.issuing import confidential_client as confidential_record
from atrium.client.dpop import generate_key, make_proof
from atrium.store import CodeRecord, RefreshRecord
from tests.auth.flow import (
    CALLS,
    OAUTH,
    REDIRECT,
    Browser,
    Pkce,
    basic,
    bearer,
    call_tool,
    challenge,
    code_for,
    dpop,
    exchange_code,
    jwt_claims,
    refresh,
    register_client,
    snapshot,
    token_proof,
    tokens_for,
)
from tests.gateway.helpers import Gateway

Client = dict[str, Any]


async def confidential(gateway: Gateway, *scopes: str) -> tuple[str, str]:
    """A client an operator created (``atrium admin clients create``): its id and secret."""
    record, secret = confidential_record("billing bot", list(scopes), [])
    await gateway.store.clients.add(record)
    return record.client_id, secret


async def token_request(
    http: httpx2.AsyncClient, gateway: Gateway, data: dict[str, str], **headers: str
) -> httpx2.Response:
    return await http.post(f"{gateway.base}{OAUTH}/token", data=data, headers=headers)


# -- authorization code -------------------------------------------------------------------


async def test_a_token_response_is_never_cached(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    pkce = Pkce.new()
    code = await code_for(browser, gateway.base, client["client_id"], pkce)

    response = await exchange_code(http, gateway.base, client["client_id"], code, pkce.verifier)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert jwt_claims(body["access_token"])["aud"] == "mcp"  # no resource: the default audience


async def test_a_code_is_bound_to_its_redirect_uri(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    pkce = Pkce.new()
    code = await code_for(browser, gateway.base, client["client_id"], pkce)
    before = await snapshot(gateway.store)

    response = await exchange_code(
        http,
        gateway.base,
        client["client_id"],
        code,
        pkce.verifier,
        redirect_uri="http://127.0.0.1:5000/callback",
    )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert await snapshot(gateway.store) == before


async def test_an_expired_code_is_refused(
    gateway: Gateway, client: Client, http: httpx2.AsyncClient
) -> None:
    pkce, code, user = Pkce.new(), new_token(), await gateway.store.users.by_username("user")
    assert user is not None
    a_minute_ago = datetime.now(UTC) - timedelta(minutes=1)
    await gateway.store.grants.add_code(
        CodeRecord(
            code_hash=token_hash(code),
            client_id=client["client_id"],
            user_id=user.id,
            redirect_uri=REDIRECT,
            code_challenge=pkce.challenge,
            scope="user",
            family_id="family-1",
            expires_at=a_minute_ago,
        )
    )
    before = await snapshot(gateway.store)

    response = await exchange_code(http, gateway.base, client["client_id"], code, pkce.verifier)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert await snapshot(gateway.store) == before


async def test_a_resource_the_user_did_not_authorize_is_refused_at_the_token_endpoint(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    pkce = Pkce.new()
    code = await code_for(
        browser, gateway.base, client["client_id"], pkce, resource=gateway.url("users")
    )
    before = await snapshot(gateway.store)

    response = await exchange_code(
        http, gateway.base, client["client_id"], code, pkce.verifier, resource=gateway.url("admins")
    )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_target")
    assert await snapshot(gateway.store) == before


@pytest.mark.parametrize("grant_type", ["password", "implicit", ""])
async def test_grants_other_than_the_three_are_unsupported(
    gateway: Gateway, client: Client, http: httpx2.AsyncClient, grant_type: str
) -> None:
    data = {"grant_type": grant_type, "client_id": client["client_id"]}

    response = await token_request(http, gateway, {**data, "username": "user", "password": "x"})

    assert (response.status_code, response.json()["error"]) == (400, "unsupported_grant_type")


async def test_a_repeated_parameter_or_a_json_body_is_an_invalid_request(
    gateway: Gateway, client: Client, http: httpx2.AsyncClient
) -> None:
    repeated = await http.post(
        f"{gateway.base}{OAUTH}/token",
        content=f"grant_type=authorization_code&code=a&code=b&client_id={client['client_id']}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    as_json = await http.post(
        f"{gateway.base}{OAUTH}/token",
        json={"grant_type": "authorization_code", "client_id": client["client_id"]},
    )

    assert (repeated.status_code, repeated.json()["error"]) == (400, "invalid_request")
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")


async def test_only_an_issued_token_marks_a_client_used(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    # An unused dynamic client is forgotten; failed requests must not keep it alive.
    failed = await exchange_code(http, gateway.base, client["client_id"], "nope", "x" * 43)
    assert failed.status_code == 400
    stored = await gateway.store.clients.get(client["client_id"])
    assert stored is not None
    assert stored.last_used_at is None

    await tokens_for(browser, http, gateway.base, client["client_id"])

    stored = await gateway.store.clients.get(client["client_id"])
    assert stored is not None
    assert stored.last_used_at is not None


# -- refresh ------------------------------------------------------------------------------


async def test_a_refresh_rotates_the_refresh_token(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(browser, http, gateway.base, client["client_id"])

    response = await refresh(http, gateway.base, client["client_id"], tokens["refresh_token"])

    assert response.status_code == 200, response.text
    fresh = response.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert fresh["scope"] == tokens["scope"]
    old = await gateway.store.grants.get_refresh(token_hash(tokens["refresh_token"]))
    assert old is not None
    assert old.rotated_at is not None


async def test_a_rotated_refresh_token_used_again_revokes_its_whole_family(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    server = gateway.url("users")
    tokens = await tokens_for(browser, http, gateway.base, client["client_id"], resource=server)
    fresh = (await refresh(http, gateway.base, client["client_id"], tokens["refresh_token"])).json()

    replay = await refresh(http, gateway.base, client["client_id"], tokens["refresh_token"])

    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    # RFC 9700 §4.14.2: the server cannot tell thief from client, so the successor dies too.
    successor = await refresh(http, gateway.base, client["client_id"], fresh["refresh_token"])
    assert (successor.status_code, successor.json()["error"]) == (400, "invalid_grant")
    call = await call_tool(http, server, "echo", bearer(fresh["access_token"]))
    assert (call.status_code, challenge(call)["error"]) == (401, "invalid_token")


async def test_a_refresh_may_narrow_the_scope(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(
        browser, http, gateway.base, client["client_id"], username="admin", scope="user admin"
    )
    assert tokens["scope"] == "admin user"

    response = await refresh(
        http, gateway.base, client["client_id"], tokens["refresh_token"], scope="user"
    )

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "user"


async def test_a_refresh_gives_no_more_than_the_users_role_grants_today(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(
        browser, http, gateway.base, client["client_id"], scope="user tools:write"
    )
    assert tokens["scope"] == "tools:write user"
    await gateway.store.users.set_role("user", "reader")

    response = await refresh(http, gateway.base, client["client_id"], tokens["refresh_token"])

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "user"


async def test_a_disabled_users_refresh_token_is_refused(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(browser, http, gateway.base, client["client_id"])
    await gateway.store.users.set_disabled("user", True)
    before = await snapshot(gateway.store)

    response = await refresh(http, gateway.base, client["client_id"], tokens["refresh_token"])

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert await snapshot(gateway.store) == before


async def test_a_revoked_clients_refresh_token_is_refused(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(browser, http, gateway.base, client["client_id"])
    await gateway.store.clients.revoke(client["client_id"])
    before = await snapshot(gateway.store)

    response = await refresh(http, gateway.base, client["client_id"], tokens["refresh_token"])

    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert await snapshot(gateway.store) == before


# -- client credentials -------------------------------------------------------------------


async def test_a_confidential_client_gets_a_token_with_basic_auth_and_calls_a_tool(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    client_id, secret = await confidential(gateway, "user", "tools:write")
    data = {"grant_type": "client_credentials", "resource": gateway.url("users")}

    response = await token_request(http, gateway, data, **basic(client_id, secret))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["token_type"], body["scope"]) == ("Bearer", "tools:write user")
    assert "refresh_token" not in body
    call = await call_tool(http, gateway.url("users"), "echo", bearer(body["access_token"]))
    assert call.status_code == 200, call.text
    (record,) = await gateway.audit_of("users")
    assert (record.subject, record.client_id) == (client_id, client_id)


async def test_a_confidential_client_may_send_its_secret_in_the_body(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    client_id, secret = await confidential(gateway, "user")
    data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}

    response = await token_request(http, gateway, data)

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("credentials", ["wrong secret", "no secret", "another client's"])
async def test_a_confidential_client_with_wrong_credentials_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient, credentials: str
) -> None:
    client_id, secret = await confidential(gateway, "user")
    _, other_secret = await confidential(gateway, "user")
    headers = {
        "wrong secret": basic(client_id, secret[:-3] + "abc"),
        "no secret": {},
        "another client's": basic(client_id, other_secret),
    }[credentials]
    data = {"grant_type": "client_credentials"} | ({} if headers else {"client_id": client_id})
    before = await snapshot(gateway.store)

    response = await token_request(http, gateway, data, **headers)

    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert "www-authenticate" in response.headers
    assert await snapshot(gateway.store) == before


async def test_client_credentials_cannot_ask_beyond_the_clients_scopes(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    client_id, secret = await confidential(gateway, "user")
    data = {"grant_type": "client_credentials", "scope": "user admin"}

    response = await token_request(http, gateway, data, **basic(client_id, secret))

    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")


async def test_a_public_client_may_not_use_client_credentials(
    gateway: Gateway, client: Client, http: httpx2.AsyncClient
) -> None:
    before = await snapshot(gateway.store)
    data = {"grant_type": "client_credentials", "client_id": client["client_id"]}

    response = await token_request(http, gateway, data)

    assert (response.status_code, response.json()["error"]) == (400, "unauthorized_client")
    assert await snapshot(gateway.store) == before


async def test_a_revoked_confidential_client_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    client_id, secret = await confidential(gateway, "user")
    await gateway.store.clients.revoke(client_id)

    response = await token_request(
        http, gateway, {"grant_type": "client_credentials"}, **basic(client_id, secret)
    )

    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


# -- DPoP binding -------------------------------------------------------------------------


@pytest.mark.parametrize("proof", ["none", "another key"])
async def test_dpop_jkt_binds_the_code_to_one_key(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient, proof: str
) -> None:
    key, pkce = generate_key(), Pkce.new()
    code = await code_for(
        browser, gateway.base, client["client_id"], pkce, dpop_jkt=key.thumbprint()
    )
    before = await snapshot(gateway.store)
    headers = token_proof(generate_key(), gateway.base) if proof == "another key" else None

    wrong = await exchange_code(
        http, gateway.base, client["client_id"], code, pkce.verifier, headers=headers
    )

    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_dpop_proof")
    assert await snapshot(gateway.store) == before
    right = await exchange_code(
        http,
        gateway.base,
        client["client_id"],
        code,
        pkce.verifier,
        headers=token_proof(key, gateway.base),
    )
    assert right.status_code == 200, right.text
    assert right.json()["token_type"] == "DPoP"
    assert jwt_claims(right.json()["access_token"])["cnf"] == {"jkt": key.thumbprint()}


async def test_a_public_clients_dpop_bound_refresh_token_needs_the_same_key(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    key, server = generate_key(), gateway.url("bound")
    tokens = await tokens_for(
        browser,
        http,
        gateway.base,
        client["client_id"],
        resource=server,
        headers=token_proof(key, gateway.base),
        scope=CALLS,
    )
    before = await snapshot(gateway.store)

    for headers in (None, token_proof(generate_key(), gateway.base)):
        refused = await refresh(
            http, gateway.base, client["client_id"], tokens["refresh_token"], headers=headers
        )
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_dpop_proof")
    assert await snapshot(gateway.store) == before

    response = await refresh(
        http,
        gateway.base,
        client["client_id"],
        tokens["refresh_token"],
        headers=token_proof(key, gateway.base),
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert (await call_tool(http, server, "echo", dpop(token, key, server))).status_code == 200


async def test_an_expired_refresh_token_is_refused(
    gateway: Gateway, client: Client, http: httpx2.AsyncClient
) -> None:
    token = new_token()
    await gateway.store.grants.add_refresh(
        RefreshRecord(
            token_hash=token_hash(token),
            family_id="family-1",
            client_id=client["client_id"],
            subject="user-1",
            scope="user",
            expires_at=datetime.now(UTC) - timedelta(seconds=1),
        )
    )
    before = await snapshot(gateway.store)

    response = await refresh(http, gateway.base, client["client_id"], token)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert await snapshot(gateway.store) == before


@pytest.mark.parametrize("oauth_options", [{"dpop_nonce": True}])
async def test_with_dpop_nonces_the_token_endpoint_asks_for_one_and_takes_the_retry(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    key, pkce = generate_key(), Pkce.new()
    code = await code_for(browser, gateway.base, client["client_id"], pkce)
    url = f"{gateway.base}{OAUTH}/token"

    first = await exchange_code(
        http,
        gateway.base,
        client["client_id"],
        code,
        pkce.verifier,
        headers=token_proof(key, gateway.base),
    )

    assert (first.status_code, first.json()["error"]) == (400, "use_dpop_nonce")  # RFC 9449 §8
    nonce = first.headers["dpop-nonce"]
    retry = await exchange_code(
        http,
        gateway.base,
        client["client_id"],
        code,
        pkce.verifier,
        headers={"DPoP": make_proof(key, method="POST", url=url, nonce=nonce)},
    )
    assert retry.status_code == 200, retry.text
    assert retry.json()["token_type"] == "DPoP"


async def test_a_resource_named_only_at_the_token_endpoint_is_refused(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    pkce = Pkce.new()
    code = await code_for(browser, gateway.base, client["client_id"], pkce)  # no resource
    before = await snapshot(gateway.store)

    response = await exchange_code(
        http, gateway.base, client["client_id"], code, pkce.verifier, resource=gateway.url("users")
    )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_target")
    assert await snapshot(gateway.store) == before


async def test_a_clients_registered_scope_bounds_what_a_user_grants_it(
    gateway: Gateway, browser: Browser, http: httpx2.AsyncClient
) -> None:
    narrow = await register_client(http, gateway.base, scope="tools:read")

    body = await tokens_for(
        browser, http, gateway.base, narrow["client_id"], username="admin", scope="admin tools:read"
    )

    assert body["scope"] == "tools:read"
