"""Server-rendered pages of the authorization flow: no script at all, CSRF-protected forms.

The Content-Security-Policy allows the one stylesheet and nothing else; pages can't be framed
(clickjacking on the consent button) and are never cached.
"""

from __future__ import annotations

import secrets
from importlib.resources import files
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from atrium.auth.signed import Signer

CSRF_COOKIE = "atrium_csrf"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_templates = Environment(
    loader=PackageLoader("atrium.auth", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
STYLESHEET = files("atrium.auth").joinpath("templates/style.css").read_bytes()


class Pages:
    def __init__(self, signer: Signer, base: str, *, secure: bool) -> None:
        self.signer = signer
        self.base = base
        self.secure = secure

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        html = _templates.get_template(template).render(
            static=f"{self.base}/static",
            csrf=self.signer.csrf_token(cookie),
            **context,
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if request.cookies.get(CSRF_COOKIE) != cookie:
            response.set_cookie(
                CSRF_COOKIE,
                cookie,
                httponly=True,
                samesite="strict",
                secure=self.secure,
                path=self.base,
            )
        return response

    def error(self, request: Request, error: str, description: str) -> HTMLResponse:
        return self.render(request, "error.html", 400, error=error, description=description)

    def csrf_ok(self, request: Request, field: str | None) -> bool:
        return self.signer.csrf_ok(request.cookies.get(CSRF_COOKIE), field)


def stylesheet(_: Request) -> Response:
    return Response(
        STYLESHEET,
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
