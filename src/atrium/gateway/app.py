"""``create_app``: the gateway's ASGI app, its routes and the resources its lifespan owns."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from atrium.gateway.audit import AuditSink
from atrium.gateway.directory import ServerDirectory
from atrium.gateway.guard import Guard
from atrium.gateway.proxy import McpProxy
from atrium.gateway.registry_api import RegistryApi
from atrium.gateway.upstream import Upstreams
from atrium.settings import Settings
from atrium.store import Store

AUDIT_SPILL = "audit-spill.jsonl"
# "registry" is no server's name (registry.schema.RESERVED_NAMES): /api/v1/mcp/registry/mcp is
# the registry entry of a server called "mcp".
_MCP_PATH = re.compile(r"/api/v1/mcp/(?!registry/)([^/]+)/mcp")


def create_app(settings: Settings, *, store: Store | None = None, poll_s: float = 2.0) -> Starlette:
    """The gateway; opens ``store`` (or the settings' store) for its lifetime."""
    directory = ServerDirectory(settings)
    upstreams = Upstreams()
    audit = AuditSink(None, settings.state_dir / AUDIT_SPILL)
    proxy = McpProxy(directory, upstreams, Guard.from_settings(settings), audit)
    registry = RegistryApi(settings, directory)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = store is None
        opened = await Store.open(settings) if store is None else store
        directory.store = opened
        await directory.refresh()
        audit.attach(opened.audit)
        audit.start()
        watcher = asyncio.create_task(directory.watch(poll_s), name="registry-watch")
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await audit.close()
            await upstreams.close()
            if owned:
                await opened.close()

    routes = [
        Route("/health", _health),
        Route("/api/v1/mcp/registry", registry.list),
        Route("/api/v1/mcp/registry/{server}", registry.get),
    ]
    app = _Gateway(proxy, routes=routes, lifespan=lifespan)
    app.state.directory = directory
    app.state.audit = audit
    app.state.proxy = proxy
    return app


class _Gateway(Starlette):
    """Starlette, with the MCP endpoint served before its middleware and router.

    Every MCP request would otherwise cross two exception middlewares and a router scan; the
    proxy handles its own errors (each has a JSON-RPC wire form), so it needs neither.
    """

    def __init__(self, proxy: McpProxy, **options: Any) -> None:
        super().__init__(**options)
        self._proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (match := _MCP_PATH.fullmatch(scope["path"])):
            scope["app"] = self
            scope["path_params"] = {"server": match[1]}
            await self._proxy(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})
