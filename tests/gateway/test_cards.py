"""Discovery: a Server Card per server (SEP-2127), the instance's card and the AI Catalog."""

from __future__ import annotations

import re

import httpx2

from atrium.gateway.cards import namespace, server_card
from atrium.registry.schema import HttpServer
from atrium.settings import Settings
from tests.gateway.conftest import Backend
from tests.gateway.helpers import SERVERS, Gateway

CARD = "application/mcp-server-card+json"
CARD_SCHEMA = "https://static.modelcontextprotocol.io/schemas/v1/server-card.schema.json"
# schema.ts of modelcontextprotocol/experimental-ext-server-card: ServerCard.name
CARD_NAME = re.compile(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+")
PUBLISHED = set(SERVERS) - {"hidden", "off"}


def local(gateway: Gateway, settings: Settings, url: str) -> str:
    """A public URL of the gateway, reached on the test's loopback port."""
    assert url.startswith(settings.public_url), url
    return gateway.base + url.removeprefix(settings.public_url)


def meta(card: dict[str, object], suffix: str) -> object:
    found = card["_meta"]
    assert isinstance(found, dict)
    [value] = [value for key, value in found.items() if key.endswith(suffix)]
    return value


async def test_a_card_names_the_endpoint_its_transport_and_both_protocol_eras(
    gateway: Gateway, settings: Settings, http: httpx2.AsyncClient
) -> None:
    response = await http.get(f"{gateway.url('tools')}/server-card", headers={"Accept": CARD})

    assert response.status_code == 200
    assert response.headers["content-type"] == CARD
    card = response.json()
    assert card["$schema"] == CARD_SCHEMA
    assert CARD_NAME.fullmatch(card["name"])
    assert card["name"].endswith("/tools")
    assert card["version"]
    assert card["description"] == "Everything allowed"
    assert card["remotes"] == [
        {
            "type": "streamable-http",
            "url": f"{settings.public_url}/api/v1/mcp/tools/mcp",
            "supportedProtocolVersions": ["2026-07-28", "2025-11-25"],
        }
    ]


async def test_a_card_lists_no_tools_and_asks_nothing_of_the_backend(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    before = len(backend.witness.requests)

    card = (await http.get(f"{gateway.url('tools')}/server-card")).json()

    assert not {"tools", "resources", "prompts"} & set(card)
    assert len(backend.witness.requests) == before


async def test_the_card_of_a_server_requiring_oauth_says_where_tokens_come_from(
    gateway: Gateway, backend: Backend, settings: Settings, http: httpx2.AsyncClient
) -> None:
    oauth = {"required": True, "scopes": ["tools:read"]}
    await gateway.add_server("secured", port=backend.port, oauth=oauth)

    card = (await http.get(f"{gateway.url('secured')}/server-card")).json()

    [header] = card["remotes"][0]["headers"]
    assert (header["name"], header["isRequired"], header["isSecret"]) == (
        "Authorization",
        True,
        True,
    )
    authorization = meta(card, "/authorization")
    assert isinstance(authorization, dict)
    assert (authorization["required"], authorization["scopes"]) == (True, ["tools:read"])
    assert authorization["authorizationServers"] == [settings.issuer]
    prm = await http.get(local(gateway, settings, authorization["protectedResourceMetadata"]))
    assert prm.status_code == 200
    assert prm.json()["resource"] == card["remotes"][0]["url"]


async def test_an_open_server_has_no_authorization_header_but_says_so(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    card = (await http.get(f"{gateway.url('guarded')}/server-card")).json()

    assert "headers" not in card["remotes"][0]
    authorization = meta(card, "/authorization")
    assert isinstance(authorization, dict)
    assert authorization["required"] is False


async def test_hidden_disabled_and_unknown_servers_have_no_card(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    for server in ("hidden", "off", "nowhere"):
        response = await http.get(f"{gateway.url(server)}/server-card")
        assert response.status_code == 404, server


async def test_a_card_is_cacheable_and_revalidates_with_its_etag(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    url = f"{gateway.url('tools')}/server-card"
    first = await http.get(url)
    etag = first.headers["etag"]

    same = await http.get(url, headers={"If-None-Match": etag})
    weak = await http.get(url, headers={"If-None-Match": f'"other", W/{etag}'})
    other = await http.get(url, headers={"If-None-Match": '"other"'})

    assert first.headers["cache-control"].startswith("public, max-age=")
    assert (same.status_code, same.content, same.headers["etag"]) == (304, b"", etag)
    assert weak.status_code == 304
    assert other.status_code == 200


async def test_a_changed_registry_changes_the_card_and_its_etag(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = f"{gateway.url('tools')}/server-card"
    before = await http.get(url)

    await gateway.add_server("tools", port=backend.port, description="Now described otherwise")
    after = await http.get(url, headers={"If-None-Match": before.headers["etag"]})

    assert after.status_code == 200
    assert after.json()["description"] == "Now described otherwise"


async def test_any_origin_may_read_a_card_and_its_preflight_succeeds(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    url = f"{gateway.url('tools')}/server-card"
    read = await http.get(url, headers={"Origin": "https://elsewhere.example"})
    preflight = await http.options(
        url,
        headers={
            "Origin": "https://elsewhere.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "if-none-match",
        },
    )

    assert read.headers["access-control-allow-origin"] == "*"
    assert read.headers["access-control-expose-headers"] == "ETag"
    assert preflight.status_code == 204
    assert "If-None-Match" in preflight.headers["access-control-allow-headers"]


async def test_the_well_known_card_lists_the_enabled_servers_shown_on_the_web(
    gateway: Gateway, settings: Settings, http: httpx2.AsyncClient
) -> None:
    response = await http.get(f"{gateway.base}/.well-known/mcp/server-card.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == CARD
    card = response.json()
    assert card["$schema"] == CARD_SCHEMA
    assert CARD_NAME.fullmatch(card["name"])
    assert "remotes" not in card  # its servers are not one server's endpoints
    servers = meta(card, "/servers")
    assert isinstance(servers, list)
    assert {server["name"] for server in servers} == PUBLISHED
    for server in servers:
        assert server["url"] == settings.endpoint_for(server["name"])
        own = await http.get(local(gateway, settings, server["serverCard"]))
        assert own.json()["remotes"][0]["url"] == server["url"]


async def test_the_ai_catalog_points_at_the_card_of_every_published_server(
    gateway: Gateway, settings: Settings, http: httpx2.AsyncClient
) -> None:
    response = await http.get(f"{gateway.base}/.well-known/ai-catalog.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ai-catalog+json"
    assert response.headers["access-control-allow-origin"] == "*"
    catalog = response.json()
    assert catalog["specVersion"] == "1.0"
    entries = catalog["entries"]
    assert {entry["identifier"] for entry in entries} == {
        f"urn:air:localhost:mcp:{name}" for name in PUBLISHED
    }
    for entry in entries:
        assert entry["type"] == CARD
        card = await http.get(local(gateway, settings, entry["url"]))
        assert card.status_code == 200
        assert card.json()["name"].endswith("/" + entry["identifier"].rsplit(":", 1)[1])


def test_the_namespace_is_the_public_host_reversed_and_an_address_kept() -> None:
    assert namespace("https://mcp.acme.com:8443") == "com.acme.mcp"
    assert namespace("http://127.0.0.1:8080") == "127.0.0.1"
    assert CARD_NAME.fullmatch(namespace("http://[::1]:8080") + "/tools")


def test_a_description_is_cut_to_the_drafts_hundred_characters_and_never_empty(
    settings: Settings,
) -> None:
    long = HttpServer(binary="x", port=5000, description="word " * 60)
    empty = HttpServer(binary="x", port=5000)

    cut = server_card(settings, "long", long)["description"]
    filled = server_card(settings, "empty", empty)["description"]

    assert len(cut) == 100
    assert cut.endswith("…")
    assert 0 < len(filled) <= 100
