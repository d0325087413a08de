"""Playing the user's browser and the OAuth client against a running gateway.

The browser follows the authorization flow's pages as a person would: it reads each form's
hidden fields from the HTML, fills in the visible ones and posts it with its cookies. The client
side exchanges codes, refreshes, and calls tools through the gateway with Bearer or DPoP tokens;
``snapshot`` reads every row the authorization server keeps, so an attack test can show that
nothing changed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
from sqlalchemy import select

from atrium.cli.admin import create_user
from atrium.client.dpop import make_proof
from atrium.store import Store
from atrium.store.tables import (
    authorization_codes,
    oauth_clients,
    refresh_tokens,
    revocations,
    users,
)
from tests.gateway.helpers import call_body, list_body, messages, modern_headers

OAUTH = "/api/v1/core/oauth"
REDIRECT = "http://127.0.0.1:4999/callback"
PASSWORD = "correct horse battery staple"
# What a client of a ``user``-role person asks for to call tools: ``user`` lets in, but only
# ``tools:write`` calls a tool not annotated read-only (atrium.auth.roles, issue 19 §3).
CALLS = "user tools:write"
_STATE_TABLES = (oauth_clients, users, authorization_codes, refresh_tokens, revocations)

__all__ = ["Browser", "Pkce", "Store", "create_user", "register_client"]


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


async def register_client(http: httpx2.AsyncClient, base: str, **metadata: Any) -> dict[str, Any]:
    body = {
        "redirect_uris": [REDIRECT],
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "client_name": "Test client",
        **metadata,
    }
    response = await http.post(f"{base}{OAUTH}/register", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def form_fields(html: str) -> dict[str, str]:
    fields = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[name[1]] = value[1].replace("&#34;", '"').replace("&amp;", "&") if value else ""
    return fields


def form_action(html: str) -> str:
    match = re.search(r'<form method="post" action="([^"]+)"', html)
    assert match, "no form on the page"
    return match[1]


@dataclass
class Browser:
    http: httpx2.AsyncClient
    base: str

    @classmethod
    @asynccontextmanager
    async def open(cls, base: str) -> AsyncIterator[Browser]:
        async with httpx2.AsyncClient(timeout=10, follow_redirects=False) as http:
            yield cls(http, base)

    async def authorize_url(self, url: str) -> httpx2.Response:
        return await self.http.get(url)

    async def sign_in(self, page: httpx2.Response, username: str, password: str) -> httpx2.Response:
        fields = form_fields(page.text)
        fields.update(username=username, password=password)
        return await self.http.post(_action_url(page), data=fields)

    async def decide(self, page: httpx2.Response, decision: str = "approve") -> httpx2.Response:
        fields = form_fields(page.text)
        fields["decision"] = decision
        return await self.http.post(_action_url(page), data=fields)

    async def consent_redirect(
        self, url: str, username: str, password: str, decision: str = "approve"
    ) -> dict[str, str]:
        """Sign in and decide; the query of the redirect back to the client."""
        login = await self.authorize_url(url)
        assert login.status_code == 200, login.text
        consent = await self.sign_in(login, username, password)
        assert consent.status_code == 200, consent.text
        back = await self.decide(consent, decision)
        assert back.status_code == 303, back.text
        return redirect_query(back.headers["location"])


def _action_url(page: httpx2.Response) -> str:
    """Where the page's form posts: its action, resolved against the page's own URL."""
    return str(page.url.join(form_action(page.text)))


def redirect_query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def authorize_url(
    base: str,
    client_id: str,
    pkce: Pkce,
    *,
    scope: str = "user",
    resource: str | None = None,
    redirect_uri: str = REDIRECT,
    state: str = "xyz",
    **extra: str,
) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    if resource:
        params["resource"] = resource
    return f"{base}{OAUTH}/authorize?{urlencode(params)}"


async def exchange_code(
    http: httpx2.AsyncClient,
    base: str,
    client_id: str,
    code: str,
    verifier: str,
    *,
    redirect_uri: str = REDIRECT,
    headers: dict[str, str] | None = None,
    **extra: str,
) -> httpx2.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "code_verifier": verifier,
        **extra,
    }
    return await http.post(f"{base}{OAUTH}/token", data=data, headers=headers or {})


async def code_for(
    browser: Browser,
    base: str,
    client_id: str,
    pkce: Pkce,
    *,
    username: str = "user",
    **params: Any,
) -> str:
    """Sign ``username`` in, approve, and return the authorization code the client got back."""
    url = authorize_url(base, client_id, pkce, **params)
    back = await browser.consent_redirect(url, username, PASSWORD)
    assert "code" in back, back
    return back["code"]


async def tokens_for(
    browser: Browser,
    http: httpx2.AsyncClient,
    base: str,
    client_id: str,
    *,
    username: str = "user",
    headers: dict[str, str] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """The whole code flow for ``username``: the token response's body."""
    pkce = Pkce.new()
    code = await code_for(browser, base, client_id, pkce, username=username, **params)
    response = await exchange_code(http, base, client_id, code, pkce.verifier, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def refresh(
    http: httpx2.AsyncClient,
    base: str,
    client_id: str,
    token: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: str,
) -> httpx2.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    return await http.post(f"{base}{OAUTH}/token", data={**data, **extra}, headers=headers or {})


def basic(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1 HTTP Basic client credentials."""
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def token_proof(key: Any, base: str) -> dict[str, str]:
    """A DPoP header for one request to the token endpoint."""
    return {"DPoP": make_proof(key, method="POST", url=f"{base}{OAUTH}/token")}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def dpop(token: str, key: Any, url: str, method: str = "POST") -> dict[str, str]:
    """The DPoP scheme with a fresh proof of ``key`` for ``method url`` (RFC 9449 §7.1)."""
    proof = make_proof(key, method=method, url=url, access_token=token)
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


async def call_tool(
    http: httpx2.AsyncClient,
    url: str,
    tool: str,
    headers: dict[str, str] | None = None,
    arguments: dict[str, Any] | None = None,
) -> httpx2.Response:
    """One 2026-07-28 ``tools/call`` through the gateway with extra (auth) ``headers``."""
    body = call_body(tool, arguments or ({"text": "hi"} if tool == "echo" else {}))
    return await http.post(
        url, content=body, headers={**modern_headers("tools/call", tool), **(headers or {})}
    )


async def list_tools(
    http: httpx2.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> list[str]:
    """The tool names a 2026-07-28 ``tools/list`` through the gateway answers."""
    response = await http.post(
        url, content=list_body(), headers={**modern_headers("tools/list"), **(headers or {})}
    )
    assert response.status_code == 200, response.text
    (answer,) = messages(response)
    return [tool["name"] for tool in answer["result"]["tools"]]


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: what a client may read from its access token."""
    segment = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def challenge(response: httpx2.Response) -> dict[str, str]:
    """The parameters of a ``WWW-Authenticate`` challenge (every scheme carries the same)."""
    header = response.headers.get("www-authenticate", "")
    params: dict[str, str] = {}
    for name, value in re.findall(r'([a-z_]+)="([^"]*)"', header):
        params.setdefault(name, value)
    return params


async def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the authorization server's tables: clients, users, codes, tokens,
    revocations. Equal snapshots before and after a request mean it changed nothing."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with store.engine.connect() as conn:
        for table in _STATE_TABLES:
            result = await conn.execute(select(table))
            rows[table.name] = sorted((tuple(row) for row in result), key=repr)
    return rows
