"""Every console endpoint behind one gate: a session, a CSRF token on every POST (whose body is
read no further than ``MAX_FORM_BYTES``), the role the endpoint asks for, and a page (never a
traceback) when something breaks.

Refusals carry their reason as ``data-error`` on the page's ``<main>`` (``session``, ``csrf``,
``forbidden``, ``not_found``, ``conflict``, ``too_large``, ``bad_request``, ``server_error``), so
tests and scripts can tell them apart without reading prose.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Message, Receive

from atrium.gateway.errors import GatewayError
from atrium.gateway.guard import read_body
from atrium.web.render import page
from atrium.web.session import Sessions, Viewer

logger = logging.getLogger(__name__)

# The console's forms hold names, roles and the texts of skills and agents: Starlette already
# refuses a field over 1 MiB, so no form of the console needs more in all.
MAX_FORM_BYTES = 1024 * 1024
Handler = Callable[[Request, Viewer], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


class Refused(Exception):
    """A request the console answers with an error page: ``status``, ``code``, ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def refusal(error: Refused, viewer: Viewer | None = None) -> Response:
    return page("refused.html", error.status, viewer=viewer, code=error.code, message=error.message)


def not_found(what: str) -> Refused:
    return Refused(404, "not_found", f"{what} is not here.")


class Gate:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    def __call__(self, handler: Handler, *, admin: bool = False) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            viewer: Viewer | None = None
            try:
                viewer = await self.sessions.viewer(request)
                if viewer is None:
                    return _sign_in_first(request)
                if request.method == "POST":
                    request = await _read_form(request)
                    field = (await request.form()).get("csrf")
                    if not self.sessions.csrf_ok(request, field if isinstance(field, str) else ""):
                        raise Refused(403, "csrf", "The form is stale: reload the page and retry.")
                if admin and not viewer.is_admin:
                    raise Refused(403, "forbidden", "Only administrators may do this.")
                return await handler(request, viewer)
            except Refused as error:
                return refusal(error, viewer)
            except Exception:  # the top of a request: a page, and the log says what broke
                logger.exception("console: %s %s failed", request.method, request.url.path)
                failed = Refused(500, "server_error", "Something broke; the gateway log says what.")
                return refusal(failed, viewer)

        return endpoint


async def _read_form(request: Request) -> Request:
    """``request`` over its body, read whole but refused (413) as soon as it passes
    ``MAX_FORM_BYTES``, before (``Content-Length``) or while it is read."""
    length = request.headers.get("content-length", "")
    too_large = Refused(413, "too_large", f"The form is larger than {MAX_FORM_BYTES} bytes.")
    if length.isdigit() and int(length) > MAX_FORM_BYTES:
        raise too_large
    try:
        body = await read_body(request.receive, MAX_FORM_BYTES)
    except GatewayError as error:
        if error.status == 413:
            raise too_large from None
        raise Refused(400, "bad_request", "The browser went away while sending the form.") from None
    return Request(request.scope, _replaying(body, request.receive))


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive channel that gives ``body`` whole, then whatever ``receive`` says next (a
    disconnect): what the handler's ``request.form()`` reads."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _sign_in_first(request: Request) -> Response:
    if request.method == "GET" and "hx-request" not in request.headers:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/admin/signin?{urlencode({'next': target})}", status_code=303)
    return refusal(Refused(401, "session", "Your session has ended: sign in again."))
