"""Backends trust only the gateway: every request must carry a valid caller assertion.

``RequireCaller`` wraps a backend's ASGI app (a toolkit server, the stdio bridge). A request
without a valid ``Atrium-Caller-Assertion`` for this server's name is answered 401 before any
MCP code runs, and logged; ``/health`` stays open (it tells the supervisor only the name and
version). The verified caller is kept in the request's ASGI scope, where the SDK's request
context carries it to the tool in both protocol eras (a session's tool runs in another task
than the POST that asked for it, so a ``contextvar`` would not reach it).

A tool reads it with ``current_caller(ctx)``::

    @server.tool()
    def whoami(ctx: Context) -> str:
        return current_caller(ctx).subject or "anonymous"
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from mcp.server.mcpserver.exceptions import ToolError
from starlette.types import ASGIApp, Receive, Scope, Send

from atrium.auth.assertion import (
    HEADER,
    HEADER_BYTES,
    AssertionVerifier,
    CallerIdentity,
    InvalidAssertion,
)

logger = logging.getLogger(__name__)

SCOPE_KEY = "atrium.caller"
OPEN_PATHS = frozenset({"/health"})
_UNAUTHORIZED = -32001


class RequireCaller:
    """ASGI middleware: 401 unless the gateway vouched for the request."""

    def __init__(self, app: ASGIApp, verifier: AssertionVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        values = [v for k, v in scope["headers"] if k.lower() == HEADER_BYTES]
        try:
            if len(values) > 1:
                raise InvalidAssertion(f"more than one {HEADER} header")
            identity = self.verifier.verify(values[0].decode("latin-1") if values else None)
        except InvalidAssertion as refusal:
            client = scope.get("client")
            logger.warning(
                "refused %s %s from %s: %s",
                scope["method"],
                scope["path"],
                client[0] if client else "?",
                refusal,
            )
            await _refuse(send, str(refusal))
            return
        scope[SCOPE_KEY] = identity
        # Tools see the verified caller, never the assertion itself: a tool that echoes its
        # request's headers cannot hand one out.
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != HEADER_BYTES]
        await self.app(scope, receive, send)


async def _refuse(send: Send, reason: str) -> None:
    message = f"Unauthorized: {reason}; this server is reached through the Atrium gateway only"
    body = orjson.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": _UNAUTHORIZED, "message": message}}
    )
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def current_caller(ctx: Any) -> CallerIdentity:
    """The caller of the tool that ``ctx`` (the SDK's ``Context``) belongs to.

    Raises ``LookupError`` outside a request the gateway vouched for (a server run with
    ``--unauthenticated``, or over stdio).
    """
    request = ctx.request_context.request
    identity = getattr(request, "scope", {}).get(SCOPE_KEY) if request is not None else None
    if not isinstance(identity, CallerIdentity):
        raise LookupError("no caller: this request did not come through the Atrium gateway")
    return identity


def signed_in_caller(ctx: Any, why: str) -> CallerIdentity:
    """The caller, who must be signed in: ``ToolError(why)`` for an anonymous caller, and for
    a server run without the gateway (``--unauthenticated``), where nobody vouched for anyone.
    ``why`` says what needs a user ("skills belong to signed-in users: ...")."""
    try:
        caller: CallerIdentity | None = current_caller(ctx)
    except LookupError:
        caller = None
    if caller is None or caller.subject is None:
        raise ToolError(why)
    return caller
