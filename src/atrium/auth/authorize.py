"""The authorization endpoint (RFC 6749 §4.1.1, OAuth 2.1 §4.1) with sign-in and consent.

Order matters (RFC 6749 §4.1.2.1): until the client and its redirect URI are known good, errors
are shown on a page and never redirected; after that they go back to the client with its
``state``. Every answer that goes back carries ``iss`` (RFC 9207) so a client talking to two
servers can tell whose answer it got. The pending request travels through the forms signed
and short-lived, so any replica can finish a flow another began.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from atrium.auth import pkce
from atrium.auth.clients import Client, redirect_allowed
from atrium.auth.errors import OAuthError, invalid_request
from atrium.auth.hashing import dummy_password_hash, new_token, password_matches, token_hash
from atrium.auth.pages import Pages
from atrium.auth.redirects import check_not_own_port
from atrium.auth.roles import default_scopes
from atrium.auth.server import CODE_TTL_S, AuthorizationServer
from atrium.auth.throttle import client_address
from atrium.auth.wire import read_form
from atrium.store import CodeRecord, UserRecord

SESSION_COOKIE = "atrium_session"
SESSION_TTL_S = 8 * 3600
PENDING_TTL_S = 600
# RFC 6749 §3.1: no parameter may appear twice (``resource`` may: RFC 8707 §2).
_SINGLE = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "dpop_jkt",
)

# Made when the authorization server loads, so the first unknown user takes no longer either.
DUMMY_PASSWORD_HASH = dummy_password_hash()


class Authorize:
    def __init__(self, auth: AuthorizationServer) -> None:
        self.auth = auth
        secure = auth.settings.oauth_base.startswith("https://")
        self.pages = Pages(auth.signer, urlsplit(auth.settings.oauth_base).path, secure=secure)
        self.secure = secure
        self.throttle = auth.signins

    async def start(self, request: Request) -> Response:
        params = request.query_params
        try:
            for name in _SINGLE:
                if len(params.getlist(name)) > 1:
                    raise invalid_request(f"parameter {name!r} is repeated")
            client = await self.auth.clients.find(params.get("client_id"))
            redirect_uri = _redirect_uri(client, params.get("redirect_uri"))
            # Again here: a loopback redirect may name any port (RFC 8252 §7.3). The console's
            # own callback is on the gateway by design: exactly that one URI is let through.
            if not (client.kind == "builtin" and redirect_uri in client.redirect_uris):
                check_not_own_port(redirect_uri, await self.auth.own_ports(), registering=False)
        except OAuthError as error:
            return self.pages.error(request, error.error, error.description)
        try:
            pending = self._pending(client, redirect_uri, params)
        except OAuthError as error:
            return _back(redirect_uri, params.get("state"), self.auth.issuer, error=error)
        user = await self._signed_in_user(request)
        if user is None:
            return self._login_page(request, pending)
        return self._consent_page(request, pending, user)

    def _pending(self, client: Client, redirect_uri: str, params: Any) -> dict[str, Any]:
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "response_type must be code")
        challenge = pkce.check_challenge(
            params.get("code_challenge"), params.get("code_challenge_method")
        )
        asked = params.getlist("resource")
        resources = self.auth.audience_for(asked) if asked else []
        scopes = (params.get("scope") or "").split()
        known = set(self.auth.roles.all_scopes())
        unknown = [scope for scope in scopes if scope not in known]
        if unknown:
            raise OAuthError("invalid_scope", f"unknown scope(s): {' '.join(unknown)}")
        return {
            "client_id": client.client_id,
            "client_name": client.display_name,
            "client_kind": client.kind,
            "redirect_uri": redirect_uri,
            "state": params.get("state"),
            "challenge": challenge,
            "scopes": scopes or sorted(self._default_scopes(resources)),
            "resources": resources,
            "dpop_jkt": params.get("dpop_jkt"),  # RFC 9449 §10
            "client_scope": sorted(client.scope) if client.scope is not None else None,
        }

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        pending = self.auth.signer.loads("authz", _text(form.get("request")))
        if pending is None:
            return self.pages.error(request, "invalid_request", "the sign-in form has expired")
        if not self.pages.csrf_ok(request, _text(form.get("csrf"))):
            return self.pages.error(request, "invalid_request", "the form's CSRF token is wrong")
        username = _text(form.get("username")) or ""
        address = client_address(request)
        if await self.throttle.blocked(username, address):
            return self._login_page(
                request,
                pending,
                status=429,
                username=username,
                error="Too many failed sign-ins; wait a minute and try again.",
            )
        user = await self.auth.store.users.by_username(username)
        # Always verify a hash, so the answer time does not reveal which names exist.
        stored = user.password_hash if user is not None else DUMMY_PASSWORD_HASH
        ok = password_matches(_text(form.get("password")) or "", stored)
        if user is None or not ok or user.disabled:
            await self.throttle.failed(username, address)
            return self._login_page(
                request,
                pending,
                status=401,
                username=username,
                error="Wrong user name or password.",
            )
        response = self._consent_page(request, pending, user)
        response.set_cookie(
            SESSION_COOKIE,
            self.auth.signer.dumps(
                "session", {"sub": user.id, "epoch": user.session_epoch}, SESSION_TTL_S
            ),
            max_age=SESSION_TTL_S,
            httponly=True,
            samesite="lax",
            secure=self.secure,
            path=self.pages.base,
        )
        return response

    async def consent(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        pending = self.auth.signer.loads("authz", _text(form.get("request")))
        if pending is None:
            return self.pages.error(request, "invalid_request", "the consent form has expired")
        if not self.pages.csrf_ok(request, _text(form.get("csrf"))):
            return self.pages.error(request, "invalid_request", "the form's CSRF token is wrong")
        user = await self._signed_in_user(request)
        if user is None:
            return self._login_page(request, pending, status=401)
        state, redirect_uri = pending["state"], pending["redirect_uri"]
        if _text(form.get("decision")) != "approve":
            denied = OAuthError("access_denied", "the user denied the request")
            return _back(redirect_uri, state, self.auth.issuer, error=denied)
        granted = self._granted(pending, user)
        if not granted:
            refused = OAuthError("invalid_scope", "the user holds none of the requested scopes")
            return _back(redirect_uri, state, self.auth.issuer, error=refused)
        code = await self._issue_code(pending, user, granted)
        return _back(redirect_uri, state, self.auth.issuer, code=code)

    async def signout(self, request: Request) -> Response:
        """End the sign-in session: clear the cookie, and move the user's session epoch, which
        ends every session of theirs (a copy of the cookie kept elsewhere included). The form is
        CSRF-checked like the others; posted with a pending ``request``, the sign-in page for
        it follows, so another user can sign in and finish the flow."""
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        if not self.pages.csrf_ok(request, _text(form.get("csrf"))):
            return self.pages.error(request, "invalid_request", "the form's CSRF token is wrong")
        user = await self._signed_in_user(request)
        if user is not None:
            await self.auth.store.users.end_sessions(user.id)
        pending = self.auth.signer.loads("authz", _text(form.get("request")))
        response = (
            self._login_page(request, pending)
            if isinstance(pending, dict)
            else self.pages.render(request, "signed_out.html")
        )
        response.delete_cookie(
            SESSION_COOKIE,
            path=self.pages.base,
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )
        return response

    async def _form(self, request: Request) -> dict[str, str] | Response:
        """A posted page form, capped before it is read like every OAuth body (``wire``);
        an error page when it is too large or malformed."""
        try:
            return await read_form(request)
        except OAuthError as error:
            return self.pages.error(request, error.error, error.description)

    def _default_scopes(self, resources: list[str]) -> frozenset[str]:
        """No ``scope`` asked: the default (``roles.default_scopes``), never the whole role."""
        configs = (self.auth.hosted(self.auth.resources.server_of(r) or "") for r in resources)
        return default_scopes(s for config in configs if config for s in config.oauth.scopes)

    def _granted(self, pending: dict[str, Any], user: UserRecord) -> list[str]:
        held = self.auth.roles.scopes_of(user.role)
        if pending.get("client_scope") is not None:
            held &= set(pending["client_scope"])  # what the client may ever be granted
        asked = pending["scopes"] or sorted(default_scopes())
        return [scope for scope in asked if scope in held]

    async def _issue_code(
        self, pending: dict[str, Any], user: UserRecord, scopes: list[str]
    ) -> str:
        code = new_token()
        now = datetime.fromtimestamp(self.auth.clock(), UTC)
        await self.auth.store.grants.add_code(
            CodeRecord(
                code_hash=token_hash(code),
                client_id=pending["client_id"],
                user_id=user.id,
                redirect_uri=pending["redirect_uri"],
                code_challenge=pending["challenge"],
                scope=" ".join(scopes),
                resource=" ".join(pending["resources"]) or None,
                jkt=pending["dpop_jkt"],
                family_id=secrets.token_urlsafe(16),
                created_at=now,
                expires_at=now + timedelta(seconds=CODE_TTL_S),
            )
        )
        return code

    async def _signed_in_user(self, request: Request) -> UserRecord | None:
        session = self.auth.signer.loads("session", request.cookies.get(SESSION_COOKIE))
        if not isinstance(session, dict) or not isinstance(session.get("sub"), str):
            return None
        user = await self.auth.store.users.get(session["sub"])
        # A session of an earlier epoch was ended: signed out, or the user's password, role or
        # standing changed since (store.users).
        if user is None or user.disabled or session.get("epoch") != user.session_epoch:
            return None
        return user

    def _login_page(
        self, request: Request, pending: dict[str, Any], status: int = 200, **extra: Any
    ) -> Response:
        return self.pages.render(
            request,
            "login.html",
            status,
            action=f"{self.pages.base}/login",
            **_client_shown(pending),
            pending=self.auth.signer.dumps("authz", pending, PENDING_TTL_S),
            username=extra.get("username", ""),
            error=extra.get("error"),
        )

    def _consent_page(
        self, request: Request, pending: dict[str, Any], user: UserRecord
    ) -> Response:
        return self.pages.render(
            request,
            "consent.html",
            action=f"{self.pages.base}/consent",
            **_client_shown(pending),
            username=user.username,
            scopes=self._granted(pending, user) or pending["scopes"],
            resources=pending["resources"] or [self.auth.options.default_audience],
            redirect_host=urlsplit(pending["redirect_uri"]).netloc or pending["redirect_uri"],
            pending=self.auth.signer.dumps("authz", pending, PENDING_TTL_S),
        )


def _client_shown(pending: dict[str, Any]) -> dict[str, Any]:
    """How the pages name the client. Only one an operator created has a name someone vouches
    for; any other chose its own (RFC 7591 §5, "Client Impersonation"), so the pages say so.
    A metadata document's host is known, though: the document was fetched from there."""
    kind = pending.get("client_kind")
    return {
        "client_name": pending["client_name"],
        "client_verified": kind in ("confidential", "builtin"),
        "client_site": urlsplit(pending["client_id"]).netloc if kind == "metadata" else None,
    }


def _redirect_uri(client: Client, asked: str | None) -> str:
    if asked is None:
        # OAuth 2.1 §4.1.1: optional only when the client registered exactly one.
        if len(client.redirect_uris) == 1:
            return client.redirect_uris[0]
        raise invalid_request("redirect_uri is required")
    # Only a native app listens on whatever loopback port it gets (RFC 8252 §7.3); the
    # console's one callback is on the gateway, so any other port is someone else's listener.
    exact = client.kind == "builtin"
    allowed = asked in client.redirect_uris or (
        not exact and redirect_allowed(asked, client.redirect_uris)
    )
    if not allowed:
        raise invalid_request("redirect_uri is not registered for this client")
    return asked


def _back(
    redirect_uri: str,
    state: str | None,
    issuer: str,
    *,
    code: str | None = None,
    error: OAuthError | None = None,
) -> Response:
    params: dict[str, str] = {}
    if code is not None:
        params["code"] = code
    if error is not None:
        params["error"] = error.error
        params["error_description"] = error.description
    if state is not None:
        params["state"] = state
    params["iss"] = issuer
    separator = "&" if urlsplit(redirect_uri).query else "?"
    response = RedirectResponse(f"{redirect_uri}{separator}{urlencode(params)}", status_code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
