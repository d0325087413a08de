"""Ending what was granted, attacked through a running gateway: a rotated-out signing key, a
revoked token waiting out the purge, a token minted to outlive anything Atrium issues, JOSE
headers built to crash the verifier, and sign-in sessions that must end when told to.

The ``atrium admin`` commands run here in-process against the test project; with no
supervisor to poke, the tests reload the gateway as its poll does (``GatewayParts.reload_auth``).
``tests/cli/test_admin_running.py`` plays the same changes against ``atrium start``, where
the command itself makes the very next request see them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from socket import socket
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc.jwk import ECKey

from atrium.auth.access_tokens import LEEWAY_S, MAX_LIFETIME_S, TokenIssuer
from atrium.auth.dpop import thumbprint
from atrium.auth.issuing import confidential_client as confidential_record
from atrium.client.dpop import generate_key, make_proof
from atrium.gateway.app import create_app
from atrium.settings import Settings
from atrium.store import Store
from atrium.store.grants import REVOCATION_MARGIN
from tests.auth.conftest import AUTH_SERVERS
from tests.auth.flow import (
    OAUTH,
    Browser,
    Pkce,
    authorize_url,
    basic,
    bearer,
    call_tool,
    challenge,
    form_fields,
    jwt_claims,
    register_client,
)
from tests.cli.helpers import CliResult, run_atrium
from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway, server_record, serving, uvicorn_server

Client = dict[str, Any]
CONSENT_FORM = f'action="{OAUTH}/consent"'
LOGIN_FORM = f'action="{OAUTH}/login"'


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def admin_token(gateway: Gateway, **changes: Any) -> str:
    """A token for the ``admins`` server (scope admin), which lets its holder call any tool."""
    return gateway.token("admins", "admin", audience="mcp", **changes)


async def call(http: httpx2.AsyncClient, gateway: Gateway, token: str) -> httpx2.Response:
    return await call_tool(http, gateway.url("admins"), "echo", bearer(token))


async def refused(http: httpx2.AsyncClient, gateway: Gateway, token: str) -> bool:
    """Whether the gateway answers the token 401 invalid_token (RFC 6750 §3.1)."""
    response = await call(http, gateway, token)
    return (response.status_code, challenge(response).get("error")) == (401, "invalid_token")


async def atrium_admin(settings: Settings, *args: str, stdin: str = "") -> CliResult:
    """``atrium admin ARGS`` on the test project, as its operator runs it."""

    def run() -> CliResult:
        saved, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            return run_atrium("--project", str(settings.project_dir), "admin", *args)
        finally:
            sys.stdin = saved

    result = await asyncio.to_thread(run)
    assert result.exit_code == 0, result.stderr
    return result


async def polled(gateway: Gateway) -> None:
    """What the gateway's watch loop does every 2 s: reload revocations and keys."""
    await gateway.parts.reload_auth()


# -- hole 1: a signing key rotated out ends its tokens, remembered ones too -------------------


async def test_a_remembered_token_is_refused_once_its_key_is_rotated_out(
    gateway: Gateway, settings: Settings, http: httpx2.AsyncClient
) -> None:
    token = admin_token(gateway)
    assert (await call(http, gateway, token)).status_code == 200  # verified, and remembered

    await atrium_admin(settings, "keys", "rotate")
    await polled(gateway)
    still_kept = await call(http, gateway, token)
    await atrium_admin(settings, "keys", "rotate")
    await polled(gateway)

    assert still_kept.status_code == 200  # one rotation: its key still verifies (overlap)
    assert await refused(http, gateway, token)
    assert (await call(http, gateway, admin_token(gateway))).status_code == 200  # the new key


# -- a lifetime no Atrium token has ----------------------------------------------------------


@pytest.mark.parametrize(
    ("backdated_s", "lifetime_s"),
    [(0, MAX_LIFETIME_S + 1), (40 * 86400, 40 * 86400 + 3600)],
    ids=["exp-too-far", "iat-long-ago"],
)
async def test_a_token_living_longer_than_any_atrium_issues_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient, backdated_s: int, lifetime_s: int
) -> None:
    # Signed with the gateway's own key: only the lifetime rule can catch it.
    auth = gateway.parts.auth
    issued = time.time() - backdated_s
    issuer = TokenIssuer(auth.keys, auth.issuer, ttl_s=lifetime_s, clock=lambda: issued)
    token, _ = issuer.mint(
        subject="user-1", client_id="test-client", audience=["mcp"], scopes=["admin"]
    )

    assert await refused(http, gateway, token)


