"""Discovery documents: an MCP Server Card per hosted server (SEP-2127), the seeds' card for the
whole instance at ``/.well-known/mcp/server-card.json``, and an AI Catalog of the cards.

SEP-2127 ("MCP Server Cards", Draft, Extensions Track) keeps its normative text in
modelcontextprotocol/experimental-ext-server-card: ``schema.ts`` for the fields and
``docs/discovery.md`` for where a card lives and how it is served. What Atrium takes from it:

* A card is identity (``$schema``, ``name`` in reverse-DNS form with exactly one ``/``,
  ``version``, a ``description`` of at most 100 characters) and ``remotes`` (transport, URL,
  headers, ``supportedProtocolVersions``). It lists no tools, resources or prompts: the draft
  leaves primitives to the runtime ``*/list`` calls, which see the caller's identity. So the
  card endpoint never calls a backend and needs no credentials.
* A server's card is served at ``<streamable-http-url>/server-card``, the location the draft
  reserves, as ``application/mcp-server-card+json`` with open CORS and ``ETag`` revalidation.
* Domain-level discovery is an AI Catalog (Agent-Card/ai-catalog, ``specVersion`` 1.0) at
  ``/.well-known/ai-catalog.json`` whose entries point at the cards.

The draft has no member for authorization. A server with ``oauth.required`` says so the way
the schema can (a required, secret ``Authorization`` header in ``remotes[].headers``), and
``_meta`` carries the RFC 9728 metadata URL and scopes under the instance's own reverse-DNS
namespace, the namespace of ``name`` too: the instance publishes the card.

The draft moves cards out of ``.well-known`` (site-wide metadata); the seeds still ask for
``/.well-known/mcp/server-card.json``. There it describes the instance: a valid card with no
``remotes`` (its servers are not interchangeable endpoints of one server) whose ``_meta``
lists each server's endpoint and card.

Seed 003's card has two members of its own, which every card here carries too (clients built
from the seed read them): ``transport`` (``{type: streamable-http, url}``) and ``auth``
(``{type: oauth2, authorizationUrl, tokenUrl, scopes}``). The instance card's ``transport``
is its only server's endpoint, or the built-in ``atrium`` server's when it publishes several
(the seeds' ``systemprompt``); with neither it has none rather than a guess.

``registry_entry`` gives the same identity and remote in the MCP Registry's ``server.json``
form (modelcontextprotocol/registry, docs/reference/server-json), for ``atrium plugins mcp
export-registry``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from atrium.__about__ import __version__
from atrium.auth.metadata import PRM_PREFIX
from atrium.auth.roles import Roles
from atrium.registry.schema import ServerConfig
from atrium.settings import Settings

if TYPE_CHECKING:
    from atrium.gateway.directory import ServerDirectory, ServerRoute

CARD_SCHEMA = "https://static.modelcontextprotocol.io/schemas/v1/server-card.schema.json"
CARD_TYPE = "application/mcp-server-card+json"
CATALOG_TYPE = "application/ai-catalog+json"
# modelcontextprotocol/registry docs/reference/server-json: the newest released schema, and the
# name pattern it shares with schema.ts of the card.
REGISTRY_SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
REGISTRY_NAME = re.compile(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+")
CATALOG_PATH = "/.well-known/ai-catalog.json"
INSTANCE_CARD_PATH = "/.well-known/mcp/server-card.json"
# The two eras the gateway serves (ARCHITECTURE.md, "One tools/call"): stateless and the newest
# of the initialize era.
PROTOCOL_VERSIONS = ("2026-07-28", "2025-11-25")
DESCRIPTION_MAX = 100  # schema.ts: ServerCard.description @maxLength 100
INSTANCE_NAME = "atrium.gateway"  # a "." no server name can hold (registry.schema.SERVER_NAME)
MAIN_SERVER = "atrium"  # the instance card's transport when it publishes several servers

# discovery.md, "CORS Requirements": cards are public and read-only, so any origin may read.
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET",
    "Access-Control-Allow-Headers": "Content-Type, If-None-Match",
    "Access-Control-Expose-Headers": "ETag",
}
# discovery.md, "Caching": Cache-Control plus an ETag. Five minutes, as the gateway's other
# discovery documents, bounds how long a registry change stays unseen; revalidation is cheap.
CACHE_CONTROL = "public, max-age=300"

Published = tuple[str, ServerConfig]  # a server's name and configuration


def namespace(public_url: str) -> str:
    """The instance's reverse-DNS namespace: ``https://mcp.acme.com`` gives ``com.acme.mcp``.

    An IP address stays as written (``:`` of IPv6 becomes ``-``, which the name pattern allows).
    """
    host = (urlsplit(public_url).hostname or "localhost").lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return ".".join(reversed(host.split(".")))
    return host.replace(":", "-")


def card_name(settings: Settings, server: str) -> str:
    return f"{namespace(settings.public_url)}/{server}"


def card_url(settings: Settings, server: str) -> str:
    """``<streamable-http-url>/server-card``, the location discovery.md reserves."""
    return f"{settings.endpoint_for(server)}/server-card"


def resource_metadata_url(settings: Settings, server: str) -> str:
    """The server's RFC 9728 metadata (atrium.auth.metadata serves it)."""
    return f"{settings.public_url}{PRM_PREFIX}/api/v1/mcp/{server}/mcp"


