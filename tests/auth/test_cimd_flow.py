"""A client whose ``client_id`` is the URL of its metadata document signs a user in without
registering: the authorization server fetches the document (dev mode: loopback http)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import httpx2
import pytest
from aiohttp import web

from tests.auth.conftest import PASSWORD
from tests.auth.flow import CALLS, REDIRECT, Browser, Pkce, authorize_url, exchange_code
from tests.gateway.helpers import Gateway, call_modern


@pytest.fixture
async def document_url() -> AsyncIterator[str]:
    """A metadata document on a loopback port, naming itself as ``client_id``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/client.json"

    async def document(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "client_id": url,
                "client_name": "Metadata client",
                "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            }
        )

    app = web.Application()
    app.router.add_get("/client.json", document)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    try:
        yield url
    finally:
        await runner.cleanup()
        listener.close()


async def test_a_metadata_document_client_signs_in_and_calls_a_tool(
    gateway: Gateway, browser: Browser, http: httpx2.AsyncClient, document_url: str
) -> None:
    pkce = Pkce.new()
    url = authorize_url(
        gateway.base, document_url, pkce, resource=gateway.url("users"), scope=CALLS
    )

    back = await browser.consent_redirect(url, "user", PASSWORD)
    tokens = await exchange_code(http, gateway.base, document_url, back["code"], pkce.verifier)

    assert tokens.status_code == 200, tokens.text
    http.headers["Authorization"] = f"Bearer {tokens.json()['access_token']}"
    called = await call_modern(http, gateway.url("users"), "echo", {"text": "cimd"})
    assert called.status_code == 200
    assert await gateway.store.clients.get(document_url) is None  # nothing was registered


async def test_a_metadata_document_redirect_uri_is_enforced(
    gateway: Gateway, browser: Browser, document_url: str
) -> None:
    pkce = Pkce.new()
    url = authorize_url(
        gateway.base, document_url, pkce, redirect_uri="http://127.0.0.1:4999/elsewhere"
    )

    page = await browser.authorize_url(url)

    assert page.status_code == 400
    assert "location" not in page.headers
