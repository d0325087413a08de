"""Dynamic registration without ``application_type`` (issue 15 §3): the redirect URIs decide
(loopback or a private-use scheme: native; else web), and a client that names its type gets
exactly the redirects that type allows, as before. These run without ``oauth.dev_mode``, which
would let a web client use http loopback."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx2
import pytest

from atrium.settings import Settings, load_settings
from tests.auth.flow import OAUTH, REDIRECT, snapshot
from tests.gateway.helpers import Gateway


@pytest.fixture
def settings(tmp_path: Path, listener: socket.socket) -> Settings:
    port = listener.getsockname()[1]
    (tmp_path / "atrium.yaml").write_text(f"gateway:\n  public_url: http://127.0.0.1:{port}\n")
    return load_settings(tmp_path, environ={})


async def register(http: httpx2.AsyncClient, gateway: Gateway, body: Any) -> httpx2.Response:
    return await http.post(f"{gateway.base}{OAUTH}/register", json=body)


@pytest.mark.parametrize(
    ("uris", "expected"),
    [
        ([REDIRECT], "native"),
        (["http://localhost:33418/oauth/callback"], "native"),  # what mcp-remote registers
        (["http://[::1]:8000/cb", "com.example.app:/oauth"], "native"),
        (["https://app.example/callback"], "web"),
        (["https://app.example/a", "https://app.example/b"], "web"),
    ],
)
async def test_a_client_without_application_type_gets_the_one_its_redirects_imply(
    gateway: Gateway, http: httpx2.AsyncClient, uris: list[str], expected: str
) -> None:
    body = {"redirect_uris": uris, "token_endpoint_auth_method": "none"}

    response = await register(http, gateway, body)

    assert response.status_code == 201, response.text
    assert response.json()["application_type"] == expected
    stored = await gateway.store.clients.get(response.json()["client_id"])
    assert stored is not None
    assert stored.application_type == expected
    assert stored.metadata["application_type"] == expected


async def test_a_client_naming_its_type_keeps_it_even_where_the_redirects_imply_another(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    body = {"redirect_uris": ["https://app.example/cb"], "application_type": "native"}

    response = await register(http, gateway, body)

    assert response.status_code == 201, response.text
    stored = await gateway.store.clients.get(response.json()["client_id"])
    assert stored is not None
    assert stored.application_type == "native"


@pytest.mark.parametrize(
    "uris",
    [
        [REDIRECT, "https://app.example/callback"],
        ["com.example.app:/oauth", "https://app.example/callback"],
        ["https://app.example/callback", "http://127.0.0.1:4999/callback"],
    ],
)
async def test_redirects_that_imply_both_types_are_refused_until_the_client_names_one(
    gateway: Gateway, http: httpx2.AsyncClient, uris: list[str]
) -> None:
    before = await snapshot(gateway.store)

    response = await register(http, gateway, {"redirect_uris": uris})

    assert (response.status_code, response.json()["error"]) == (400, "invalid_client_metadata")
    assert "application_type" in response.json()["error_description"]
    assert await snapshot(gateway.store) == before


@pytest.mark.parametrize(
    ("application_type", "uri"),
    [
        ("web", REDIRECT),  # a web client claiming a loopback redirect
        ("web", "http://localhost:33418/oauth/callback"),
        ("web", "com.example.app:/callback"),  # a custom scheme with a web type
        ("native", "http://app.example/callback"),  # http off loopback, for native
        ("native", "http://127.0.0.2/callback"),  # loopback only by its exact names
        (None, "http://app.example/callback"),  # implies web, which http is not
        (None, "javascript:alert(1)"),  # implies native, which refuses the scheme
        (None, "data:text/html,hi"),
        (None, "https://app.example/callback#fragment"),
        (None, "/relative/callback"),
    ],
)
async def test_a_redirect_unfit_for_the_named_or_implied_type_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient, application_type: str | None, uri: str
) -> None:
    before = await snapshot(gateway.store)
    body: dict[str, Any] = {"redirect_uris": [uri], "token_endpoint_auth_method": "none"}
    if application_type is not None:
        body["application_type"] = application_type

    response = await register(http, gateway, body)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_redirect_uri")
    assert await snapshot(gateway.store) == before


async def test_a_null_application_type_is_treated_as_absent(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    body = {"redirect_uris": [REDIRECT], "application_type": None}

    response = await register(http, gateway, body)

    assert response.status_code == 201, response.text
    assert response.json()["application_type"] == "native"
