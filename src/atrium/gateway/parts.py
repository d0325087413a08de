"""``GatewayParts``: everything the gateway's routes share, built in one place.

The app's lifespan opens them once its store is open (``GatewayParts.open``: the key files are
read there, never in a constructor) and closes them after the last request. Nothing is attached
to them later, so none of their attributes is ever missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from atrium.auth.assertion import AssertionSigner
from atrium.auth.caller_keystore import CallerKeyStore
from atrium.auth.replay_redis import RedisReplayCache
from atrium.auth.resource_guard import ResourceGuard
from atrium.auth.server import AuthorizationServer, Hosted
from atrium.gateway import redis_client
from atrium.gateway.audit import AuditSink
from atrium.gateway.directory import ServerDirectory
from atrium.gateway.guard import Guard
from atrium.gateway.journal import JOURNAL_DIR
from atrium.gateway.metrics import Metrics
from atrium.gateway.proxy import McpProxy
from atrium.gateway.ratelimit import RateLimiter
from atrium.gateway.sessions import SessionBinding
from atrium.gateway.upstream import Upstreams
from atrium.registry.schema import ServerConfig
from atrium.settings import Settings
from atrium.store import Store

logger = logging.getLogger(__name__)

AUDIT_SPILL = "audit-spill.jsonl"  # written by earlier versions; replayed, then gone


@dataclass(frozen=True)
class GatewayParts:
    settings: Settings
    store: Store
    directory: ServerDirectory
    auth: AuthorizationServer
    audit: AuditSink
    metrics: Metrics
    proxy: McpProxy
    # Shared by the rate limiter and the replay cache, when ``redis.url`` is set.
    redis: Redis | None

    @classmethod
    async def open(
        cls, settings: Settings, store: Store, *, clock: Callable[[], float]
    ) -> GatewayParts:
        """The parts over ``store``: the registry and the revocation list loaded, the signing
        keys read, the audit journals of gone processes replayed, the audit writer started."""
        directory = ServerDirectory(settings, store)
        await directory.refresh()
        redis = _redis(settings)
        replay = RedisReplayCache(redis, prefix=settings.redis.key_prefix) if redis else None
        auth = await AuthorizationServer.open(
            settings, store, hosted=_hosted(directory), replay=replay, redis=redis, clock=clock
        )
        metrics = Metrics(
            lambda name: name in directory.routes,
            settings.state_dir,
            # Tool labels are the names backends listed: the proxy's catalog (made below, as
            # the proxy takes the audit sink that feeds these metrics).
            known_tool=lambda server, tool: proxy.catalog.knows(server, tool),
            replica=settings.replica_id,
        )
        audit = AuditSink(
            store.audit, settings.state_dir / JOURNAL_DIR, listeners=[metrics.observe]
        )
        assertions = await CallerKeyStore.of(settings, store, clock=clock).signer()
        proxy = _proxy(settings, directory, audit, auth, redis, assertions)
        # Before the first request: the journals of gateway processes that are gone, and the
        # spill file of earlier versions, replayed into the store.
        await audit.start(legacy_spill=settings.state_dir / AUDIT_SPILL)
        return cls(settings, store, directory, auth, audit, metrics, proxy, redis)

    async def close(self) -> None:
        """Write the queued audit records, then close every connection the parts hold (the
        store's is its owner's to close)."""
        await self.audit.close()
        self.proxy.oneshot.close()
        await self.proxy.upstreams.close()
        await self.auth.close()
        if self.proxy.limiter is not None:
            await self.proxy.limiter.close()
        if self.redis is not None:
            await self.redis.aclose()

    async def reload_auth(self) -> None:
        """The revocation list and the keys (access tokens', the session's, caller
        assertions') as the store says now: at every poll, and at once when ``atrium admin``
        has changed them (``GatewayServer.reload_auth``). Keys that cannot be reloaded are kept."""
        await self.auth.revocations.refresh(self.store)
        key_store, session_store = self.auth.key_store, self.auth.session_store
        if key_store is not None and await key_store.reload(self.auth.keys):
            logger.info("signing keys reloaded: %d keys", len(self.auth.keys.keys))
        if session_store is not None and await session_store.reload(self.auth.session_keys):
            logger.info("session keys reloaded: %d keys", len(self.auth.session_keys.all))
        if await self.proxy.assertions.reload():
            logger.info("caller-assertion keys reloaded: %d keys", len(self.proxy.assertions.keys))


def _proxy(
    settings: Settings,
    directory: ServerDirectory,
    audit: AuditSink,
    auth: AuthorizationServer,
    redis: Redis | None,
    assertions: AssertionSigner,
) -> McpProxy:
    return McpProxy(
        directory,
        Upstreams(),
        Guard.from_settings(settings),
        audit,
        ResourceGuard(auth),
        settings.public_url,
        assertions,
        SessionBinding(auth.session_keys),
        RateLimiter.from_settings(settings, redis),
    )


def _redis(settings: Settings) -> Redis | None:
    """It connects lazily, on first use; ``GatewayParts.close`` closes it."""
    url = settings.redis.url
    return redis_client.connect(url, timeout_s=settings.redis.timeout_s) if url else None


def _hosted(directory: ServerDirectory) -> Hosted:
    def hosted(name: str) -> ServerConfig | None:
        route = directory.routes.get(name)
        return route.config if route is not None and route.enabled else None

    return hosted
