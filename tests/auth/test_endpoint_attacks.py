"""Attacks on the edges of the endpoints, played black-box against a running gateway: repeated
credential headers, oversized forms, forwarded addresses, registration floods, DPoP proofs
spent on bad grants, redirects into Atrium's own servers, and names that pose as someone else.

Each is refused, and where it matters the store is shown unchanged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from aiohttp import web

from atrium.auth.issuing import confidential_client as confidential_record
from atrium.client.dpop import generate_key, make_proof
from atrium.servers.app import create_app as create_server_app
from atrium.servers.shutdown import GracefulServer
from atrium.settings import Settings, load_settings
from tests.auth.flow import (
    OAUTH,
    PASSWORD,
    REDIRECT,
    Browser,
    Pkce,
    authorize_url,
    code_for,
    exchange_code,
    form_fields,
    jwt_claims,
    refresh,
    register_client,
    snapshot,
    token_proof,
    tokens_for,
)
from tests.gateway.backend import Witness, build_backend
from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway, call_body, modern_headers, serving

Client = dict[str, Any]
Headers = list[tuple[str, str]]
DISABLED_PORT = 5010


@pytest.fixture
def trusted_proxies() -> list[str]:
    """``gateway.trusted_proxies``; a test sets it with ``parametrize``."""
    return []


@pytest.fixture
def settings(settings: Settings, trusted_proxies: list[str]) -> Settings:
    """The auth tests' settings, with ``trusted_proxies`` written into their atrium.yaml."""
    if not trusted_proxies:
        return settings
    path = settings.settings_file
    listed = f"gateway:\n  trusted_proxies: {json.dumps(trusted_proxies)}\n"
    path.write_text(path.read_text().replace("gateway:\n", listed, 1))
    return load_settings(settings.project_dir, environ={})


def _twice(name: str, first: str, second: str) -> Headers:
    return [(name, first), (name, second)]


def _without_scope(url: str) -> str:
    base, _, query = url.partition("?")
    return base + "?" + "&".join(p for p in query.split("&") if not p.startswith("scope="))


# -- one Authorization header, one DPoP header --------------------------------------------


