"""Dynamic client registration (RFC 7591), open to any client, capped and self-cleaning.

``application_type`` (the MCP spec's SEP-837 profile of OIDC registration) decides which
redirects a client may use: a ``native`` client redirects to loopback or a private-use scheme
(RFC 8252 §7), a ``web`` client to https (``atrium.auth.redirects``). A client that names none,
as most MCP clients do, gets the type its redirect URIs imply (loopback or a private-use scheme:
native; else web), and redirects that imply both are refused rather than guessed.

Clients that registered but never obtained a token expire, the number of live dynamic clients
is capped, and each client address may register ``oauth.registrations_per_address`` (RFC 7591
§5 lets a server limit registration), so open registration cannot fill the store. At the cap,
registrations that never led to a token make room, oldest first: a flood evicts its own
clients, never one in use.

``client_name`` is shown on the consent page, so it is plain text of bounded length: no control
or format characters (a right-to-left override could make one name read as another).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from atrium.auth.clients import PUBLIC, SECRET_METHODS
from atrium.auth.errors import OAuthError, invalid_client_metadata, shown
from atrium.auth.hashing import new_token, token_hash
from atrium.auth.redirects import check_not_own_port, check_redirect, implied_application_type
from atrium.auth.server import AuthorizationServer
from atrium.auth.throttle import client_address
from atrium.auth.wire import oauth_error_response, read_json
from atrium.store import ClientRecord

# RFC 7591 §3.2.1: these are the server's to assign; a client's own values are dropped.
_SERVER_ASSIGNED = {
    "client_id",
    "client_secret",
    "client_id_issued_at",
    "client_secret_expires_at",
    "registration_access_token",
    "registration_client_uri",
}
MAX_CLIENT_NAME = 100
AppType = Literal["native", "web"]


class RegistrationRequest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    redirect_uris: list[str] = Field(min_length=1, max_length=20)
    application_type: AppType | None = None
    token_endpoint_auth_method: Literal["none", "client_secret_basic", "client_secret_post"] = (
        "client_secret_basic"  # RFC 7591 §2 default
    )
    grant_types: list[Literal["authorization_code", "refresh_token"]] = ["authorization_code"]
    response_types: list[Literal["code"]] = ["code"]
    client_name: str | None = Field(default=None, min_length=1, max_length=MAX_CLIENT_NAME)
    client_uri: str | None = Field(default=None, max_length=2000)
    logo_uri: str | None = Field(default=None, max_length=2000)
    scope: str | None = Field(default=None, max_length=2000)
    software_id: str | None = Field(default=None, max_length=200)
    software_version: str | None = Field(default=None, max_length=100)

    @field_validator("client_name")
    @classmethod
    def _displayable(cls, value: str | None) -> str | None:
        if value is not None and (not value.isprintable() or not value.strip()):
            raise ValueError("must be printable characters, not only spaces")
        return value


async def register(auth: AuthorizationServer, request: Request) -> Response:
    address = client_address(request)
    try:
        retry_after = await auth.registrations.retry_after(address)
        if retry_after is not None:
            raise _busy("this address registered too many clients", retry_after)
        payload = await read_json(request)
        try:
            asked = RegistrationRequest.model_validate(payload)
        except ValidationError as exc:
            raise invalid_client_metadata(_first_problem(exc)) from None
        kind = _application_type(asked)
        asked = asked.model_copy(update={"application_type": kind})  # registered and returned
        await _check_redirects(auth, asked.redirect_uris, kind)
        if asked.scope is not None:
            unknown = set(asked.scope.split()) - set(auth.roles.all_scopes())
            if unknown:
                raise invalid_client_metadata(f"unknown scope(s): {' '.join(sorted(unknown))}")
        await _make_room(auth)
        record, secret = _record(asked, kind)
        await auth.store.clients.add(record)
        await auth.registrations.registered(address)
    except OAuthError as error:
        return oauth_error_response(error)
    body = {**record.metadata, "client_id": record.client_id}
    body["client_id_issued_at"] = int(auth.clock())
    if secret is not None:
        body["client_secret"] = secret
        body["client_secret_expires_at"] = 0
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})


async def _check_redirects(auth: AuthorizationServer, uris: list[str], kind: AppType) -> None:
    own = await auth.own_ports()
    for uri in uris:
        check_redirect(uri, kind, dev_mode=auth.options.dev_mode)
        check_not_own_port(uri, own, registering=True)


def _application_type(asked: RegistrationRequest) -> AppType:
    """The ``application_type`` asked for, or else the one the redirect URIs imply."""
    if asked.application_type is not None:
        return asked.application_type
    implied = {uri: implied_application_type(uri) for uri in asked.redirect_uris}
    native = [uri for uri, kind in implied.items() if kind == "native"]
    web = [uri for uri, kind in implied.items() if kind == "web"]
    if native and web:
        raise invalid_client_metadata(
            f"redirect_uris: '{shown(native[0])}' is a native redirect and '{shown(web[0])}' "
            "a web one; name the client's application_type"
        )
    return "native" if native else "web"


async def _make_room(auth: AuthorizationServer) -> None:
    clients = auth.store.clients
    now = datetime.fromtimestamp(auth.clock(), UTC)
    cutoff = now - timedelta(seconds=auth.options.unused_client_ttl_s)
    await clients.delete_unused("dynamic", cutoff)
    excess = await clients.count("dynamic") - auth.options.max_dynamic_clients + 1
    if excess > 0 and await clients.delete_oldest_unused("dynamic", excess) < excess:
        raise _busy("the limit of registered clients is reached", 3600)


def _busy(why: str, retry_after_s: int) -> OAuthError:
    return OAuthError(
        "temporarily_unavailable",
        f"{why}; try again later",
        status=429,
        headers={"Retry-After": str(retry_after_s)},
    )


def _record(asked: RegistrationRequest, kind: AppType) -> tuple[ClientRecord, str | None]:
    method = asked.token_endpoint_auth_method
    secret = new_token() if method in SECRET_METHODS else None
    metadata: dict[str, Any] = asked.model_dump(exclude_none=True, exclude=_SERVER_ASSIGNED)
    record = ClientRecord(
        client_id=f"dyn_{secrets.token_urlsafe(18)}",
        kind="dynamic",
        name=asked.client_name,
        secret_hash=token_hash(secret) if secret else None,
        redirect_uris=list(asked.redirect_uris),
        grant_types=list(asked.grant_types),
        application_type=kind,
        token_endpoint_auth_method=method if secret else PUBLIC,
        scope=asked.scope,
        metadata=metadata,
    )
    return record, secret


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"