def description_of(server: str, config: ServerConfig) -> str:
    text = " ".join(config.description.split()) or f"MCP server '{server}' hosted by Atrium"
    return text if len(text) <= DESCRIPTION_MAX else text[: DESCRIPTION_MAX - 1] + "…"


def authorization_header(settings: Settings, server: str) -> dict[str, Any]:
    """A ``KeyValueInput`` (schema.ts) saying that calls need an access token."""
    return {
        "name": "Authorization",
        "description": (
            "An OAuth 2.1 access token, 'Bearer <token>' or 'DPoP <token>'. The authorization"
            f" server is named in {resource_metadata_url(settings, server)} (RFC 9728)."
        ),
        "isRequired": True,
        "isSecret": True,
    }


def remote(
    settings: Settings, server: str, config: ServerConfig, *, versions: bool = True
) -> dict[str, Any]:
    """The streamable-http remote; ``versions=False`` for a registry ``server.json``, whose
    schema has no ``supportedProtocolVersions``."""
    entry: dict[str, Any] = {"type": "streamable-http", "url": settings.endpoint_for(server)}
    if config.oauth.required:
        entry["headers"] = [authorization_header(settings, server)]
    if versions:
        entry["supportedProtocolVersions"] = list(PROTOCOL_VERSIONS)
    return entry


def authorization(settings: Settings, server: str, config: ServerConfig) -> dict[str, Any]:
    # Scopes as the protected resource metadata lists them (atrium.auth.metadata).
    scopes = list(config.oauth.scopes) or list(Roles(settings.oauth.roles).all_scopes())
    return {
        "required": config.oauth.required,
        "protectedResourceMetadata": resource_metadata_url(settings, server),
        "authorizationServers": [settings.issuer],
        "scopes": scopes,
    }


def seed_transport(settings: Settings, server: str) -> dict[str, Any]:
    """Seed 003's ``transport`` member: where a client posts."""
    return {"type": "streamable-http", "url": settings.endpoint_for(server)}


def seed_auth(settings: Settings, scopes: Iterable[str]) -> dict[str, Any]:
    """Seed 003's ``auth`` member: the authorization server's endpoints and the scopes."""
    return {
        "type": "oauth2",
        "authorizationUrl": f"{settings.oauth_base}/authorize",
        "tokenUrl": f"{settings.oauth_base}/token",
        "scopes": list(scopes),
    }


def server_card(settings: Settings, server: str, config: ServerConfig) -> dict[str, Any]:
    """The SEP-2127 card of one hosted server, with seed 003's ``transport`` and ``auth``.

    ``version`` is the gateway's: a backend's own version is only known by calling it, which
    a card must not need; the draft makes every card field advisory.
    """
    granted = authorization(settings, server, config)
    return {
        "$schema": CARD_SCHEMA,
        "name": card_name(settings, server),
        "version": __version__,
        "description": description_of(server, config),
        "remotes": [remote(settings, server, config)],
        "transport": seed_transport(settings, server),
        "auth": seed_auth(settings, granted["scopes"]),
        "_meta": {
            f"{namespace(settings.public_url)}/authorization": granted,
        },
    }


def instance_card(settings: Settings, published: Iterable[Published]) -> dict[str, Any]:
    """The seeds' instance-wide card: valid against the card schema, pointing at the servers."""
    ns = namespace(settings.public_url)
    servers = [
        {
            "name": name,
            "description": description_of(name, config),
            "url": settings.endpoint_for(name),
            "serverCard": card_url(settings, name),
        }
        for name, config in published
    ]
    noun = "server" if len(servers) == 1 else "servers"
    card: dict[str, Any] = {
        "$schema": CARD_SCHEMA,
        "name": f"{ns}/{INSTANCE_NAME}",
        "version": __version__,
        "description": f"Atrium MCP gateway with {len(servers)} {noun}, each with its own card",
    }
    names = [server["name"] for server in servers]
    main = names[0] if len(names) == 1 else MAIN_SERVER if MAIN_SERVER in names else None
    if main is not None:
        card["transport"] = seed_transport(settings, main)
    card["auth"] = seed_auth(settings, Roles(settings.oauth.roles).all_scopes())
    card["_meta"] = {
        f"{ns}/servers": servers,
        f"{ns}/aiCatalog": settings.public_url + CATALOG_PATH,
    }
    return card


