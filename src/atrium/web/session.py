"""Who is at the browser: the console's session cookie and the CSRF token bound to it.

The cookie holds the user's id and session epoch, signed and expiring (``auth.signed``, the
project's session key), ``HttpOnly``, ``SameSite=Lax``, ``Secure`` when the public URL is
https. Every request reads the user again: a user disabled, given another role or signed out
elsewhere (each moves the session epoch, ``store.users``) is signed out here at once.

The CSRF token of every form is an HMAC of the session cookie (``Signer.csrf_token``): a form
on another site can make the browser send the cookie but cannot read it to compute the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from atrium.auth.roles import ADMIN, TOOLS_WRITE
from atrium.auth.server import AuthorizationServer
from atrium.store import UserRecord

SESSION_COOKIE = "atrium_console"
SESSION_TTL_S = 8 * 3600
COOKIE_PATH = "/admin"
_PURPOSE = "console-session"

Standing = Literal["admin", "user", "reader"]


@dataclass(frozen=True)
class Viewer:
    """The signed-in user, the scopes their role grants and the CSRF token of their forms."""

    user: UserRecord
    scopes: frozenset[str]
    csrf: str

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    @property
    def standing(self) -> Standing:
        """What the console lets them do: operate (admin), call tools (user), look (reader).
        A custom role counts by the scopes it grants, not its name."""
        if self.is_admin:
            return "admin"
        return "user" if TOOLS_WRITE in self.scopes else "reader"

    @property
    def audit_subject(self) -> str | None:
        """Whose audit records they see: everyone's for an admin, else their own."""
        return None if self.is_admin else self.user.id


class Sessions:
    def __init__(self, auth: AuthorizationServer) -> None:
        self.auth = auth
        self.secure = auth.settings.public_url.startswith("https://")

    def cookie_value(self, user: UserRecord) -> str:
        session = {"sub": user.id, "epoch": user.session_epoch}
        return str(self.auth.signer.dumps(_PURPOSE, session, SESSION_TTL_S))

    async def viewer(self, request: Request) -> Viewer | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        session = self.auth.signer.loads(_PURPOSE, cookie)
        if not isinstance(session, dict) or not isinstance(session.get("sub"), str):
            return None
        user = await self.auth.store.users.get(session["sub"])
        if user is None or user.disabled or session.get("epoch") != user.session_epoch:
            return None
        assert cookie is not None
        scopes = self.auth.roles.scopes_of(user.role)
        return Viewer(user, scopes, self.auth.signer.csrf_token(cookie))

    def csrf_ok(self, request: Request, field: str | None) -> bool:
        return bool(self.auth.signer.csrf_ok(request.cookies.get(SESSION_COOKIE), field))

    def start(self, response: Response, user: UserRecord) -> None:
        self.set_cookie(response, SESSION_COOKIE, self.cookie_value(user), SESSION_TTL_S)

    def end(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path=COOKIE_PATH, secure=self.secure, httponly=True, samesite="lax"
        )

    def set_cookie(self, response: Response, name: str, value: str, ttl_s: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=ttl_s,
            path=COOKIE_PATH,
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )
