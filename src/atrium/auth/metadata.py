"""Discovery documents: authorization server metadata (RFC 8414) and protected resource
metadata (RFC 9728), one per hosted server.

MCP clients start from a 401 whose ``WWW-Authenticate`` names the resource metadata URL (MCP
spec, "Authorization", §Protected Resource Metadata Discovery), read the authorization server
from it, then this server's metadata; nothing else needs configuring.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from atrium.auth.dpop import ALGORITHMS
from atrium.auth.server import AuthorizationServer

PRM_PREFIX = "/.well-known/oauth-protected-resource"
_CACHE = {"Cache-Control": "public, max-age=300"}


def authorization_server_metadata(auth: AuthorizationServer) -> dict[str, Any]:
    return {
        "issuer": auth.issuer,
        "authorization_endpoint": auth.endpoint("authorize"),
        "token_endpoint": auth.endpoint("token"),
        "registration_endpoint": auth.endpoint("register"),
        "revocation_endpoint": auth.endpoint("revoke"),
        "introspection_endpoint": auth.endpoint("introspect"),
        "jwks_uri": auth.endpoint("jwks"),
        "scopes_supported": list(auth.roles.all_scopes()),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": [
            "none",
            "client_secret_basic",
            "client_secret_post",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "none",
            "client_secret_basic",
            "client_secret_post",
        ],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": list(ALGORITHMS),
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        "client_id_metadata_document_supported": True,
        "service_documentation": f"{auth.settings.public_url}/",
    }


def protected_resource_metadata(
    auth: AuthorizationServer, server: str, origin: str | None
) -> dict[str, Any] | None:
    config = auth.hosted(server)
    if config is None:
        return None
    policy = config.oauth
    document: dict[str, Any] = {
        "resource": auth.resources.url_for(server, origin),
        "authorization_servers": [auth.issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": config.description or server,
        "scopes_supported": list(policy.scopes) or list(auth.roles.all_scopes()),
    }
    if policy.dpop != "off":
        document["dpop_signing_alg_values_supported"] = list(ALGORITHMS)
        document["dpop_bound_access_tokens_required"] = policy.dpop == "required"
    return document


def request_origin(request: Request) -> str | None:
    host = request.headers.get("host")
    return f"{request.url.scheme}://{host}" if host else None


def routes_for(auth: AuthorizationServer) -> dict[str, Any]:
    async def as_metadata(request: Request) -> Response:
        return JSONResponse(authorization_server_metadata(auth), headers=_CACHE)

    async def prm(request: Request) -> Response:
        document = protected_resource_metadata(
            auth, request.path_params["server"], request_origin(request)
        )
        if document is None:
            return JSONResponse(
                {"error": "not_found", "error_description": "no such server"}, status_code=404
            )
        return JSONResponse(document, headers=_CACHE)

    return {"as": as_metadata, "prm": prm}
