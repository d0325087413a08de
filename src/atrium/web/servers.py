"""``/admin/servers/{name}``: one server's configuration, status, tools (with **try it**), last
calls, Connect section, and for admins its live log tail and start / stop / restart.

Start, stop and restart go to the supervisor over its control channel, as ``atrium infra
services restart`` does (``supervisor.control``); the request returns at once and the page's
status block (``web.live``) shows the server stop and come back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from atrium.errors import AtriumError
from atrium.gateway.directory import ServerRoute
from atrium.gateway.parts import GatewayParts
from atrium.runstate import running_supervisor
from atrium.supervisor import control
from atrium.supervisor.logs import log_tail
from atrium.web import forms, tools
from atrium.web.connect import connect_info
from atrium.web.guard import Refused, not_found
from atrium.web.live import live
from atrium.web.log_secrets import hidden, secret_values
from atrium.web.render import fragment, page
from atrium.web.session import Sessions, Viewer
from atrium.web.status import now, server_rows, shown_routes

logger = logging.getLogger(__name__)

ACTIONS = ("start", "stop", "restart")
LAST_CALLS = 10
LOG_LINES = 60
LOG_BEAT_S = 1.0


class ServerPages:
    def __init__(self, parts: GatewayParts, sessions: Sessions) -> None:
        self.parts = parts
        self.sessions = sessions
        self._requests: set[asyncio.Task[Any]] = set()

    def route(self, request: Request) -> ServerRoute:
        name = request.path_params["name"]
        for route in shown_routes(self.parts):
            if route.name == name:
                return route
        raise not_found(f"Server '{name}'")

    async def page(self, request: Request, viewer: Viewer) -> Response:
        route = self.route(request)
        (row,) = await server_rows(self.parts, viewer, [route])
        calls = await self.parts.store.audit.list_recent(
            LAST_CALLS, server=route.name, subject=viewer.audit_subject
        )
        return page(
            "server.html",
            viewer=viewer,
            nav="dashboard",
            route=route,
            row=row,
            now=now(),
            config=route.config,
            calls=calls,
            connect=connect_info(self.parts.settings, route.name, route.config),
            log=await self._log(route) if viewer.is_admin else None,
            notice=request.query_params.get("notice"),
        )

    async def _log(self, route: ServerRoute, secrets: list[str] | None = None) -> list[str]:
        """The tail of the server's log, its referenced secrets hidden (``log_secrets``)."""
        if secrets is None:
            secrets = await secret_values(route.config, self.parts.settings, self.parts.store)
        path = self.parts.settings.logs_dir / f"mcp-{route.name}.log"
        return hidden(log_tail(path, LOG_LINES), secrets)

    async def log_events(self, request: Request, viewer: Viewer) -> Response:
        route = self.route(request)
        secrets = await secret_values(route.config, self.parts.settings, self.parts.store)

        async def render(_: Viewer) -> str:
            return fragment("_log.html", log=await self._log(route, secrets))

        return await live(request, self.sessions, viewer, render, LOG_BEAT_S)

    async def tools(self, request: Request, viewer: Viewer) -> Response:
        route = self.route(request)
        try:
            async with tools.as_user(self.parts, viewer, route.name) as connection:
                listed = await tools.listed(connection)
        except AtriumError as error:
            return _partial(request, "tools.html", 502, viewer=viewer, route=route, error=error)
        shown = [(tool, forms.fields(tool.get("inputSchema"))) for tool in listed]
        return _partial(request, "tools.html", viewer=viewer, route=route, tools=shown)

    async def try_tool(self, request: Request, viewer: Viewer) -> Response:
        route, name = self.route(request), request.path_params["tool"]
        form = await request.form()
        context: dict[str, Any] = {"viewer": viewer, "route": route, "tool": name}
        # Nothing is raised inside the client's block: the SDK would wrap it in a group.
        tool, problems, outcome = None, None, None
        try:
            async with tools.as_user(self.parts, viewer, route.name) as connection:
                tool = tools.find(await tools.listed(connection), name)
                try:
                    arguments = forms.arguments(tool.get("inputSchema"), form) if tool else {}
                except forms.FormProblem as problem:
                    problems = problem.problems
                if tool is not None and problems is None:
                    outcome = await tools.call(connection, name, arguments)
        except AtriumError as error:
            return _partial(request, "result.html", 502, error=error, **context)
        if tool is None:
            raise not_found(f"Tool '{name}' (for you, on '{route.name}')")
        if problems is not None:
            return _partial(request, "result.html", 422, problems=problems, **context)
        return _partial(request, "result.html", outcome=outcome, **context)

    async def control(self, request: Request, viewer: Viewer) -> Response:
        """Admins only (the gate checks): ask the supervisor, answer before it is done."""
        route, action = self.route(request), request.path_params["action"]
        if action not in ACTIONS:
            raise not_found(f"Action '{action}'")
        state_dir = self.parts.settings.state_dir
        if running_supervisor(state_dir) is None:
            raise Refused(409, "conflict", "No supervisor runs on this host: nothing to " + action)
        task = asyncio.create_task(self._ask(action, route.name))
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)
        logger.info("console: %s asked to %s %s", viewer.user.username, action, route.name)
        notice = f"{action} of {route.name} requested"
        if "hx-request" in request.headers:
            return page("_notice.html", 202, notice=notice)
        return RedirectResponse(f"/admin/servers/{route.name}?notice={action}", status_code=303)

    async def _ask(self, action: str, name: str) -> None:
        message = {"op": action, "names": [name]}
        try:
            # On a loop of its own: uvloop (which ``atrium start`` runs the gateway on) cannot
            # open the supervisor's abstract-namespace socket (EINVAL); asyncio's loop can.
            await asyncio.to_thread(
                asyncio.run, control.request(self.parts.settings.state_dir, message)
            )
        except AtriumError as error:
            logger.warning("console: %s of %s failed: %s", action, name, error)


def _partial(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """The whole page, or (for htmx) only its main part."""
    return page(template, status, partial="hx-request" in request.headers, **context)
