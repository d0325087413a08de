"""``create_app``: the gateway's ASGI app, its routes and the resources its lifespan owns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from atrium.auth.assertion import AssertionSigner
from atrium.auth.replay_redis import RedisReplayCache
from atrium.auth.resource_guard import ResourceGuard
from atrium.auth.routes import oauth_routes
from atrium.auth.server import AuthorizationServer, Hosted
from atrium.gateway import redis_client
from atrium.gateway.audit import AuditSink
from atrium.gateway.cards import Cards
from atrium.gateway.directory import ServerDirectory
from atrium.gateway.guard import Guard
from atrium.gateway.metrics import Metrics
from atrium.gateway.proxy import McpProxy
from atrium.gateway.ratelimit import RateLimiter
from atrium.gateway.registry_api import RegistryApi
from atrium.gateway.sessions import SessionBinding
from atrium.gateway.tools_api import ToolsApi
from atrium.gateway.upstream import Upstreams
from atrium.registry.schema import ServerConfig
from atrium.settings import Settings
from atrium.store import Store

logger = logging.getLogger(__name__)

PURGE_INTERVAL_S = 3600.0
AUDIT_SPILL = "audit-spill.jsonl"
# "registry" is no server's name (registry.schema.RESERVED_NAMES): /api/v1/mcp/registry/mcp is
# the registry entry of a server called "mcp".
_MCP_PATH = re.compile(r"/api/v1/mcp/(?!registry/)([^/]+)/mcp")


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    poll_s: float = 2.0,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The gateway; opens ``store`` (or the settings' store) for its lifetime."""
    directory = ServerDirectory(settings)
    upstreams = Upstreams()
    metrics = Metrics(
        lambda name: name in directory.routes,
        settings.state_dir,
        # Tool labels are the names backends listed: the proxy's catalog (made below, as
        # the proxy takes the audit sink that feeds these metrics).
        known_tool=lambda server, tool: proxy.catalog.knows(server, tool),
    )
    audit = AuditSink(None, settings.state_dir / AUDIT_SPILL, listeners=[metrics.observe])
    redis = _redis(settings)
    replay = RedisReplayCache(redis, prefix=settings.redis.key_prefix) if redis else None
    auth = AuthorizationServer(settings, hosted=_hosted(directory), replay=replay, clock=clock)
    proxy = _proxy(settings, directory, upstreams, audit, auth, redis, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = store is None
        opened = await Store.open(settings) if store is None else store
        directory.store = opened
        await directory.refresh()
        auth.attach(opened)
        await auth.revocations.refresh(opened)
        audit.attach(opened.audit)
        audit.start()
        watcher = asyncio.create_task(_watch(directory, auth, proxy, poll_s), name="registry-watch")
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await audit.close()
            await upstreams.close()
            await auth.close()
            if proxy.limiter is not None:
                await proxy.limiter.close()
            if redis is not None:
                await redis.aclose()
            if owned:
                await opened.close()

    routes = _routes(settings, directory, metrics, auth, proxy)
    app = _Gateway(proxy, routes=routes, lifespan=lifespan)
    app.state.directory = directory
    app.state.audit = audit
    app.state.metrics = metrics
    app.state.proxy = proxy
    app.state.auth = auth
    return app


def _proxy(
    settings: Settings,
    directory: ServerDirectory,
    upstreams: Upstreams,
    audit: AuditSink,
    auth: AuthorizationServer,
    redis: Redis | None,
    clock: Callable[[], float],
) -> McpProxy:
    return McpProxy(
        directory,
        upstreams,
        Guard.from_settings(settings),
        audit,
        ResourceGuard(auth),
        settings.public_url,
        AssertionSigner(settings.state_dir, settings.issuer, clock=clock),
        SessionBinding(auth.session_key),
        RateLimiter.from_settings(settings, redis),
    )


def _routes(
    settings: Settings,
    directory: ServerDirectory,
    metrics: Metrics,
    auth: AuthorizationServer,
    proxy: McpProxy,
) -> list[BaseRoute]:
    """Everything but the MCP endpoint itself, which ``_Gateway`` serves ahead of these."""
    registry = RegistryApi(settings, directory)
    tools_api = ToolsApi(settings, proxy)
    return [
        Route("/health", _health),
        Route("/metrics", metrics.endpoint),
        Route("/api/v1/mcp/registry", registry.list),
        Route("/api/v1/mcp/registry/{server}", registry.get),
        *oauth_routes(auth),
        *Cards(settings, directory).routes(),
        Route("/api/v1/mcp/{server}/openapi.json", tools_api.spec, methods=["GET"]),
        Route("/api/v1/mcp/{server}/tools/{tool}", tools_api.call, methods=["POST"]),
    ]


def _redis(settings: Settings) -> Redis | None:
    """The client shared by the rate limiter and the replay cache, when ``redis.url`` is set.

    Made here, not in the lifespan, because both take it at construction; it connects lazily,
    on first use, and the lifespan closes it.
    """
    url = settings.redis.url
    return redis_client.connect(url, timeout_s=settings.redis.timeout_s) if url else None


def _hosted(directory: ServerDirectory) -> Hosted:
    def hosted(name: str) -> ServerConfig | None:
        route = directory.routes.get(name)
        return route.config if route is not None and route.enabled else None

    return hosted


async def _watch(
    directory: ServerDirectory, auth: AuthorizationServer, proxy: McpProxy, interval_s: float
) -> None:
    """Follow the store: the server registry and the revocation list, one poll each; now and
    then delete the grants that expired (any replica may: the deletes are idempotent)."""
    next_purge = time.monotonic()
    while True:
        await asyncio.sleep(interval_s)
        try:
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + PURGE_INTERVAL_S
                purged = await directory.store_or_fail().grants.purge_expired()
                if purged:
                    logger.info("deleted %d expired codes, refresh tokens and revocations", purged)
            if await directory.refresh():
                proxy.catalog.forget()
                proxy.lookup.forget()
                logger.info("server registry reloaded: %d servers", len(directory.routes))
            await reload_auth(auth, proxy.assertions, directory.store_or_fail())
        except Exception:  # the top of a task: keep serving with what we have
            logger.exception("reloading from the store failed")


async def reload_auth(auth: AuthorizationServer, assertions: AssertionSigner, store: Store) -> None:
    """The revocation list and the signing keys (access tokens', caller assertions') as the
    store and the key files say now: at every poll, and at once when ``atrium admin`` has
    changed them (``GatewayServer.reload_auth``)."""
    await auth.revocations.refresh(store)
    if auth.keys.reload_if_changed():
        logger.info("signing keys reloaded: %d keys", len(auth.keys.keys))
    if assertions.reload_if_changed():
        logger.info("caller-assertion key reloaded: %s", assertions.kid)


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
