"""The authorization server's routes, mounted by the gateway's ``create_app``.

Every endpoint that reads a request refuses one with a repeated ``Authorization`` or ``DPoP``
header before anything else (``wire.single_credentials``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from atrium.auth import introspect, metadata, register, revocation_endpoint
from atrium.auth.authorize import Authorize
from atrium.auth.keys import DEFAULT_SIGNS_AFTER_S
from atrium.auth.pages import stylesheet
from atrium.auth.server import AuthorizationServer
from atrium.auth.token_endpoint import TokenEndpoint
from atrium.auth.wire import single_credentials

BASE = "/api/v1/core/oauth"
Endpoint = Callable[[AuthorizationServer, Request], Awaitable[Response]]


def _bound(
    auth: AuthorizationServer, endpoint: Endpoint
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return await endpoint(auth, request)

    return single_credentials(handle)


# A verifier that caches the key set as long as it is told must see a rotated key before any
# replica signs with it (``atrium.auth.keystore``: signing starts ``DEFAULT_SIGNS_AFTER_S``
# after the rotation): a third of that delay, where the metadata documents say 300 s.
JWKS_CACHE = {"Cache-Control": f"public, max-age={int(DEFAULT_SIGNS_AFTER_S // 3)}"}


def oauth_routes(auth: AuthorizationServer) -> list[BaseRoute]:
    flow = Authorize(auth)
    discovery = metadata.routes_for(auth)

    async def jwks(request: Request) -> Response:
        return JSONResponse(auth.keys.public_jwks(), headers=JWKS_CACHE)

    return [
        Route("/.well-known/oauth-authorization-server", discovery["as"]),
        Route("/.well-known/openid-configuration", discovery["as"]),
        Route(
            f"{metadata.PRM_PREFIX}/api/v1/mcp/{{server}}/mcp",
            discovery["prm"],
        ),
        Route(f"{BASE}/authorize", single_credentials(flow.start), methods=["GET"]),
        Route(f"{BASE}/login", single_credentials(flow.login), methods=["POST"]),
        Route(f"{BASE}/consent", single_credentials(flow.consent), methods=["POST"]),
        Route(f"{BASE}/signout", single_credentials(flow.signout), methods=["POST"]),
        Route(f"{BASE}/token", single_credentials(TokenEndpoint(auth).handle), methods=["POST"]),
        Route(f"{BASE}/register", _bound(auth, register.register), methods=["POST"]),
        Route(f"{BASE}/revoke", _bound(auth, revocation_endpoint.revoke), methods=["POST"]),
        Route(f"{BASE}/introspect", _bound(auth, introspect.introspect), methods=["POST"]),
        Route(f"{BASE}/jwks", jwks, methods=["GET"]),
        Route(f"{BASE}/static/style.css", stylesheet, methods=["GET"]),
    ]
