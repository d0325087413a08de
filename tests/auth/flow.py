"""Playing the user's browser and the OAuth client against a running gateway.

The browser follows the authorization flow's pages as a person would: it reads each form's
hidden fields from the HTML, fills in the visible ones and posts it with its cookies.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2

from atrium.cli.admin import create_user
from atrium.store import Store

OAUTH = "/api/v1/core/oauth"
REDIRECT = "http://127.0.0.1:4999/callback"

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