async def test_a_token_of_the_longest_lifetime_the_cli_issues_is_accepted(
    gateway: Gateway, settings: Settings, http: httpx2.AsyncClient
) -> None:
    # The CLI mints for a server of the project's YAML: declare the one the gateway routes.
    server = {"binary": "gateway-backend", "port": 5001, **AUTH_SERVERS["admins"]}
    (settings.project_dir / "services/mcp").mkdir(parents=True, exist_ok=True)
    (settings.project_dir / "services/mcp/admins.yaml").write_text(
        json.dumps({"mcp_servers": {"admins": server}})
    )
    result = await atrium_admin(
        settings, "token", "issue", "--user", "admin", "--server", "admins", "--ttl", "2592000"
    )
    token = result.stdout.strip()

    claims = jwt_claims(token)
    assert claims["exp"] - claims["iat"] == MAX_LIFETIME_S
    # Its audience is the server's resource URL, which the admins server also accepts.
    response = await call_tool(http, gateway.url("admins"), "echo", bearer(token))
    assert response.status_code == 200, response.text


# -- item 3: a revoked token must not come back within the clock leeway ----------------------


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


@pytest.fixture
async def clocked(
    settings: Settings, backend: Backend, listener: socket
) -> AsyncIterator[tuple[Gateway, Clock]]:
    """A gateway whose clock, and whose store's, the test moves."""
    clock = Clock(time.time())
    async with await Store.open(settings, clock=clock.utc) as store:
        record = server_record("admins", {"port": backend.port, **AUTH_SERVERS["admins"]})
        await store.servers.save([record])
        app = create_app(settings, store=store, poll_s=60, clock=clock)
        async with serving(uvicorn_server(app, settings), listener) as served:
            yield Gateway(f"http://127.0.0.1:{served.port}", store, served, app), clock


async def test_a_revoked_token_stays_refused_through_the_leeway_after_the_purge(
    clocked: tuple[Gateway, Clock], http: httpx2.AsyncClient
) -> None:
    gateway, clock = clocked
    client = await register_client(http, gateway.base)
    revoked, kept = (admin_token(gateway, client_id=client["client_id"]) for _ in range(2))
    answer = await http.post(
        f"{gateway.base}{OAUTH}/revoke", data={"token": revoked, "client_id": client["client_id"]}
    )
    assert answer.status_code == 200
    await polled(gateway)  # as every replica has: from the store, not only in memory

    # Past exp, within the leeway the verifier grants; the purge runs and the list reloads.
    clock.now = jwt_claims(revoked)["exp"] + LEEWAY_S - 5
    await gateway.store.grants.purge_expired()
    await polled(gateway)

    assert (await call(http, gateway, kept)).status_code == 200  # the leeway holds
    assert await refused(http, gateway, revoked)


def test_the_stores_revocation_margin_outlasts_the_verifiers_leeway() -> None:
    assert REVOCATION_MARGIN.total_seconds() > LEEWAY_S


# -- tokens of `atrium admin token issue` are revocable like any other -----------------------


