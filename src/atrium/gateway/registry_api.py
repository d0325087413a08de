"""``GET /api/v1/mcp/registry`` and ``/api/v1/mcp/registry/{server}``: what this gateway serves.

Lists the servers shown on the web (``display_in_web``); a hidden server is not listed and its
entry answers 404, as an unknown one would. Callers are anonymous until OAuth exists; an
admin caller will then see every server.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from atrium.gateway.directory import ServerDirectory, ServerRoute
from atrium.runstate import read_state
from atrium.settings import Settings


class RegistryApi:
    def __init__(self, settings: Settings, directory: ServerDirectory) -> None:
        self.settings = settings
        self.directory = directory

    def _entry(self, route: ServerRoute, states: dict[str, str]) -> dict[str, Any]:
        config = route.config
        status = "disabled" if not route.enabled else states.get(route.name, "unknown")
        if route.enabled and config.transport == "remote":
            status = "remote"
        return {
            "name": route.name,
            "description": config.description,
            "endpoint": self.settings.endpoint_for(route.name),
            "transport": config.transport,
            "oauth": {"required": config.oauth.required, "scopes": list(config.oauth.scopes)},
            "status": status,
        }

    def _states(self) -> dict[str, str]:
        # On one host the supervisor's state file says whether a backend runs; replicas have
        # none and report "unknown".
        state = read_state(self.settings.state_dir)
        return {name: s.state for name, s in state.servers.items()} if state else {}

    async def list(self, request: Request) -> JSONResponse:
        states = self._states()
        visible = [r for r in self.directory.routes.values() if r.config.display_in_web]
        return JSONResponse({"servers": [self._entry(r, states) for r in visible]})

    async def get(self, request: Request) -> JSONResponse:
        name = request.path_params["server"]
        route = self.directory.routes.get(name)
        if route is None or not route.config.display_in_web:
            return JSONResponse({"error": f"server '{name}' not found"}, status_code=404)
        return JSONResponse(self._entry(route, self._states()))
