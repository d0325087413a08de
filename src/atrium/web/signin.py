"""Signing in to the console through Atrium's own authorization server, and out again.

The console is an OAuth client of the gateway it runs in (``atrium-console``, a public client
known in code: ``auth.clients.console_client``): authorization code with PKCE (RFC 7636 S256)
and ``state``, the answer's ``iss`` checked (RFC 9207). The sign-in and consent pages are the
authorization server's own. The code is exchanged at the real token endpoint, called in
process: the console then reads who signed in from the access token and keeps only its own
session cookie (``web.session``); the token itself is not kept.

The return address (``next``) is a path of the console, never another site's (open redirect).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from atrium.auth.errors import OAuthError
from atrium.auth.operator import CONSOLE_CALLBACK_PATH, CONSOLE_CLIENT_ID
from atrium.auth.server import AuthorizationServer
from atrium.auth.token_endpoint import TokenEndpoint
from atrium.web.render import page
from atrium.web.session import Sessions

logger = logging.getLogger(__name__)

FLOW_COOKIE = "atrium_console_flow"
FLOW_TTL_S = 600
HOME = "/admin"
_PURPOSE = "console-flow"
_TOKEN_PATH = "/token"


def safe_next(value: str | None) -> str:
    """``value`` when it is a path of the console, else the dashboard."""
    if not value or "\\" in value or not value.isprintable() or " " in value:
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return HOME
    if parts.path != HOME and not parts.path.startswith(HOME + "/"):
        return HOME
    return value


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class SignIn:
    def __init__(self, auth: AuthorizationServer, sessions: Sessions) -> None:
        self.auth = auth
        self.sessions = sessions
        self.redirect_uri = f"{auth.settings.public_url}{CONSOLE_CALLBACK_PATH}"
        token_app = Starlette(
            routes=[Route(_TOKEN_PATH, TokenEndpoint(auth).handle, methods=["POST"])]
        )
        self._token_transport = httpx2.ASGITransport(app=token_app)

    async def start(self, request: Request) -> Response:
        """``GET /admin/signin?next=…``: off to the authorization endpoint."""
        target = safe_next(request.query_params.get("next"))
        if await self.sessions.viewer(request) is not None:
            return RedirectResponse(target, status_code=303)
        verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(24)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": CONSOLE_CLIENT_ID,
                "redirect_uri": self.redirect_uri,
                "code_challenge": _challenge(verifier),
                "code_challenge_method": "S256",
                "state": state,
            }
        )
        response = RedirectResponse(f"{self.auth.endpoint('authorize')}?{query}", status_code=303)
        flow = {"state": state, "verifier": verifier, "next": target}
        value = self.auth.signer.dumps(_PURPOSE, flow, FLOW_TTL_S)
        self.sessions.set_cookie(response, FLOW_COOKIE, value, FLOW_TTL_S)
        return response

    async def callback(self, request: Request) -> Response:
        """``GET /admin/callback?code=…&state=…&iss=…``: the authorization server's answer."""
        params = request.query_params
        flow = self.auth.signer.loads(_PURPOSE, request.cookies.get(FLOW_COOKIE))
        if not isinstance(flow, dict):
            return _refused("The sign-in took too long or was started elsewhere.", 400)
        if not hmac.compare_digest(str(flow.get("state")), params.get("state") or ""):
            return _refused("The sign-in answer does not belong to this browser.", 400)
        if params.get("iss") not in (None, self.auth.issuer):  # RFC 9207 §2.4
            return _refused("The sign-in answer comes from another issuer.", 400)
        if (refused := params.get("error")) is not None:
            return _refused(f"Sign-in did not complete: {refused}.", 403)
        try:
            subject = await self._exchange(params.get("code") or "", str(flow["verifier"]))
        except OAuthError as error:
            return _refused(f"Sign-in failed: {error.error} ({error.description}).", 400)
        user = await self.auth.store.users.get(subject)
        if user is None or user.disabled:
            return _refused("This account cannot sign in.", 403)
        response = RedirectResponse(safe_next(str(flow.get("next"))), status_code=303)
        self.sessions.start(response, user)
        response.delete_cookie(FLOW_COOKIE, path="/admin")
        logger.info("console: %s signed in", user.username)
        return response

    async def _exchange(self, code: str, verifier: str) -> str:
        """The subject of the access token the code is worth (RFC 6749 §4.1.3)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": CONSOLE_CLIENT_ID,
            "code_verifier": verifier,
        }
        async with httpx2.AsyncClient(
            transport=self._token_transport, base_url="http://console.invalid"
        ) as client:
            answer = await client.post(_TOKEN_PATH, data=form)
        body: Any = answer.json()
        if answer.status_code != 200 or not isinstance(body, dict):
            error = body.get("error", "server_error") if isinstance(body, dict) else "server_error"
            description = body.get("error_description", "") if isinstance(body, dict) else ""
            raise OAuthError(str(error), str(description))
        return self.auth.verifier.verify(str(body["access_token"])).subject

    async def signout(self, request: Request) -> Response:
        """``POST /admin/signout`` (CSRF-checked by the caller): ends every session of the user,
        this cookie's and the authorization server's alike (their epoch moves)."""
        viewer = await self.sessions.viewer(request)
        if viewer is not None:
            await self.auth.store.users.end_sessions(viewer.user.id)
        response = page("signed_out.html", viewer=None)
        self.sessions.end(response)
        return response


def _refused(message: str, status: int) -> Response:
    return page("refused.html", status, viewer=None, message=message)
