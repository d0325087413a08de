"""Dynamic client registration (RFC 7591), open to any client, capped and self-cleaning.

``application_type`` is required (the MCP spec's SEP-837 profile of OIDC registration): a
``native`` client redirects to loopback or a private-use scheme (RFC 8252 §7), a ``web`` client
to https. Clients that registered but never obtained a token expire, and the number of live
dynamic clients is capped, so open registration cannot fill the store.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from atrium.auth.clients import PUBLIC, SECRET_METHODS
from atrium.auth.errors import OAuthError, invalid_client_metadata, invalid_redirect_uri
from atrium.auth.hashing import new_token, token_hash
from atrium.auth.server import AuthorizationServer
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
_PRIVATE_SCHEME_DENY = frozenset({"javascript", "data", "file", "vbscript", "about", "blob"})


class RegistrationRequest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    redirect_uris: list[str] = Field(min_length=1, max_length=20)
    application_type: Literal["native", "web"]
    token_endpoint_auth_method: Literal["none", "client_secret_basic", "client_secret_post"] = (
        "client_secret_basic"  # RFC 7591 §2 default
    )
    grant_types: list[Literal["authorization_code", "refresh_token"]] = ["authorization_code"]
    response_types: list[Literal["code"]] = ["code"]
    client_name: str | None = Field(default=None, max_length=200)
    client_uri: str | None = Field(default=None, max_length=2000)
    logo_uri: str | None = Field(default=None, max_length=2000)
    scope: str | None = Field(default=None, max_length=2000)
    software_id: str | None = Field(default=None, max_length=200)
    software_version: str | None = Field(default=None, max_length=100)


def check_redirect(uri: str, application_type: str, *, dev_mode: bool) -> None:
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        raise invalid_redirect_uri(f"{uri!r} is not a valid URI") from None
    if not parts.scheme or parts.fragment or parts.username is not None:
        raise invalid_redirect_uri(f"{uri!r} must be absolute, without fragment or userinfo")
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme == "https" and parts.hostname:
        return
    if loopback and (application_type == "native" or dev_mode):
        return
    if application_type == "native" and parts.scheme not in ("http", "https"):
        if parts.scheme.lower() in _PRIVATE_SCHEME_DENY:
            raise invalid_redirect_uri(f"{uri!r} uses a scheme that cannot be a redirect")
        return  # a private-use scheme (RFC 8252 §7.1)
    raise invalid_redirect_uri(
        f"{uri!r} is not allowed for a {application_type} client "
        "(web: https; native: http loopback or a private-use scheme)"
    )


async def register(auth: AuthorizationServer, request: Request) -> Response:
    try:
        payload = await read_json(request)
        try:
            asked = RegistrationRequest.model_validate(payload)
        except ValidationError as exc:
            raise invalid_client_metadata(_first_problem(exc)) from None
        for uri in asked.redirect_uris:
            check_redirect(uri, asked.application_type, dev_mode=auth.options.dev_mode)
        if asked.scope is not None:
            unknown = set(asked.scope.split()) - set(auth.roles.all_scopes())
            if unknown:
                raise invalid_client_metadata(f"unknown scope(s): {' '.join(sorted(unknown))}")
        await _make_room(auth)
        record, secret = _record(asked)
        await auth.store.clients.add(record)
    except OAuthError as error:
        return oauth_error_response(error)
    body = {**record.metadata, "client_id": record.client_id}
    body["client_id_issued_at"] = int(auth.clock())
    if secret is not None:
        body["client_secret"] = secret
        body["client_secret_expires_at"] = 0
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})


async def _make_room(auth: AuthorizationServer) -> None:
    store = auth.store
    now = datetime.fromtimestamp(auth.clock(), UTC)
    cutoff = now - timedelta(seconds=auth.options.unused_client_ttl_s)
    await store.clients.delete_unused("dynamic", cutoff)
    if await store.clients.count("dynamic") >= auth.options.max_dynamic_clients:
        raise OAuthError(
            "temporarily_unavailable",
            "the limit of registered clients is reached; try again later",
            status=429,
            headers={"Retry-After": "3600"},
        )


def _record(asked: RegistrationRequest) -> tuple[ClientRecord, str | None]:
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
        application_type=asked.application_type,
        token_endpoint_auth_method=method if secret else PUBLIC,
        scope=asked.scope,
        metadata=metadata,
    )
    return record, secret


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"
