"""The bridge's HTTP face: Streamable HTTP at ``/mcp`` and ``GET /health``.

The port is served from the moment the bridge starts, before the child has answered
``initialize``: ``/health`` then says 503 ``starting`` (the supervisor keeps polling) and
``/mcp`` 503 with ``Retry-After``. Once the child is initialized, ``/mcp`` is the SDK's
Streamable HTTP session manager, which serves both protocol eras on one path: a request whose
``MCP-Protocol-Version`` header names 2026-07-28 takes the stateless single-exchange path,
anything else the ``initialize``-era sessions (``Mcp-Session-Id``, the GET stream, DELETE).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import mcp_types as types
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from atrium.auth.assertion import AssertionVerifier
from atrium.auth.uris import LOOPBACK_AUTHORITIES, LOOPBACK_HOSTS
from atrium.servers.trust import RequireCaller

MCP_PATH = "/mcp"
HEALTH_PATH = "/health"

Phase = Literal["starting", "ok", "stopping"]


@dataclass
class Readiness:
    """Where the bridge is in its life, as ``/health`` and ``/mcp`` report it."""

    server: str
    phase: Phase = "starting"
    child_pid: int | None = None
    mcp: ASGIApp | None = field(default=None, repr=False)

    def serve(self, mcp: ASGIApp, child_pid: int) -> None:
        self.mcp, self.child_pid, self.phase = mcp, child_pid, "ok"

    def stop(self) -> None:
        self.mcp, self.phase = None, "stopping"


def transport_security(host: str) -> TransportSecuritySettings | None:
    """DNS-rebinding protection when listening on loopback, as the SDK sets it up itself.

    A browser tricked into calling 127.0.0.1 sends a foreign ``Host`` (spec 2025-11-25
    basic/transports#security-warning), so only loopback ``Host`` and ``Origin`` values pass.
    """
    if host not in LOOPBACK_HOSTS:
        return None
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:*" for name in sorted(LOOPBACK_AUTHORITIES)],
        allowed_origins=[f"http://{name}:*" for name in sorted(LOOPBACK_AUTHORITIES)],
    )


def create_app(readiness: Readiness, callers: AssertionVerifier | None) -> Starlette:
    """``/health`` and ``/mcp``; ``callers`` checks the gateway's caller assertion on every
    request but ``/health`` (``atrium.servers.trust``), ``None`` serves anyone."""

    async def health(request: Request) -> Response:
        if readiness.phase != "ok":
            return JSONResponse({"status": readiness.phase, "server": readiness.server}, 503)
        body = {"status": "ok", "server": readiness.server, "child_pid": readiness.child_pid}
        return JSONResponse(body)

    app = Starlette(
        routes=[
            Route(HEALTH_PATH, health, methods=["GET"]),
            # An ASGI app as endpoint, so every method (POST, GET, DELETE) reaches the SDK.
            Route(MCP_PATH, _McpEndpoint(readiness)),
        ]
    )
    if callers is not None:
        app.add_middleware(RequireCaller, verifier=callers)
    return app


class _McpEndpoint:
    def __init__(self, readiness: Readiness) -> None:
        self._readiness = readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mcp = self._readiness.mcp
        if mcp is not None:
            await mcp(scope, receive, send)
            return
        # The JSON-RPC error shape the SDK uses for its own transport-level refusals.
        message = f"server {self._readiness.server} is {self._readiness.phase}"
        error = {"code": types.INTERNAL_ERROR, "message": message}
        body = {"jsonrpc": "2.0", "id": None, "error": error}
        response = Response(
            json.dumps(body),
            status_code=503,
            media_type="application/json",
            headers={"Retry-After": "1"},
        )
        await response(scope, receive, send)