async def test_a_readers_token_followed_by_a_writers_cannot_call_a_write_tool(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    reader = gateway.token("readers", "user", "tools:read")
    writer = gateway.token("readers", "user", "tools:write")
    headers = list(modern_headers("tools/call", "echo").items())
    headers += _twice("Authorization", f"Bearer {reader}", f"Bearer {writer}")

    response = await http.post(
        gateway.url("readers"), content=call_body("echo", {"text": "hi"}), headers=headers
    )

    assert response.status_code == 400, response.text
    assert response.json()["error"]["data"]["error"] == "invalid_request"
    assert backend.witness.calls["echo"] == 0


async def test_the_openapi_bridge_refuses_two_authorization_headers(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    reader = gateway.token("readers", "user", "tools:read")
    writer = gateway.token("readers", "user", "tools:write")
    headers = _twice("Authorization", f"Bearer {reader}", f"Bearer {writer}")

    response = await http.post(
        f"{gateway.base}/api/v1/mcp/readers/tools/echo", json={"text": "hi"}, headers=headers
    )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert backend.witness.calls["echo"] == 0


async def test_two_dpop_proofs_at_the_mcp_endpoint_are_a_bad_request(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    key = generate_key()
    token = gateway.token("bound", "user", "tools:write", jkt=key.thumbprint())
    url = gateway.url("bound")
    proofs = [make_proof(key, method="POST", url=url, access_token=token) for _ in range(2)]
    headers = list(modern_headers("tools/call", "echo").items())
    headers += [("Authorization", f"DPoP {token}"), *(("DPoP", proof) for proof in proofs)]

    response = await http.post(url, content=call_body("echo", {"text": "hi"}), headers=headers)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["data"]["error"] == "invalid_request"
    assert backend.witness.calls["echo"] == 0


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    body: dict[str, Any]


OAUTH_ENDPOINTS = {
    "token": Endpoint("POST", "token", {"data": {"grant_type": "client_credentials"}}),
    "revoke": Endpoint("POST", "revoke", {"data": {"token": "anything"}}),
    "introspect": Endpoint("POST", "introspect", {"data": {"token": "anything"}}),
    "register": Endpoint("POST", "register", {"json": {"redirect_uris": [REDIRECT]}}),
    "authorize": Endpoint("GET", "authorize", {}),
    "login": Endpoint("POST", "login", {"data": {"username": "user"}}),
    "consent": Endpoint("POST", "consent", {"data": {"decision": "approve"}}),
}


@pytest.mark.parametrize("header", ["Authorization", "DPoP"])
@pytest.mark.parametrize("endpoint", OAUTH_ENDPOINTS.values(), ids=list(OAUTH_ENDPOINTS))
async def test_every_oauth_endpoint_refuses_a_repeated_credential_header(
    gateway: Gateway, http: httpx2.AsyncClient, endpoint: Endpoint, header: str
) -> None:
    before = await snapshot(gateway.store)
    headers = _twice(header, "Basic YTpi", "Basic Yzpk")

    response = await http.request(
        endpoint.method, f"{gateway.base}{OAUTH}/{endpoint.path}", headers=headers, **endpoint.body
    )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert await snapshot(gateway.store) == before


# -- the sign-in and consent forms are capped before they are read ------------------------


async def _raw_status(base: str, head: str, body: bytes) -> int:
    """Send a hand-made request and read the status line, without ever finishing the body:
    an answer within the deadline shows the server did not wait to read it all."""
    parts = urlsplit(base)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(f"{head}Host: {parts.netloc}\r\n\r\n".encode() + body)
        await writer.drain()
        async with asyncio.timeout(5):
            status = await reader.readline()
        return int(status.split()[1])
    finally:
        writer.close()


@pytest.mark.parametrize("form", ["login", "consent"])
async def test_a_form_declared_at_eight_megabytes_is_refused_before_it_is_read(
    gateway: Gateway, form: str
) -> None:
    head = (
        f"POST {OAUTH}/{form} HTTP/1.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {8 * 1024 * 1024}\r\n"
    )

    assert await _raw_status(gateway.base, head, b"username=user&password=") == 400


@pytest.mark.parametrize("form", ["login", "consent"])
async def test_a_chunked_form_is_cut_off_at_the_cap(gateway: Gateway, form: str) -> None:
    head = (
        f"POST {OAUTH}/{form} HTTP/1.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "Transfer-Encoding: chunked\r\n"
    )
    chunk = b"x" * 48 * 1024
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2))  # never ended

    assert await _raw_status(gateway.base, head, body) == 400


async def test_a_consent_form_padded_past_the_cap_issues_no_code(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    url = authorize_url(gateway.base, client["client_id"], Pkce.new())
    login = await browser.authorize_url(url)
    consent = await browser.sign_in(login, "user", PASSWORD)
    fields = {**form_fields(consent.text), "decision": "approve", "padding": "x" * 200_000}
    before = await snapshot(gateway.store)

    response = await browser.http.post(str(consent.url.join(f"{OAUTH}/consent")), data=fields)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert await snapshot(gateway.store) == before


# -- X-Forwarded-For counts only from a trusted proxy -------------------------------------


async def _sign_in_from(
    browser: Browser, gateway: Gateway, client: Client, username: str, password: str, address: str
) -> httpx2.Response:
    login = await browser.authorize_url(
        authorize_url(gateway.base, client["client_id"], Pkce.new())
    )
    fields = {**form_fields(login.text), "username": username, "password": password}
    return await browser.http.post(
        f"{gateway.base}{OAUTH}/login", data=fields, headers={"X-Forwarded-For": address}
    )


async def test_a_forwarded_address_from_a_local_process_does_not_dodge_the_sign_in_throttle(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    for n in range(10):  # ten guesses, each from "another address", each at another name
        guess = await _sign_in_from(
            browser, gateway, client, f"victim{n}", "guess", f"203.0.113.{n}"
        )
        assert guess.status_code == 401

    right = await _sign_in_from(browser, gateway, client, "user", PASSWORD, "203.0.113.99")

    assert right.status_code == 429


@pytest.mark.parametrize("trusted_proxies", [["127.0.0.1"]])
async def test_a_trusted_proxy_names_the_address_the_sign_in_throttle_counts(
    gateway: Gateway, browser: Browser, client: Client
) -> None:
    for n in range(10):
        guess = await _sign_in_from(browser, gateway, client, f"victim{n}", "guess", "203.0.113.1")
        assert guess.status_code == 401

    blocked = await _sign_in_from(browser, gateway, client, "user", PASSWORD, "203.0.113.1")
    other = await _sign_in_from(browser, gateway, client, "user", PASSWORD, "203.0.113.2")

    assert (blocked.status_code, other.status_code) == (429, 200)


# -- dynamic registration: a share per address, and room made from unused clients ---------


async def _register(
    http: httpx2.AsyncClient, gateway: Gateway, body: dict[str, Any], **headers: str
) -> httpx2.Response:
    full = {"redirect_uris": [REDIRECT], "application_type": "native", **body}
    full.setdefault("token_endpoint_auth_method", "none")
    return await http.post(f"{gateway.base}{OAUTH}/register", json=full, headers=headers)


@pytest.mark.parametrize("oauth_options", [{"registrations_per_address": "3/hour"}])
async def test_one_address_cannot_register_more_than_its_share(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    for n in range(3):
        first = await _register(http, gateway, {}, **{"X-Forwarded-For": f"198.51.100.{n}"})
        assert first.status_code == 201, first.text
    before = await snapshot(gateway.store)

    response = await _register(http, gateway, {}, **{"X-Forwarded-For": "198.51.100.99"})

    assert (response.status_code, response.json()["error"]) == (429, "temporarily_unavailable")
    assert int(response.headers["retry-after"]) > 0
    assert await snapshot(gateway.store) == before


@pytest.mark.parametrize(
    "oauth_options", [{"max_dynamic_clients": 3, "registrations_per_address": "100/hour"}]
)
async def test_a_registration_flood_evicts_its_own_unused_clients_not_those_in_use(
    gateway: Gateway, browser: Browser, http: httpx2.AsyncClient
) -> None:
    in_use = await register_client(http, gateway.base)
    await tokens_for(browser, http, gateway.base, in_use["client_id"])

    flood = [await _register(http, gateway, {"client_name": f"flood {n}"}) for n in range(20)]
    newcomer = await _register(http, gateway, {"client_name": "A real client"})

    assert {response.status_code for response in flood} == {201}
    assert newcomer.status_code == 201, newcomer.text
    assert await gateway.store.clients.get(in_use["client_id"]) is not None
    assert await gateway.store.clients.get(newcomer.json()["client_id"]) is not None
    assert await gateway.store.clients.get(flood[0].json()["client_id"]) is None
    assert await gateway.store.clients.count("dynamic") == 3


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "x" * 101,
        "Atrium\u202e)laiciffo( elosnoC",  # a right-to-left override
        "Atrium Operator Console\n(official)",
        "Claude\x00Code",
    ],
    ids=["empty", "blank", "too-long", "bidi-override", "newline", "nul"],
)
async def test_a_client_name_that_is_not_plain_text_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient, name: str
) -> None:
    before = await snapshot(gateway.store)

    response = await _register(http, gateway, {"client_name": name})

    assert (response.status_code, response.json()["error"]) == (400, "invalid_client_metadata")
    assert await snapshot(gateway.store) == before


# -- DPoP proofs are spent only on good grants --------------------------------------------


@pytest.mark.parametrize("fault", ["unknown code", "wrong verifier"])
async def test_a_proof_sent_with_a_bad_grant_is_not_spent(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient, fault: str
) -> None:
    pkce, key = Pkce.new(), generate_key()
    code = await code_for(browser, gateway.base, client["client_id"], pkce)
    proof = token_proof(key, gateway.base)
    bad_code, bad_verifier = (
        ("not-a-code", pkce.verifier) if fault == "unknown code" else (code, Pkce.new().verifier)
    )

    refused = await exchange_code(
        http, gateway.base, client["client_id"], bad_code, bad_verifier, headers=proof
    )
    good = await exchange_code(
        http, gateway.base, client["client_id"], code, pkce.verifier, headers=proof
    )

    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert good.status_code == 200, good.text
    assert jwt_claims(good.json()["access_token"])["cnf"] == {"jkt": key.thumbprint()}


async def test_a_proof_flooded_with_bogus_refresh_tokens_is_never_recorded(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    key = generate_key()
    tokens = await tokens_for(
        browser, http, gateway.base, client["client_id"], headers=token_proof(key, gateway.base)
    )
    proof = token_proof(key, gateway.base)
    for n in range(50):
        bogus = await refresh(http, gateway.base, client["client_id"], f"bogus-{n}", headers=proof)
        assert bogus.json()["error"] == "invalid_grant"  # never "already used"

    good = await refresh(
        http, gateway.base, client["client_id"], tokens["refresh_token"], headers=proof
    )

    assert good.status_code == 200, good.text


# -- a request without scope gets the default, never the whole role ----------------------


async def _granted_without_asking(
    browser: Browser,
    http: httpx2.AsyncClient,
    gateway: Gateway,
    client: Client,
    username: str,
    **params: str,
) -> set[str]:
    """Sign ``username`` in with no ``scope`` parameter at all, approve, redeem the code."""
    pkce = Pkce.new()
    url = _without_scope(authorize_url(gateway.base, client["client_id"], pkce, **params))
    back = await browser.consent_redirect(url, username, PASSWORD)
    response = await exchange_code(
        http, gateway.base, client["client_id"], back["code"], pkce.verifier
    )
    assert response.status_code == 200, response.text
    return set(response.json()["scope"].split())


async def test_an_admin_asking_for_no_scope_is_not_granted_admin(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    granted = await _granted_without_asking(browser, http, gateway, client, "admin")

    assert granted == {"user", "tools:read", "tools:write"}


async def test_a_reader_asking_for_no_scope_stays_a_reader(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    granted = await _granted_without_asking(browser, http, gateway, client, "reader")

    assert granted == {"user", "tools:read"}


async def test_no_scope_for_a_named_resource_gets_what_that_server_requires(
    gateway: Gateway, browser: Browser, client: Client, http: httpx2.AsyncClient
) -> None:
    granted = await _granted_without_asking(
        browser, http, gateway, client, "admin", resource=gateway.url("admins")
    )

    assert "admin" in granted


# -- redirects never into Atrium's own servers --------------------------------------------


def _own_ports(gateway: Gateway, backend: Backend) -> dict[str, int]:
    return {
        "a hosted server": backend.port,
        "a disabled server": DISABLED_PORT,
        "the gateway": urlsplit(gateway.base).port or 0,
    }


@pytest.mark.parametrize("whose", ["a hosted server", "a disabled server", "the gateway"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_a_redirect_to_a_port_atrium_serves_cannot_be_registered(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, whose: str, host: str
) -> None:
    await gateway.add_server("resting", port=DISABLED_PORT, enabled=False)
    port = _own_ports(gateway, backend)[whose]
    before = await snapshot(gateway.store)

    response = await _register(http, gateway, {"redirect_uris": [f"http://{host}:{port}/mcp"]})

    assert (response.status_code, response.json()["error"]) == (400, "invalid_redirect_uri")
    assert await snapshot(gateway.store) == before


async def test_a_loopback_redirect_moved_onto_a_hosted_servers_port_gets_an_error_page(
    gateway: Gateway, backend: Backend, browser: Browser, client: Client
) -> None:
    moved = f"http://127.0.0.1:{backend.port}/callback"

    page = await browser.authorize_url(
        authorize_url(gateway.base, client["client_id"], Pkce.new(), redirect_uri=moved)
    )

    assert page.status_code == 400
    assert "location" not in page.headers
    assert backend.witness.requests == []


async def test_a_hosted_server_writes_no_query_string_to_its_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, http: httpx2.AsyncClient
) -> None:
    # uvicorn turns its access logger off process-wide; whether this server does is the test.
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "propagate", True)
    app = create_server_app(build_backend(Witness()), callers=None)
    server = GracefulServer(app, host="127.0.0.1", port=0, log_level="info", timeout_s=5)
    caplog.set_level(logging.DEBUG)
    async with serving(server) as served:
        await http.get(f"http://127.0.0.1:{served.port}/mcp?code=the-secret-code&state=s")

    server_side = [r for r in caplog.records if not r.name.startswith(("httpx2", "httpcore2"))]
    assert server_side, "the server logs nothing at all: the test would prove nothing"
    assert not [r for r in server_side if "the-secret-code" in r.getMessage()]


# -- Client ID Metadata Documents follow the registration rules for redirects -------------

Publish = Callable[[dict[str, Any]], Awaitable[str]]


@pytest.fixture
async def publish() -> AsyncIterator[Publish]:
    """Serve a metadata document on a loopback port; its URL is its ``client_id``."""
    runners: list[web.AppRunner] = []

    async def published(fields: dict[str, Any]) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/client.json"
        document = {"client_id": url, "client_name": "Metadata client", **fields}

        async def serve(_: web.Request) -> web.Response:
            return web.json_response(document)

        app = web.Application()
        app.router.add_get("/client.json", serve)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, listener).start()
        runners.append(runner)
        return url

    yield published
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize(
    "redirect",
    ["javascript:alert(document.cookie)//", "data:text/html,<script>alert(1)</script>"],
)
async def test_a_metadata_document_cannot_name_a_script_as_its_redirect(
    gateway: Gateway, browser: Browser, publish: Publish, redirect: str
) -> None:
    client_id = await publish({"redirect_uris": [redirect]})

    page = await browser.authorize_url(
        authorize_url(gateway.base, client_id, Pkce.new(), redirect_uri=redirect)
    )

    assert (page.status_code, "location" in page.headers) == (400, False)
    assert "invalid_client" in page.text


# -- the consent page says whose name it is -----------------------------------------------


async def test_a_self_registered_official_sounding_name_is_marked_unverified(
    gateway: Gateway, browser: Browser, http: httpx2.AsyncClient
) -> None:
    posing = await register_client(
        http, gateway.base, client_name="Atrium Operator Console (official)"
    )

    login = await browser.authorize_url(
        authorize_url(gateway.base, posing["client_id"], Pkce.new())
    )
    consent = await browser.sign_in(login, "user", PASSWORD)

    for page in (login, consent):
        assert 'class="unverified"' in page.text
    assert "127.0.0.1:4999" in consent.text.split('class="destination"')[1].split("</p>")[0]


async def test_a_client_an_operator_created_is_not_marked_unverified(
    gateway: Gateway, browser: Browser
) -> None:
    record, _ = confidential_record("Billing console", ["user", "tools:write"], [REDIRECT])
    await gateway.store.clients.add(record)

    login = await browser.authorize_url(authorize_url(gateway.base, record.client_id, Pkce.new()))
    consent = await browser.sign_in(login, "user", PASSWORD)

    assert 'class="unverified"' not in consent.text
    assert 'class="verified"' in consent.text


async def test_a_metadata_document_client_is_marked_unverified_with_its_host(
    gateway: Gateway, browser: Browser, publish: Publish
) -> None:
    client_id = await publish({"redirect_uris": [REDIRECT]})

    login = await browser.authorize_url(authorize_url(gateway.base, client_id, Pkce.new()))
    consent = await browser.sign_in(login, "user", PASSWORD)

    assert 'class="unverified"' in consent.text
    assert urlsplit(client_id).netloc in consent.text
