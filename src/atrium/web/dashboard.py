"""``/admin``: every server shown in the web (``display_in_web``): state, port, pid, uptime,
restarts, and the last hour's calls, errors and p95 latency; ``/admin/events`` keeps the table
(or one server's status, ``?server=NAME``) current (``web.live``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from atrium.gateway.parts import GatewayParts
from atrium.web.guard import not_found
from atrium.web.live import live
from atrium.web.render import fragment, page
from atrium.web.session import Sessions, Viewer
from atrium.web.status import now, server_rows, shown_routes

BEAT_S = 1.0


class Dashboard:
    def __init__(self, parts: GatewayParts, sessions: Sessions, *, beat_s: float = BEAT_S) -> None:
        self.parts = parts
        self.sessions = sessions
        self.beat_s = beat_s

    async def page(self, request: Request, viewer: Viewer) -> Response:
        rows = await server_rows(self.parts, viewer, shown_routes(self.parts))
        return page("dashboard.html", viewer=viewer, rows=rows, now=now(), nav="dashboard")

    async def events(self, request: Request, viewer: Viewer) -> Response:
        server = request.query_params.get("server")

        async def render(viewer: Viewer) -> str:
            routes = shown_routes(self.parts)
            if server is None:
                rows = await server_rows(self.parts, viewer, routes)
                return fragment("_server_rows.html", rows=rows, now=now())
            chosen = [route for route in routes if route.name == server]
            if not chosen:
                raise not_found(f"Server '{server}'")
            (row,) = await server_rows(self.parts, viewer, chosen)
            return fragment("_server_status.html", row=row, now=now())

        return await live(request, self.sessions, viewer, render, self.beat_s)
