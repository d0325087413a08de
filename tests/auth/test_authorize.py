"""The authorization endpoint (RFC 6749 §4.1.1, OAuth 2.1 §4.1) with its sign-in and consent
pages, played by a browser against a running gateway."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.auth.flow import (
    OAUTH,
    PASSWORD,
    REDIRECT,
    Browser,
    Pkce,
    authorize_url,
    exchange_code,
    form_fields,
    redirect_query,
    register_client,
    snapshot,
)
from tests.gateway.helpers import Gateway

Client = dict[str, Any]


async def test_the_answer_carries_the_state_and_the_issuer(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    state = "a state with spaces & ampersands=yes"
    url = authorize_url(gateway.base, client["client_id"], Pkce.new(), state=state)

    back = await browser.consent_redirect(url, "user", PASSWORD)

    assert back["state"] == state
    assert back["iss"] == gateway.base  # RFC 9207
    assert back["code"]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "user launch-missiles"}, "invalid_scope"),
        ({"resource": "http://evil.example/api/v1/mcp/users/mcp"}, "invalid_target"),
        ({"resource": "http://127.0.0.1:1/api/v1/mcp/nobody/mcp"}, "invalid_target"),
        ({"resource": "http://[::1/api/v1/mcp/users/mcp"}, "invalid_target"),
    ],
    ids=["implicit", "unknown scope", "foreign resource", "unknown server", "no URL"],
)
async def test_a_bad_request_from_a_known_client_goes_back_with_its_error(
    gateway: Gateway, browser: Browser, client: Client, params: dict[str, str], error: str
) -> None:
    url = authorize_url(gateway.base, client["client_id"], Pkce.new(), state="s-2", **params)
    before = await snapshot(gateway.store)

    response = await browser.authorize_url(url)

    assert response.status_code == 303
    assert response.headers["location"].startswith(f"{REDIRECT}?")
    back = redirect_query(response.headers["location"])
    assert (back["error"], back["state"], back["iss"]) == (error, "s-2", gateway.base)
    assert await snapshot(gateway.store) == before


@pytest.mark.parametrize(
    "repeated",
    [
        "redirect_uri=http://evil.example/callback",
        "client_id=dyn_other",
        "code_challenge_method=plain",
        "dpop_jkt=another-key",
        "state=another",
    ],
)
async def test_a_repeated_parameter_gets_an_error_page(
    gateway: Gateway, browser: Browser, client: Client, repeated: str
) -> None:
    # RFC 6749 §3.1: which of two values would count is ambiguous, so neither does.
    url = authorize_url(gateway.base, client["client_id"], Pkce.new(), dpop_jkt="a-key")
    before = await snapshot(gateway.store)

    response = await browser.authorize_url(f"{url}&{repeated}")

    assert response.status_code == 400
    assert "location" not in response.headers
    assert await snapshot(gateway.store) == before


async def test_redirect_uri_may_be_left_out_only_when_one_is_registered(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    two = await register_client(
        http, gateway.base, redirect_uris=[REDIRECT, "http://127.0.0.1:4999/other"]
    )

    def without_redirect(client_id: str) -> str:
        url = authorize_url(gateway.base, client_id, Pkce.new())
        return url.replace("redirect_uri=http%3A%2F%2F127.0.0.1%3A4999%2Fcallback&", "")

    one_page = await browser.authorize_url(without_redirect(client["client_id"]))
    two_page = await browser.authorize_url(without_redirect(two["client_id"]))

    assert one_page.status_code == 200  # the sign-in page
    assert two_page.status_code == 400
    assert "location" not in two_page.headers


async def test_a_signed_in_user_goes_straight_to_consent(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    await browser.consent_redirect(
        authorize_url(gateway.base, client["client_id"], Pkce.new()), "user", PASSWORD
    )

    page = await browser.authorize_url(authorize_url(gateway.base, client["client_id"], Pkce.new()))

    assert page.status_code == 200
    assert f'action="{OAUTH}/consent"' in page.text
    back = redirect_query((await browser.decide(page)).headers["location"])
    assert back["code"]


async def test_consent_grants_only_the_scopes_the_user_holds(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    pkce = Pkce.new()
    url = authorize_url(gateway.base, client["client_id"], pkce, scope="user tools:write admin")

    back = await browser.consent_redirect(url, "reader", PASSWORD)

    tokens = await exchange_code(
        http, gateway.base, client["client_id"], back["code"], pkce.verifier
    )
    assert tokens.json()["scope"] == "user"


async def test_a_user_holding_none_of_the_scopes_gets_invalid_scope_and_no_code(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    url = authorize_url(gateway.base, client["client_id"], Pkce.new(), scope="admin")
    before = await snapshot(gateway.store)

    back = await browser.consent_redirect(url, "reader", PASSWORD)

    assert back["error"] == "invalid_scope"
    assert "code" not in back
    assert await snapshot(gateway.store) == before


async def test_a_consent_posted_without_a_session_issues_no_code(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    url = authorize_url(gateway.base, client["client_id"], Pkce.new())
    consent = await browser.sign_in(await browser.authorize_url(url), "user", PASSWORD)
    del browser.http.cookies["atrium_session"]
    before = await snapshot(gateway.store)

    response = await browser.decide(consent)

    assert response.status_code == 401
    assert f'action="{OAUTH}/login"' in response.text
    assert await snapshot(gateway.store) == before


async def test_a_user_disabled_after_signing_in_cannot_consent(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    url = authorize_url(gateway.base, client["client_id"], Pkce.new())
    consent = await browser.sign_in(await browser.authorize_url(url), "user", PASSWORD)
    await gateway.store.users.set_disabled("user", True)
    before = await snapshot(gateway.store)

    response = await browser.decide(consent)

    assert response.status_code == 401
    assert await snapshot(gateway.store) == before


async def test_a_tampered_pending_request_is_refused(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    login = await browser.authorize_url(
        authorize_url(gateway.base, client["client_id"], Pkce.new())
    )
    fields = dict(form_fields(login.text), username="user", password=PASSWORD)
    payload, mac = fields["request"].split(".")
    fields["request"] = f"{payload[:-2]}AA.{mac}"

    response = await browser.http.post(f"{gateway.base}{OAUTH}/login", data=fields)

    assert response.status_code == 400
    assert "atrium_session" not in browser.http.cookies


async def test_the_pages_cannot_be_framed_cached_or_run_scripts(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    page = await browser.authorize_url(authorize_url(gateway.base, client["client_id"], Pkce.new()))

    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none'
    assert page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie


async def test_repeated_wrong_passwords_are_throttled_even_for_the_right_one(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    login = await browser.authorize_url(
        authorize_url(gateway.base, client["client_id"], Pkce.new())
    )
    for _ in range(10):
        assert (await browser.sign_in(login, "user", "not the password")).status_code == 401

    throttled = await browser.sign_in(login, "user", PASSWORD)

    assert throttled.status_code == 429
    assert "atrium_session" not in browser.http.cookies
