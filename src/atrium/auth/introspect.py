"""Token introspection (RFC 7662), for resource servers that are not the gateway.

Only confidential clients an operator created may ask (§2.1: the endpoint must be protected,
or it becomes a token-scanning oracle; open registration can mint a secret for anyone).
Anything not currently valid is just ``{"active": false}`` (§2.2).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from atrium.auth.errors import OAuthError, invalid_client, invalid_request
from atrium.auth.hashing import token_hash
from atrium.auth.server import AuthorizationServer
from atrium.auth.wire import NO_STORE, oauth_error_response, read_form

INACTIVE: dict[str, Any] = {"active": False}


async def introspect(auth: AuthorizationServer, request: Request) -> Response:
    try:
        form = await read_form(request)
        client = await auth.clients.authenticate(form, request.headers.get("authorization"))
        if client.kind != "confidential":
            # Only clients an operator created: anyone may register a client with a secret.
            raise invalid_client("introspection needs a client created by an operator")
        token = form.get("token")
        if not token:
            raise invalid_request("token is required")
        await auth.revocations.refresh(auth.store)
        body = await _describe(auth, token)
    except OAuthError as error:
        return oauth_error_response(error)
    return JSONResponse(body, headers=NO_STORE)


async def _describe(auth: AuthorizationServer, token: str) -> dict[str, Any]:
    if token.count(".") == 2:
        try:
            claims = auth.verifier.verify(token)
        except OAuthError:
            return INACTIVE
        return INACTIVE if auth.revocations.revoked(claims) else claims.to_introspection()
    record = await auth.store.grants.get_refresh(token_hash(token))
    now = datetime.fromtimestamp(auth.clock(), UTC)
    if (
        record is None
        or record.revoked_at is not None
        or record.rotated_at is not None
        or record.expires_at <= now
    ):
        return INACTIVE
    return {
        "active": True,
        "token_type": "refresh_token",
        "client_id": record.client_id,
        "sub": record.subject,
        "scope": record.scope,
        "exp": int(record.expires_at.timestamp()),
        "iss": auth.issuer,
    }