async def test_a_cli_token_is_revoked_at_the_endpoint_by_the_atrium_cli_client(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    token = admin_token(gateway, client_id="atrium-cli")
    assert (await call(http, gateway, token)).status_code == 200

    answer = await http.post(
        f"{gateway.base}{OAUTH}/revoke", data={"token": token, "client_id": "atrium-cli"}
    )

    assert answer.status_code == 200
    assert await refused(http, gateway, token)


async def test_the_atrium_cli_client_cannot_revoke_another_clients_token(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    token = admin_token(gateway, client_id="test-client")
    revoke = f"{gateway.base}{OAUTH}/revoke"

    other = await http.post(revoke, data={"token": token, "client_id": "atrium-cli"})
    secret = await http.post(
        revoke, data={"token": token, "client_id": "atrium-cli", "client_secret": "guess"}
    )

    assert (other.status_code, other.json()["error"]) == (400, "unauthorized_client")
    assert (secret.status_code, secret.json()["error"]) == (401, "invalid_client")
    assert (await call(http, gateway, token)).status_code == 200


# -- issue 19 item 4: a malformed JOSE header is invalid_token, never a crash ----------------


def signed(header: dict[str, Any], claims: dict[str, Any], key: ECKey) -> str:
    """A compact JWS of exactly this header, ES256-signed: no library tidies it up."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    assert key.private_key is not None
    der = key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def access_claims(gateway: Gateway) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": gateway.parts.auth.issuer,
        "sub": "user-1",
        "aud": "mcp",
        "client_id": "test-client",
        "scope": "admin",
        "jti": f"jti-{time.monotonic_ns()}",
        "iat": now,
        "exp": now + 600,
    }


Header = dict[str, Any]
# Each turns the header TokenIssuer writes into a malformed one (the real kid kept at hand).
HEADER_FAULTS: dict[str, Callable[[Header], Header]] = {
    "kid-list": lambda h: {**h, "kid": [h["kid"]]},
    "kid-object": lambda h: {**h, "kid": {h["kid"]: h["kid"]}},
    "kid-number": lambda h: {**h, "kid": 7},
    "kid-missing": lambda h: {name: h[name] for name in ("alg", "typ")},
    "alg-list": lambda h: {**h, "alg": ["ES256"]},
    "typ-object": lambda h: {**h, "typ": {"at+jwt": True}},
    "crit": lambda h: {**h, "crit": ["exp"]},
    "jku": lambda h: {**h, "jku": "https://attacker.example/jwks"},
}


@pytest.mark.parametrize("fault", list(HEADER_FAULTS))
async def test_a_token_with_a_malformed_header_member_is_invalid_token(
    gateway: Gateway, http: httpx2.AsyncClient, fault: str
) -> None:
    key = gateway.parts.auth.keys.signing
    header = HEADER_FAULTS[fault]({"alg": "ES256", "typ": "at+jwt", "kid": key.kid})
    token = signed(header, access_claims(gateway), key)

    assert await refused(http, gateway, token)
    revoke = await http.post(
        f"{gateway.base}{OAUTH}/revoke", data={"token": token, "client_id": "atrium-cli"}
    )
    assert revoke.status_code == 200  # RFC 7009 §2.2: an invalid token needs no revoking
    assert (await introspect(gateway, http, token)) == {"active": False}


async def introspect(gateway: Gateway, http: httpx2.AsyncClient, token: str) -> Any:
    record, secret = confidential_record("a resource server", [], [])
    await gateway.store.clients.add(record)
    response = await http.post(
        f"{gateway.base}{OAUTH}/introspect",
        data={"token": token},
        headers=basic(record.client_id, secret),
    )
    assert response.status_code == 200, response.text
    return response.json()


# Each turns the header of a good proof (RFC 9449 §4.2) into a malformed one.
PROOF_FAULTS: dict[str, Callable[[Header], Header]] = {
    "kid-list": lambda h: {**h, "kid": ["a"]},
    "kid-object": lambda h: {**h, "kid": {"a": 1}},
    "alg-list": lambda h: {**h, "alg": ["ES256"]},
    "typ-object": lambda h: {**h, "typ": {"dpop+jwt": True}},
    "jwk-list": lambda h: {**h, "jwk": ["EC"]},
    "jwk-crv-list": lambda h: {**h, "jwk": {**h["jwk"], "crv": ["P-256"]}},
    "jwk-x-number": lambda h: {**h, "jwk": {**h["jwk"], "x": 5}},
    "crit-object": lambda h: {**h, "crit": {"htm": 1}},
}


def _decoded(segment: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


@pytest.mark.parametrize("fault", list(PROOF_FAULTS))
async def test_a_dpop_proof_with_a_malformed_header_member_is_invalid_dpop_proof(
    gateway: Gateway, http: httpx2.AsyncClient, fault: str
) -> None:
    key = generate_key()
    server = gateway.url("bound")
    token = gateway.token("bound", "admin", jkt=thumbprint(key.as_dict(private=False)))
    good = make_proof(key, method="POST", url=server, access_token=token).split(".")
    proof = signed(PROOF_FAULTS[fault](_decoded(good[0])), _decoded(good[1]), key)

    response = await call_tool(
        http, server, "echo", {"Authorization": f"DPoP {token}", "DPoP": proof}
    )

    assert (response.status_code, challenge(response).get("error")) == (401, "invalid_dpop_proof")


# -- item 4: sign-in sessions end when told to -----------------------------------------------


async def consent_page(browser: Browser, gateway: Gateway, client: Client) -> httpx2.Response:
    """Sign ``user`` in: the consent page, with the session cookie set."""
    login = await browser.authorize_url(
        authorize_url(gateway.base, client["client_id"], Pkce.new())
    )
    page = await browser.sign_in(login, "user", "correct horse battery staple")
    assert CONSENT_FORM in page.text, page.text
    return page


async def signed_in(gateway: Gateway, client: Client, cookies: dict[str, str]) -> bool:
    """Whether the authorization endpoint takes these cookies for a signed-in user."""
    url = authorize_url(gateway.base, client["client_id"], Pkce.new())
    async with httpx2.AsyncClient(timeout=10, cookies=cookies) as other:
        page = await other.get(url)
    assert page.status_code == 200, page.text
    assert (CONSENT_FORM in page.text) != (LOGIN_FORM in page.text)
    return CONSENT_FORM in page.text


async def test_signing_out_ends_the_session_and_every_copy_of_its_cookie(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    page = await consent_page(browser, gateway, client)
    stolen = dict(browser.http.cookies.items())
    assert await signed_in(gateway, client, stolen)

    out = await browser.http.post(
        f"{gateway.base}{OAUTH}/signout", data={"csrf": form_fields(page.text)["csrf"]}
    )

    assert out.status_code == 200, out.text
    assert "atrium_session" not in browser.http.cookies
    assert not await signed_in(gateway, client, stolen)


async def test_signing_out_with_a_pending_request_shows_the_sign_in_page_for_it(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    page = await consent_page(browser, gateway, client)

    out = await browser.http.post(f"{gateway.base}{OAUTH}/signout", data=form_fields(page.text))

    assert out.status_code == 200
    assert LOGIN_FORM in out.text
    assert form_fields(out.text)["request"]  # the same flow, for whoever signs in next


@pytest.mark.parametrize("forgery", ["no csrf field", "wrong csrf field", "no csrf cookie"])
async def test_a_cross_site_sign_out_is_refused_and_the_session_goes_on(
    gateway: Gateway, browser: Browser, client: Client, forgery: str
) -> None:
    page = await consent_page(browser, gateway, client)
    session = dict(browser.http.cookies.items())
    fields = {"csrf": form_fields(page.text)["csrf"]}
    cookies = dict(session)
    if forgery == "no csrf field":
        fields = {}
    elif forgery == "wrong csrf field":
        fields["csrf"] = fields["csrf"][:-4] + "AAAA"
    else:
        del cookies["atrium_csrf"]

    async with httpx2.AsyncClient(timeout=10, cookies=cookies) as attacker:
        out = await attacker.post(f"{gateway.base}{OAUTH}/signout", data=fields)

    assert out.status_code == 400
    assert await signed_in(gateway, client, session)


@pytest.mark.parametrize(
    ("command", "stdin"),
    [
        (("users", "set-password", "user", "--password-stdin"), "another long password\n"),
        (("users", "set-role", "user", "reader"), ""),
        (("users", "set-role", "user", "admin"), ""),
        (("users", "disable", "user"), ""),
    ],
    ids=["new-password", "fewer-scopes", "more-scopes", "disabled"],
)
async def test_a_change_to_the_user_ends_their_sessions(
    gateway: Gateway,
    browser: Browser,
    client: Client,
    settings: Settings,
    command: tuple[str, ...],
    stdin: str,
) -> None:
    await consent_page(browser, gateway, client)
    session = dict(browser.http.cookies.items())

    await atrium_admin(settings, *command, stdin=stdin)

    assert not await signed_in(gateway, client, session)