def ai_catalog(settings: Settings, published: Iterable[Published]) -> dict[str, Any]:
    """An AI Catalog (``specVersion`` 1.0) with one entry per card.

    Entries leave out ``displayName``, ``description`` and ``version``: the catalog spec asks
    not to repeat what the referenced card carries. Identifiers are ``urn:air`` names under
    the public host (``urn:air:{publisher}:{namespace}:{name}``).
    """
    # An IPv6 literal's ":" would split the URN; "-" keeps it one segment.
    host = (urlsplit(settings.public_url).hostname or "localhost").lower().replace(":", "-")
    entries = [
        {
            "identifier": f"urn:air:{host}:mcp:{name}",
            "type": CARD_TYPE,
            "url": card_url(settings, name),
        }
        for name, _ in published
    ]
    return {
        "specVersion": "1.0",
        "host": {"displayName": f"Atrium at {host}", "identifier": host},
        "entries": entries,
    }


def version_problem(version: str) -> str | None:
    """Why ``version`` cannot be a registry version, or ``None``: server.json takes one
    version, at most 255 characters, and rejects ranges ('^1.2.3', '>=1.2.3', '1.x', '1.*')."""
    if not version or len(version) > 255:
        return "must be 1 to 255 characters"
    parts = version.split(".")
    if version[0] in "^~<>=" or "*" in version or {"x", "X"} & set(parts) or " " in version:
        return f"{version!r} is a range; give one version, e.g. 1.2.0"
    return None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a server name of the registry (and of a card), or ``None``."""
    if not 3 <= len(name) <= 200 or not REGISTRY_NAME.fullmatch(name):
        return f"{name!r} must look like com.example/server: a reverse-DNS namespace, '/', a name"
    return None


def registry_entry(
    settings: Settings,
    server: str,
    config: ServerConfig,
    *,
    name: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """The server's MCP Registry ``server.json`` (schema 2025-12-11): the card's identity and
    remote. No ``packages``: they tell a client how to run a server itself, which would bypass
    the gateway's authentication, tool policy and audit."""
    return {
        "$schema": REGISTRY_SCHEMA,
        "name": name or card_name(settings, server),
        "description": description_of(server, config),
        "version": version or __version__,
        "remotes": [remote(settings, server, config, versions=False)],
    }


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: ``*`` or any listed tag, compared weakly (``W/`` ignored)."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def document_response(request: Request, document: dict[str, Any], media_type: str) -> Response:
    body = orjson.dumps(document)
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {**CORS, "Cache-Control": CACHE_CONTROL, "ETag": etag}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


Endpoint = Callable[[Request], Awaitable[Response]]


def _with_preflight(endpoint: Endpoint) -> Endpoint:
    """Answer a CORS preflight (a browser sending ``If-None-Match`` makes one) with the CORS
    headers and nothing else."""

    async def handle(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=CORS)
        return await endpoint(request)

    return handle


def _is_published(route: ServerRoute) -> bool:
    return route.enabled and route.config.display_in_web


class Cards:
    """The card, instance card and catalog endpoints, over the gateway's routed servers."""

    def __init__(self, settings: Settings, directory: ServerDirectory) -> None:
        self.settings = settings
        self.directory = directory

    def _published(self) -> list[Published]:
        """Enabled servers shown on the web, by name: what the instance advertises."""
        routes = self.directory.routes.values()
        shown = [(r.name, r.config) for r in routes if _is_published(r)]
        return sorted(shown, key=lambda published: published[0])

    async def server(self, request: Request) -> Response:
        name = request.path_params["server"]
        route = self.directory.routes.get(name)
        if route is None or not _is_published(route):
            # As the registry API: a hidden server answers as an unknown one would.
            return JSONResponse({"error": f"server '{name}' not found"}, 404, headers=CORS)
        card = server_card(self.settings, name, route.config)
        return document_response(request, card, CARD_TYPE)

    async def instance(self, request: Request) -> Response:
        card = instance_card(self.settings, self._published())
        return document_response(request, card, CARD_TYPE)

    async def catalog(self, request: Request) -> Response:
        catalog = ai_catalog(self.settings, self._published())
        return document_response(request, catalog, CATALOG_TYPE)

    def routes(self) -> list[BaseRoute]:
        methods = ["GET", "OPTIONS"]
        return [
            Route(
                "/api/v1/mcp/{server}/mcp/server-card",
                _with_preflight(self.server),
                methods=methods,
            ),
            Route(INSTANCE_CARD_PATH, _with_preflight(self.instance), methods=methods),
            Route(CATALOG_PATH, _with_preflight(self.catalog), methods=methods),
        ]
