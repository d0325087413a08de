"""Rate limits on tool calls, per caller and server (or per tool), in memory or in Redis.

What counts: each ``tools/call`` of a POST, so a batch of three calls costs three. Nothing else
does: ``initialize``, ``tools/list``, notifications and GET or DELETE streams are what every
client sends to get going, and a limit like ``1000/day`` is about the work tools do.

Which limit: a server's ``rate_limit`` replaces ``ratelimit.default`` for it; with neither, a
request is not counted at all (no Redis round trip on that path).

Whose budget: ``sub:<subject>`` for a user, ``client:<client_id>`` for a client acting for
itself (client_credentials tokens have sub == client_id), ``anon:<address>`` for anonymous
callers, the address being the TCP peer (ASGI ``client``). Behind a reverse proxy that is the
proxy, so anonymous callers share one budget there, unless the operator lists the proxy in
``gateway.trusted_proxies``: then uvicorn puts the address its ``X-Forwarded-For`` names in
``client`` (``gateway.serve.forwarding``). From anyone else that header is ignored, since any
client can send one. With ``ratelimit.per_tool`` each tool has a budget of its own. Keys follow
the ``limits`` layout: ``<prefix>:rl:LIMITER/<server>/<caller>[/<tool>]/<n>/<k>/<period>``; the
rate is part of the key, so a changed ``rate_limit`` starts afresh.

Strategy: fixed window (``limits``' ``FixedWindowRateLimiter``). A check is one atomic
INCR-and-EXPIRE and a key one counter, whatever the rate; the moving window keeps a timestamp
per call let through (1000 of them per caller and server for ``1000/day``) and runs a longer
script on every call. A window opens at a key's first call, not on the clock, so budgets do not
all reset at one instant; the price is that up to twice the rate can pass across a window's
end, which is fine for abuse protection. ``Retry-After`` is exact: what is left of the window.

Wire form: 429 with ``Retry-After`` (whole seconds, at least 1) and a JSON-RPC error -32029 (in
JSON-RPC 2.0's implementation-defined server range; 429 as a mnemonic) with
``data.retry_after``. When Redis fails, ``ratelimit.on_redis_error`` decides per kind of
caller: open lets the call through uncounted, closed answers 503 with the same code (it is the
counter that is missing, not the caller that overdid it). After a failure Redis is left alone
for a second, so an outage does not cost every request a time-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

import limits
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis
from starlette.types import Scope

from atrium.auth.resource_guard import Caller
from atrium.gateway.errors import GatewayError
from atrium.settings import Settings

logger = logging.getLogger(__name__)

RATE_LIMITED = -32029
PAUSE_AFTER_FAILURE_S = 1.0
RETRY_AFTER_UNAVAILABLE_S = 5


@dataclass(frozen=True)
class FailModes:
    """Whether a call passes (True) while the counter's storage is failing."""

    authenticated: bool = True
    anonymous: bool = False


