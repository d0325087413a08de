"""Token revocation (RFC 7009).

A client revokes its own tokens: a refresh token takes its whole family with it (the access
tokens it produced included); an access token is put on the revocation list until it would
have expired. An unknown or already-invalid token is answered 200 all the same (§2.2), so
the endpoint tells nothing about which tokens exist.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from atrium.auth.errors import OAuthError, invalid_request, unauthorized_client
from atrium.auth.hashing import token_hash
from atrium.auth.server import AuthorizationServer
from atrium.auth.wire import NO_STORE, oauth_error_response, read_form


async def revoke(auth: AuthorizationServer, request: Request) -> Response:
    try:
        form = await read_form(request)
        client = await auth.clients.authenticate(form, request.headers.get("authorization"))
        token = form.get("token")
        if not token:
            raise invalid_request("token is required")
        if form.get("token_type_hint") == "access_token" or token.count(".") == 2:
            await _revoke_access(auth, token, client.client_id)
        else:
            await _revoke_refresh(auth, token, client.client_id)
    except OAuthError as error:
        return oauth_error_response(error)
    return Response(status_code=200, headers=NO_STORE)


async def _revoke_refresh(auth: AuthorizationServer, token: str, client_id: str) -> None:
    record = await auth.store.grants.get_refresh(token_hash(token))
    if record is None:
        return
    if record.client_id != client_id:
        raise unauthorized_client("the token was issued to another client")
    until = datetime.fromtimestamp(auth.clock(), UTC) + timedelta(
        seconds=auth.options.refresh_token_ttl_s
    )
    await auth.store.grants.revoke_family(record.family_id, until)
    auth.revocations.add(record.family_id, "family")


async def _revoke_access(auth: AuthorizationServer, token: str, client_id: str) -> None:
    try:
        claims = auth.verifier.verify(token)
    except OAuthError:
        return  # invalid already: nothing to do (RFC 7009 §2.2)
    if claims.client_id != client_id:
        raise unauthorized_client("the token was issued to another client")
    await auth.store.grants.revoke_jti(claims.jti, datetime.fromtimestamp(claims.expires_at, UTC))
    auth.revocations.add(claims.jti, "jti")
