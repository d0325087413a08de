"""``create_app``: the gateway's ASGI app, its routes and the resources its lifespan owns."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from atrium.auth.routes import oauth_routes
from atrium.gateway.agents_api import agents_routes
from atrium.gateway.cards import Cards
from atrium.gateway.metrics import Metrics
from atrium.gateway.parts import GatewayParts
from atrium.gateway.registry_api import RegistryApi
from atrium.gateway.tools_api import ToolsApi
from atrium.settings import Settings
from atrium.store import Store
from atrium.store.changes import Change, ChangeFeed
from atrium.web import console_routes

logger = logging.getLogger(__name__)

PURGE_INTERVAL_S = 3600.0
# "registry" is no server's name (registry.schema.RESERVED_NAMES): /api/v1/mcp/registry/mcp is
# the registry entry of a server called "mcp".
# /jsonrpc: the same server's one-shot endpoint (JSON in, JSON out; oneshot.py).
_MCP_PATH = re.compile(r"/api/v1/mcp/(?!registry/)([^/]+)/(mcp|jsonrpc)")
# Where a POST may revoke tokens or change users and clients (the OAuth endpoints, the console):
# what ``Siblings.changed`` tells the other workers of.
_AUTH_CHANGES = ("/api/v1/core/oauth/", "/admin/")


class Siblings(Protocol):
    """The other workers serving this gateway's port (``gateway.workers``,
    ``atrium.gateway.worker``): told of what this one changed, and counted in its metrics."""

    def changed(self, change: Change) -> None: ...

    def exposition(self, own: Metrics) -> bytes: ...


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    poll_s: float = 2.0,
    clock: Callable[[], float] = time.time,
    siblings: Siblings | None = None,
) -> GatewayApp:
    """The gateway; opens ``store`` (or the settings' store) for its lifetime. ``siblings``:
    the other workers of a gateway that runs as several processes."""
    return GatewayApp(settings, store=store, poll_s=poll_s, clock=clock, siblings=siblings)


def _routes(
    parts: GatewayParts,
    siblings: Siblings | None,
    health: Callable[[Request], Awaitable[Response]],
) -> list[BaseRoute]:
    """Everything but the MCP endpoint itself, which ``GatewayApp`` serves ahead of these."""
    settings = parts.settings
    registry = RegistryApi(settings, parts.directory)
    tools_api = ToolsApi(settings, parts.proxy)
    return [
        Route("/health", health),
        Route("/metrics", _metrics(parts.metrics, siblings)),
        Route("/api/v1/mcp/registry", registry.list),
        Route("/api/v1/mcp/registry/{server}", registry.get),
        *oauth_routes(parts.auth),
        *Cards(settings, parts.directory).routes(),
        Route("/api/v1/mcp/{server}/openapi.json", tools_api.spec, methods=["GET"]),
        Route("/api/v1/mcp/{server}/tools/{tool}", tools_api.call, methods=["POST"]),
        *agents_routes(parts),
        *console_routes(parts),
    ]


async def _watch(parts: GatewayParts, interval_s: float) -> None:
    """Follow the store: the server registry and the revocation list, one poll each; now and
    then delete the grants that expired (any replica may: the deletes are idempotent)."""
    next_purge = time.monotonic()
    while True:
        await asyncio.sleep(interval_s)
        try:
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + PURGE_INTERVAL_S
                purged = await parts.store.grants.purge_expired()
                if purged:
                    logger.info("deleted %d expired codes, refresh tokens and revocations", purged)
            await _reload_registry(parts)
            await parts.reload_auth()
        except Exception:  # the top of a task: keep serving with what we have
            logger.exception("reloading from the store failed")


async def _reload_registry(parts: GatewayParts) -> None:
    if await parts.directory.refresh():
        parts.proxy.catalog.forget()
        parts.proxy.lookup.forget()
        parts.proxy.oneshot.forget()
        logger.info("server registry reloaded: %d servers", len(parts.directory.routes))


class _Reloads:
    """What the store's change feed asks for (``atrium.store.changes``): one reload at a time
    per kind of change; changes heard while one runs make one more run after it."""

    def __init__(self, parts: GatewayParts) -> None:
        self._parts = parts
        self._running: dict[Change, asyncio.Task[None]] = {}
        self._again: set[Change] = set()

    def ask(self, change: Change) -> None:
        running = self._running.get(change)
        if running is not None and not running.done():
            self._again.add(change)
            return
        self._running[change] = asyncio.create_task(self._run(change), name=f"reload-{change}")

    async def _run(self, change: Change) -> None:
        while True:
            self._again.discard(change)
            try:
                if change == "auth":
                    await self._parts.reload_auth()
                else:
                    await _reload_registry(self._parts)
            except Exception:  # the top of a task: the poll will try again
                logger.exception("reloading after a store change (%s) failed", change)
            if change not in self._again:
                return

    async def close(self) -> None:
        for task in self._running.values():
            await _stopped(task)


async def _follow_changes(
    stack: contextlib.AsyncExitStack, parts: GatewayParts
) -> ChangeFeed | None:
    """On PostgreSQL, hear revocations and registry changes as they commit (``ChangeFeed``)."""
    if not ChangeFeed.supported(parts.store.engine):
        return None
    reloads = _Reloads(parts)
    stack.push_async_callback(reloads.close)
    feed = ChangeFeed(parts.store.engine, reloads.ask)
    task = asyncio.create_task(feed.run(), name="store-changes")
    stack.push_async_callback(_stopped, task)
    return feed


def _freeze_startup() -> None:
    """What start-up made lives as long as the process: keep it out of every full collection,
    which otherwise walks it all in a request's time (40-70 ms: bench/registry_scale.py).
    Once per process: an object frozen is never collected, so later gateways of the same
    process (tests start many) freeze nothing more."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


_frozen = False


async def _stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@dataclass(frozen=True)
class _Serving:
    parts: GatewayParts
    routes: ASGIApp


class GatewayApp(Starlette):
    """The gateway's ASGI app. Its lifespan opens the store (unless it was given one) and the
    parts (``GatewayParts``), and builds the routes over them; it closes them in reverse.

    The MCP endpoint is served before any middleware or router: every MCP request would
    otherwise cross two exception middlewares and a router scan; the proxy handles its own
    errors (each has a JSON-RPC wire form), so it needs neither.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None,
        poll_s: float,
        clock: Callable[[], float],
        siblings: Siblings | None = None,
    ) -> None:
        super().__init__(lifespan=self._lifespan)
        self.settings = settings
        self._store = store
        self._poll_s = poll_s
        self._clock = clock
        self._siblings = siblings
        self._serving: _Serving | None = None
        # The store's change feed, on PostgreSQL, from the start of the lifespan on.
        self.changes: ChangeFeed | None = None
        # Stopping behind a load balancer (``gateway.drain_s``): /health says so, all else is
        # served as before, so that the balancer moves new calls elsewhere before the port
        # closes.
        self.draining = False

    @property
    def parts(self) -> GatewayParts:
        """What the gateway serves with, from the start of its lifespan on."""
        if self._serving is None:
            raise RuntimeError("the gateway has not started: its lifespan opens its parts")
        return self._serving.parts

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            store = self._store
            if store is None:
                store = await Store.open(self.settings)
                stack.push_async_callback(store.close)
            parts = await GatewayParts.open(self.settings, store, clock=self._clock)
            stack.push_async_callback(parts.close)
            routes = _routes(parts, self._siblings, self._health)
            self._serving = _Serving(parts, Starlette(routes=routes))
            watcher = asyncio.create_task(_watch(parts, self._poll_s), name="registry-watch")
            stack.push_async_callback(_stopped, watcher)
            self.changes = await _follow_changes(stack, parts)
            _freeze_startup()
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or self._serving is None:
            await super().__call__(scope, receive, send)
        elif scope["type"] == "http" and (match := _MCP_PATH.fullmatch(scope["path"])):
            scope["app"] = self
            scope["path_params"] = {"server": match[1], "endpoint": match[2]}
            await self._serving.parts.proxy(scope, receive, send)
        elif self._siblings is None or scope["method"] != "POST":
            await self._serving.routes(scope, receive, send)
        else:
            try:
                await self._serving.routes(scope, receive, send)
            finally:
                if scope["path"].startswith(_AUTH_CHANGES):
                    # Once the store has it; PostgreSQL's feed would tell them too, SQLite's
                    # poll only later.
                    self._siblings.changed("auth")

    async def _health(self, request: Request) -> Response:
        if self.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok"})


def _metrics(
    metrics: Metrics, siblings: Siblings | None
) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics``: this process's counts, and its siblings' when it has any."""
    if siblings is None:
        return metrics.endpoint

    async def endpoint(request: Request) -> Response:
        return Response(siblings.exposition(metrics), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return endpoint