class RateLimiter:
    def __init__(
        self,
        storage: Storage,
        *,
        default: str | None = None,
        per_tool: bool = False,
        fail_open: FailModes = FailModes(),
    ) -> None:
        self._storage = storage
        self._strategy = FixedWindowRateLimiter(storage)
        self._default = default
        self._per_tool = per_tool
        self._fail_open = fail_open
        self._paused_until = 0.0
        self._failing = False

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None = None) -> RateLimiter:
        """Counters in ``redis`` when given (shared by replicas), else in this process."""
        options = settings.ratelimit
        storage = (
            MemoryStorage() if redis is None else redis_storage(redis, settings.redis.key_prefix)
        )
        modes = options.on_redis_error
        return cls(
            storage,
            default=options.default,
            per_tool=options.per_tool,
            fail_open=FailModes(modes.authenticated == "open", modes.anonymous == "open"),
        )

    async def check(
        self,
        server: str,
        rate: str | None,
        caller: Caller | None,
        tools: Sequence[str | None],
        *,
        client: str | None = None,
    ) -> None:
        """Count ``tools``, the request's tool calls, against ``rate`` (or the default) for
        this caller on ``server``; raise ``GatewayError`` (429) when they go past it."""
        rate = rate or self._default
        if rate is None or not tools:
            return
        item = parse(rate)
        who = caller_key(caller, client)
        anonymous = caller is None or caller.anonymous
        budgets = Counter(tool if self._per_tool else None for tool in tools)
        for tool, cost in budgets.items():
            ids = _identifiers(server, who, tool)
            if not await self._hit(item, ids, cost, anonymous):
                raise await self._too_many(item, ids, server)

    async def close(self) -> None:
        """Stop the memory storage's expiry task (Redis clients are closed by their owner)."""
        if isinstance(self._storage, MemoryStorage) and self._storage.timer is not None:
            self._storage.timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._storage.timer

    async def _hit(
        self, item: limits.RateLimitItem, ids: tuple[str, ...], cost: int, anonymous: bool
    ) -> bool:
        if time.monotonic() < self._paused_until:
            return self._unavailable(anonymous)
        try:
            allowed = await self._strategy.hit(item, *ids, cost=cost)
        except (StorageError, OSError) as exc:
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
            if not self._failing:
                self._failing = True
                cause = exc.storage_error if isinstance(exc, StorageError) else exc
                logger.warning("rate-limit storage unavailable, applying on_redis_error: %r", cause)
            return self._unavailable(anonymous)
        if self._failing:
            self._failing = False
            logger.info("rate-limit storage is reachable again")
        return allowed

    def _unavailable(self, anonymous: bool) -> bool:
        """Fail open (True: let the call through uncounted) or closed (raise 503)."""
        if self._fail_open.anonymous if anonymous else self._fail_open.authenticated:
            return True
        raise GatewayError(
            503,
            RATE_LIMITED,
            "rate limits cannot be checked right now; try again shortly",
            data={"error": "rate_limit_unavailable"},
            headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)},
        )

    async def _too_many(
        self, item: limits.RateLimitItem, ids: tuple[str, ...], server: str
    ) -> GatewayError:
        try:
            stats = await self._strategy.get_window_stats(item, *ids)
            wait = stats.reset_time - time.time()
        except (StorageError, OSError):
            wait = item.get_expiry()  # the longest it can be
        seconds = max(1, math.ceil(wait))
        return GatewayError(
            429,
            RATE_LIMITED,
            f"rate limit reached on '{server}' ({item}); try again in {seconds} s",
            data={"error": "rate_limited", "retry_after": seconds},
            headers={"Retry-After": str(seconds)},
        )


@functools.lru_cache(maxsize=256)
def parse(rate: str) -> limits.RateLimitItem:
    """``60/minute`` as a ``limits`` item; ``rate`` passed ``registry.schema.RATE_LIMIT``."""
    return limits.parse(rate)


def redis_storage(redis: Redis, prefix: str) -> RedisStorage:
    """``limits``' Redis storage on the pool of ``redis`` (which keeps owning it)."""
    return RedisStorage(
        "async+redis://",
        implementation="redispy",
        key_prefix=f"{prefix}:rl",
        wrap_exceptions=True,
        # Documented, typed more narrowly than it is: the pool is passed to redis.asyncio.Redis.
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]
    )


def caller_key(caller: Caller | None, client: str | None) -> str:
    """Whose budget a call spends: a user's, a client's own, or an address's."""
    if caller is None or caller.subject is None:
        return f"anon:{client or 'unknown'}"
    if caller.subject == caller.client_id:
        return f"client:{caller.client_id}"
    return f"sub:{caller.subject}"


def peer(scope: Scope) -> str | None:
    """The client's address of an ASGI request: the TCP peer's, or the one a trusted proxy
    named (``gateway.trusted_proxies``; behind any other proxy, that proxy's)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def _identifiers(server: str, who: str, tool: str | None) -> tuple[str, ...]:
    # limits joins identifiers with "/": escaped, a client id such as https://a/b and a tool
    # name cannot together spell another caller's key.
    parts = (server, who) if tool is None else (server, who, tool)
    return tuple(quote(part, safe=":@") for part in parts)
