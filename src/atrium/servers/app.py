"""The HTTP face of an MCP server: the SDK's Streamable HTTP app at ``/mcp``, and ``/health``.

One endpoint serves both protocol eras; the SDK routes each request by its
``MCP-Protocol-Version`` header (``StreamableHTTPSessionManager.handle_request``):

* ``2026-07-28``: stateless, one POST per request, ``_meta`` carries the protocol version and
  the client's capabilities, and the ``Mcp-Method``/``Mcp-Name`` headers must agree with the
  body (``mcp.server._streamable_http_modern``);
* the ``initialize`` era (``2024-11-05`` ... ``2025-11-25``, or no header at all): sessions
  named by ``Mcp-Session-Id``, a GET stream for server messages, responses as SSE.

Sessions stay in this process (not ``stateless_http``): the gateway keeps a legacy client on
the replica that opened its session (ARCHITECTURE.md, "Scaling out"). Bound to a loopback
host, the SDK also checks ``Host`` and ``Origin`` against loopback names (DNS rebinding), so the
gateway must call ``http://127.0.0.1:<port>/mcp`` and not pass a browser's ``Origin`` on.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from atrium.auth.assertion import AssertionVerifier
from atrium.servers.trust import RequireCaller

MCP_PATH = "/mcp"
HEALTH_PATH = "/health"


def create_app(
    server: MCPServer[Any], *, callers: AssertionVerifier | None, host: str = "127.0.0.1"
) -> Starlette:
    """A new Starlette app serving ``server``; ``host`` is the address it will be bound to.

    ``callers`` checks the gateway's caller assertion on every request but ``/health``
    (``atrium.servers.trust``); ``None`` serves anyone, for a server run alone in development
    (``--unauthenticated``). Each call builds a fresh app with its own session manager (the
    SDK's manager runs once), so a test can start and stop the same server several times.
    """
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, host=host)
    app.router.routes.append(Route(HEALTH_PATH, _health(server), methods=["GET"]))
    if callers is not None:
        app.add_middleware(RequireCaller, verifier=callers)
    return app


def _health(server: MCPServer[Any]) -> Any:
    # Served only once the lifespan (and so the server's own lifespan) has started: uvicorn
    # does not accept connections before that, so an answer means ready.
    body = {"status": "ok", "server": server.name, "version": server.version}

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(body)

    return health
