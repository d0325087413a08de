"""Token revocation (RFC 7009).

A client revokes its own tokens: a refresh token takes its whole family with it (the access
tokens it produced included); an access token is put on the revocation list until it would
have expired. An unknown or already-invalid token is answered 200 all the same (§2.2), so
the endpoint tells nothing about which tokens exist.

The tokens ``atrium admin token issue`` mints name the client ``atrium-cli``, which no
registration holds: it revokes as a public client does (§2.1), by its id alone, and only
tokens issued to it; holding the token is all the proof there is, as for any public client.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from atrium.auth.errors import (
    OAuthError,
    invalid_client,
    invalid_request,
    unauthorized_client,
)
from atrium.auth.hashing import token_hash
from atrium.auth.operator import OPERATOR_CLIENT_ID
from atrium.auth.server import AuthorizationServer
from atrium.auth.wire import NO_STORE, oauth_error_response, read_form


async def revoke(auth: AuthorizationServer, request: Request) -> Response:
    try:
        form = await read_form(request)
        client_id = await _client_id(auth, form, request.headers.get("authorization"))
        token = form.get("token")
        if not token:
            raise invalid_request("token is required")
        if form.get("token_type_hint") == "access_token" or token.count(".") == 2:
            await _revoke_access(auth, token, client_id)
        else:
            await _revoke_refresh(auth, token, client_id)
    except OAuthError as error:
        return oauth_error_response(error)
    return Response(status_code=200, headers=NO_STORE)


async def _client_id(
    auth: AuthorizationServer, form: dict[str, str], authorization: str | None
) -> str:
    if form.get("client_id") == OPERATOR_CLIENT_ID and not authorization:
        if "client_secret" in form:
            raise invalid_client(f"{OPERATOR_CLIENT_ID} is a public client: it has no secret")
        return OPERATOR_CLIENT_ID
    return (await auth.clients.authenticate(form, authorization)).client_id


async def _revoke_refresh(auth: AuthorizationServer, token: str, client_id: str) -> None:
    record = await auth.store.grants.get_refresh(token_hash(token))
    if record is None:
        return
    if record.client_id != client_id:
        raise unauthorized_client("the token was issued to another client")
    # The family's last access token is minted at the latest when its refresh tokens expire,
    # and lives one access-token lifetime more: the revocation must last until then.
    now = datetime.fromtimestamp(auth.clock(), UTC)
    last_access = max(record.expires_at, now) + timedelta(seconds=auth.options.access_token_ttl_s)
    await auth.store.grants.revoke_family(record.family_id, last_access)
    auth.revocations.add(record.family_id, "family")


async def _revoke_access(auth: AuthorizationServer, token: str, client_id: str) -> None:
    try:
        claims = auth.verifier.verify(token)
    except OAuthError:
        return  # invalid already: nothing to do (RFC 7009 §2.2)
    if claims.client_id != client_id:
        raise unauthorized_client("the token was issued to another client")
    # The store keeps the record a margin past exp, beyond the verifier's clock leeway.
    await auth.store.grants.revoke_jti(claims.jti, datetime.fromtimestamp(claims.expires_at, UTC))
    auth.revocations.add(claims.jti, "jti")
