"""The issue's attack list, played black-box against a running gateway.

Each attack is refused with the OAuth error (and HTTP status) its RFC names, and leaves the
authorization server's store as it was: no code spent, no token issued, no row touched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx2
import pytest
from joserfc.jwk import ECKey

from atrium.auth.access_tokens import TokenIssuer
from atrium.auth.hashing import token_hash
from atrium.auth.keys import KeySet
from atrium.client.dpop import generate_key, make_proof
from tests.auth.flow import (
    CALLS,
    OAUTH,
    PASSWORD,
    Browser,
    Pkce,
    authorize_url,
    bearer,
    call_tool,
    challenge,
    code_for,
    dpop,
    exchange_code,
    form_fields,
    jwt_claims,
    redirect_query,
    refresh,
    register_client,
    snapshot,
    token_proof,
    tokens_for,
)
from tests.gateway.helpers import Gateway

Client = dict[str, Any]


def _without(url: str, *names: str, **replaced: str) -> str:
    base, _, query = url.partition("?")
    params = {k: v for k, v in parse_qsl(query) if k not in names}
    return f"{base}?{urlencode({**params, **replaced})}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- the authorization code ---------------------------------------------------------------


async def test_a_reused_code_is_refused_and_revokes_the_tokens_it_gave(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    pkce, server = Pkce.new(), gateway.url("users")
    code = await code_for(
        browser, gateway.base, client["client_id"], pkce, resource=server, scope=CALLS
    )
    first = await exchange_code(http, gateway.base, client["client_id"], code, pkce.verifier)
    tokens = first.json()
    before = await call_tool(http, server, "echo", bearer(tokens["access_token"]))
    assert before.status_code == 200

    again = await exchange_code(http, gateway.base, client["client_id"], code, pkce.verifier)

    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    assert "access_token" not in again.json()
    refreshed = await refresh(http, gateway.base, client["client_id"], tokens["refresh_token"])
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")
    call = await call_tool(http, server, "echo", bearer(tokens["access_token"]))
    assert (call.status_code, challenge(call)["error"]) == (401, "invalid_token")
    stored = await gateway.store.grants.get_refresh(token_hash(tokens["refresh_token"]))
    assert stored is not None
    assert stored.revoked_at is not None


async def test_a_wrong_pkce_verifier_is_refused_and_leaves_the_code_unspent(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    pkce = Pkce.new()
    code = await code_for(browser, gateway.base, client["client_id"], pkce)
    before = await snapshot(gateway.store)

    wrong = await exchange_code(http, gateway.base, client["client_id"], code, Pkce.new().verifier)

    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert await snapshot(gateway.store) == before
    # By design the code is checked completely before it is spent (token_endpoint.py): the
    # client that holds the right verifier can still redeem it.
    right = await exchange_code(http, gateway.base, client["client_id"], code, pkce.verifier)
    assert right.status_code == 200, right.text


@pytest.mark.parametrize(
    ("dropped", "replaced"),
    [
        ((), {"code_challenge_method": "plain"}),
        (("code_challenge_method",), {}),
        (("code_challenge", "code_challenge_method"), {}),
    ],
    ids=["plain", "no method", "no challenge"],
)
async def test_a_pkce_downgrade_is_sent_back_as_invalid_request_and_issues_no_code(
    gateway: Gateway,
    browser: Browser,
    client: Client,
    dropped: tuple[str, ...],
    replaced: dict[str, str],
) -> None:
    pkce = Pkce.new()
    url = authorize_url(gateway.base, client["client_id"], pkce)
    if replaced.get("code_challenge_method") == "plain":
        replaced = {**replaced, "code_challenge": pkce.verifier}
    before = await snapshot(gateway.store)

    response = await browser.authorize_url(_without(url, *dropped, **replaced))

    assert response.status_code == 303
    back = redirect_query(response.headers["location"])
    assert back["error"] == "invalid_request"
    assert (back["state"], back["iss"]) == ("xyz", gateway.base)
    assert "code" not in back
    assert await snapshot(gateway.store) == before


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:4999/callback-evil",
        "http://127.0.0.1:4999/callback/x",
        "http://evil.example/callback",
        "http://127.0.0.1:4999@evil.example/callback",
        "http://localhost:4999/callback",
        "http://127.0.0.1:4999/callback?next=http://evil.example",
        "https://127.0.0.1:4999/callback",
    ],
)
async def test_a_redirect_uri_that_is_not_registered_gets_an_error_page_never_a_redirect(
    gateway: Gateway, browser: Browser, client: Client, redirect_uri: str
) -> None:
    url = authorize_url(gateway.base, client["client_id"], Pkce.new(), redirect_uri=redirect_uri)
    before = await snapshot(gateway.store)

    response = await browser.authorize_url(url)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert await snapshot(gateway.store) == before


async def test_a_loopback_redirect_on_another_port_is_allowed(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    # RFC 8252 §7.3: a native app listens on whatever ephemeral port it got.
    pkce, elsewhere = Pkce.new(), "http://127.0.0.1:51234/callback"
    url = authorize_url(gateway.base, client["client_id"], pkce, redirect_uri=elsewhere)

    login = await browser.authorize_url(url)
    back = await browser.decide(await browser.sign_in(login, "user", PASSWORD))

    assert back.headers["location"].startswith(f"{elsewhere}?")
    code = redirect_query(back.headers["location"])["code"]
    tokens = await exchange_code(
        http, gateway.base, client["client_id"], code, pkce.verifier, redirect_uri=elsewhere
    )
    assert tokens.status_code == 200, tokens.text


async def test_a_code_redeemed_by_another_client_is_refused_and_stays_unspent(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    pkce = Pkce.new()
    code = await code_for(browser, gateway.base, client["client_id"], pkce)
    thief = await register_client(http, gateway.base)
    before = await snapshot(gateway.store)

    stolen = await exchange_code(http, gateway.base, thief["client_id"], code, pkce.verifier)

    assert (stolen.status_code, stolen.json()["error"]) == (400, "invalid_grant")
    assert await snapshot(gateway.store) == before
    record = await gateway.store.grants.get_code(token_hash(code))
    assert record is not None
    assert record.used_at is None
    mine = await exchange_code(http, gateway.base, client["client_id"], code, pkce.verifier)
    assert mine.status_code == 200, mine.text


async def test_an_unknown_client_at_authorize_gets_an_error_page_never_a_redirect(
    gateway: Gateway, browser: Browser
) -> None:
    before = await snapshot(gateway.store)

    response = await browser.authorize_url(authorize_url(gateway.base, "dyn_nobody", Pkce.new()))

    assert response.status_code == 400
    assert "location" not in response.headers
    assert await snapshot(gateway.store) == before


# -- access tokens at the gateway ---------------------------------------------------------


async def test_a_token_for_one_server_is_refused_by_another(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(
        browser, http, gateway.base, client["client_id"], resource=gateway.url("users"), scope=CALLS
    )
    token = tokens["access_token"]
    assert (await call_tool(http, gateway.url("users"), "echo", bearer(token))).status_code == 200

    response = await call_tool(http, gateway.url("plain"), "echo", bearer(token))

    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_token")


async def test_an_expired_token_is_refused(gateway: Gateway, http: httpx2.AsyncClient) -> None:
    auth = gateway.parts.auth
    an_hour_ago = TokenIssuer(auth.keys, auth.issuer, ttl_s=600, clock=lambda: time.time() - 3600)
    token, _ = an_hour_ago.mint(
        subject="user-1",
        client_id="test-client",
        audience=[gateway.url("users")],
        scopes=["user"],
    )

    response = await call_tool(http, gateway.url("users"), "echo", bearer(token))

    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_token")


@pytest.mark.parametrize("how", ["signature", "payload", "truncated", "not a jwt"])
async def test_a_garbled_token_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient, how: str
) -> None:
    header, payload, signature = gateway.token("users", "user").split(".")
    flipped = "A" if signature[10] != "A" else "B"
    garbled = {
        "signature": f"{header}.{payload}.{signature[:10]}{flipped}{signature[11:]}",
        "payload": f"{header}.{payload[:-2]}xx.{signature}",
        "truncated": f"{header}.{payload}",
        "not a jwt": "let-me-in",
    }[how]

    response = await call_tool(http, gateway.url("users"), "echo", bearer(garbled))

    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_token")


async def test_an_unsigned_alg_none_token_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    claims = jwt_claims(gateway.token("users", "user"))
    header = {"alg": "none", "typ": "at+jwt"}
    token = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."

    response = await call_tool(http, gateway.url("users"), "echo", bearer(token))

    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_token")


@pytest.mark.parametrize("encoding", ["jwk json", "pem"])
async def test_an_hs256_token_keyed_with_the_public_key_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient, encoding: str
) -> None:
    # The classic algorithm confusion: HMAC "signed" with the key the server publishes.
    key = gateway.parts.auth.keys.signing
    public = (
        json.dumps(key.as_dict(private=False)).encode()
        if encoding == "jwk json"
        else key.as_bytes(private=False)
    )
    claims = jwt_claims(gateway.token("users", "user"))
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()

    response = await call_tool(
        http, gateway.url("users"), "echo", bearer(f"{signing_input}.{_b64(mac)}")
    )

    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_token")


async def test_a_client_outside_the_servers_client_id_is_forbidden(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    server = gateway.url("one-client")
    tokens = await tokens_for(browser, http, gateway.base, client["client_id"], resource=server)
    the_one = gateway.token("one-client", "user", "tools:write", client_id="the-only-one")
    assert (await call_tool(http, server, "echo", bearer(the_one))).status_code == 200

    response = await call_tool(http, server, "echo", bearer(tokens["access_token"]))

    assert response.status_code == 403
    assert challenge(response)["error"] == "access_denied"


# -- refresh tokens -----------------------------------------------------------------------


async def test_a_refresh_that_asks_for_more_scope_is_refused(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    # The admin holds "admin", but this grant gave only "user" (RFC 6749 §6).
    tokens = await tokens_for(browser, http, gateway.base, client["client_id"], username="admin")
    assert tokens["scope"] == "user"
    before = await snapshot(gateway.store)

    wider = await refresh(
        http, gateway.base, client["client_id"], tokens["refresh_token"], scope="user admin"
    )

    assert (wider.status_code, wider.json()["error"]) == (400, "invalid_scope")
    assert await snapshot(gateway.store) == before


async def test_a_refresh_token_presented_by_another_client_is_refused(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(browser, http, gateway.base, client["client_id"])
    thief = await register_client(http, gateway.base)
    before = await snapshot(gateway.store)

    stolen = await refresh(http, gateway.base, thief["client_id"], tokens["refresh_token"])

    assert (stolen.status_code, stolen.json()["error"]) == (400, "invalid_grant")
    assert await snapshot(gateway.store) == before
    mine = await refresh(http, gateway.base, client["client_id"], tokens["refresh_token"])
    assert mine.status_code == 200, mine.text


async def test_a_revoked_access_token_is_refused_by_the_gateway(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    server = gateway.url("users")
    tokens = await tokens_for(
        browser, http, gateway.base, client["client_id"], resource=server, scope=CALLS
    )
    token = tokens["access_token"]
    assert (await call_tool(http, server, "echo", bearer(token))).status_code == 200

    revoked = await http.post(
        f"{gateway.base}{OAUTH}/revoke", data={"token": token, "client_id": client["client_id"]}
    )

    assert revoked.status_code == 200
    response = await call_tool(http, server, "echo", bearer(token))
    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_token")


async def test_a_revoked_refresh_token_no_longer_refreshes(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    server = gateway.url("users")
    tokens = await tokens_for(browser, http, gateway.base, client["client_id"], resource=server)
    data = {"token": tokens["refresh_token"], "client_id": client["client_id"]}

    revoked = await http.post(f"{gateway.base}{OAUTH}/revoke", data=data)

    assert revoked.status_code == 200
    response = await refresh(http, gateway.base, client["client_id"], tokens["refresh_token"])
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    # RFC 7009 §2.1: the access tokens of the same grant go with it.
    call = await call_tool(http, server, "echo", bearer(tokens["access_token"]))
    assert (call.status_code, challenge(call)["error"]) == (401, "invalid_token")


# -- DPoP -----------------------------------------------------------------------------------


async def _bound_tokens(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient, key: Any
) -> dict[str, Any]:
    tokens = await tokens_for(
        browser,
        http,
        gateway.base,
        client["client_id"],
        resource=gateway.url("bound"),
        headers=token_proof(key, gateway.base),
        scope=CALLS,
    )
    assert tokens["token_type"] == "DPoP"
    return tokens


async def test_a_dpop_bound_token_presented_as_bearer_is_refused(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    key, server = generate_key(), gateway.url("bound")
    token = (await _bound_tokens(gateway, browser, client, http, key))["access_token"]
    assert (await call_tool(http, server, "echo", dpop(token, key, server))).status_code == 200

    response = await call_tool(http, server, "echo", bearer(token))

    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_token")


async def test_a_dpop_bound_token_with_a_proof_from_another_key_is_refused(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    key, server = generate_key(), gateway.url("bound")
    token = (await _bound_tokens(gateway, browser, client, http, key))["access_token"]

    response = await call_tool(http, server, "echo", dpop(token, generate_key(), server))

    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_dpop_proof")


async def test_a_replayed_dpop_proof_is_refused(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    key, server = generate_key(), gateway.url("bound")
    token = (await _bound_tokens(gateway, browser, client, http, key))["access_token"]
    headers = dpop(token, key, server)
    assert (await call_tool(http, server, "echo", headers)).status_code == 200

    replayed = await call_tool(http, server, "echo", headers)

    assert (replayed.status_code, challenge(replayed)["error"]) == (401, "invalid_dpop_proof")


@pytest.mark.parametrize("aimed_at", ["another method", "another server", "another host"])
async def test_a_dpop_proof_for_another_request_is_refused(
    gateway: Gateway,
    browser: Browser,
    client: Client,
    http: httpx2.AsyncClient,
    aimed_at: str,
) -> None:
    key, server = generate_key(), gateway.url("bound")
    token = (await _bound_tokens(gateway, browser, client, http, key))["access_token"]
    method, url = {
        "another method": ("GET", server),
        "another server": ("POST", gateway.url("plain")),
        "another host": ("POST", server.replace(urlsplit(server).hostname or "", "evil.example")),
    }[aimed_at]
    proof = make_proof(key, method=method, url=url, access_token=token)

    response = await call_tool(
        http, server, "echo", {"Authorization": f"DPoP {token}", "DPoP": proof}
    )

    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_dpop_proof")


# -- the sign-in pages --------------------------------------------------------------------


async def test_consent_denied_goes_back_as_access_denied_with_no_code(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    url = authorize_url(gateway.base, client["client_id"], Pkce.new(), state="s-1")
    before = await snapshot(gateway.store)

    back = await browser.consent_redirect(url, "user", PASSWORD, decision="deny")

    assert back["error"] == "access_denied"
    assert (back["state"], back["iss"]) == ("s-1", gateway.base)
    assert "code" not in back
    assert await snapshot(gateway.store) == before


@pytest.mark.parametrize("forgery", ["no csrf cookie", "wrong csrf field", "no csrf field"])
async def test_a_sign_in_form_without_its_csrf_pair_is_refused_and_signs_no_one_in(
    gateway: Gateway, browser: Browser, client: Client, forgery: str
) -> None:
    login = await browser.authorize_url(
        authorize_url(gateway.base, client["client_id"], Pkce.new())
    )
    fields = dict(form_fields(login.text), username="user", password=PASSWORD)
    if forgery == "no csrf cookie":
        browser.http.cookies.clear()
    elif forgery == "wrong csrf field":
        fields["csrf"] = fields["csrf"][:-4] + "AAAA"
    else:
        del fields["csrf"]

    response = await browser.http.post(f"{gateway.base}{OAUTH}/login", data=fields)

    assert response.status_code == 400
    assert "atrium_session" not in response.cookies
    assert "atrium_session" not in browser.http.cookies


async def test_a_wrong_password_is_refused_and_signs_no_one_in(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    login = await browser.authorize_url(
        authorize_url(gateway.base, client["client_id"], Pkce.new())
    )

    response = await browser.sign_in(login, "user", PASSWORD + "!")

    assert response.status_code == 401
    assert "atrium_session" not in browser.http.cookies
    assert 'action="/api/v1/core/oauth/login"' in response.text  # the login form, again


async def test_a_disabled_user_cannot_sign_in(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    await gateway.store.users.set_disabled("user", True)
    login = await browser.authorize_url(
        authorize_url(gateway.base, client["client_id"], Pkce.new())
    )
    before = await snapshot(gateway.store)

    response = await browser.sign_in(login, "user", PASSWORD)

    assert response.status_code == 401
    assert "atrium_session" not in browser.http.cookies
    assert await snapshot(gateway.store) == before


async def test_a_token_naming_another_issuer_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    # Signed with the right key, so only the iss check can catch it.
    keys = gateway.parts.auth.keys
    token, _ = TokenIssuer(keys, "http://evil.example", ttl_s=600).mint(
        subject="user-1", client_id="test-client", audience=[gateway.url("users")], scopes=["user"]
    )

    response = await call_tool(http, gateway.url("users"), "echo", bearer(token))

    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_token")


async def test_a_token_signed_with_another_key_under_our_kid_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    auth = gateway.parts.auth
    kid = auth.keys.signing.kid
    assert kid is not None
    forged_key = ECKey.generate_key("P-256", parameters={"kid": kid})
    token, _ = TokenIssuer(KeySet([forged_key]), auth.issuer, ttl_s=600).mint(
        subject="user-1", client_id="test-client", audience=[gateway.url("users")], scopes=["user"]
    )

    response = await call_tool(http, gateway.url("users"), "echo", bearer(token))

    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_token")


async def test_a_dpop_proof_presented_as_an_access_token_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    proof = make_proof(generate_key(), method="POST", url=gateway.url("users"))

    response = await call_tool(http, gateway.url("users"), "echo", bearer(proof))

    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_token")


async def test_a_dpop_proof_replayed_at_the_token_endpoint_is_refused_and_spends_nothing(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    key, pkce = generate_key(), Pkce.new()
    proof = token_proof(key, gateway.base)
    await tokens_for(browser, http, gateway.base, client["client_id"], headers=proof)
    async with Browser.open(gateway.base) as another:
        code = await code_for(another, gateway.base, client["client_id"], pkce)
    before = await snapshot(gateway.store)

    replayed = await exchange_code(
        http, gateway.base, client["client_id"], code, pkce.verifier, headers=proof
    )

    assert (replayed.status_code, replayed.json()["error"]) == (400, "invalid_dpop_proof")
    assert await snapshot(gateway.store) == before


async def test_a_client_name_cannot_inject_markup_into_the_sign_in_pages(
    gateway: Gateway, browser: Browser, http: httpx2.AsyncClient
) -> None:
    evil = await register_client(http, gateway.base, client_name='<script>alert("x")</script>')

    login = await browser.authorize_url(authorize_url(gateway.base, evil["client_id"], Pkce.new()))
    consent = await browser.sign_in(login, "user", PASSWORD)

    for page in (login, consent):
        assert "<script>" not in page.text
        assert "&lt;script&gt;" in page.text
