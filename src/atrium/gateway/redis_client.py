"""The gateway's one Redis connection pool, shared by the rate limiter and the DPoP replay cache.

Redis holds what replicas must share for a short while (ARCHITECTURE.md, "Scaling out"). Its
clients fail fast: short timeouts and one immediate retry (for a pooled connection that Redis
dropped, after a restart say), never redis-py's default of three retries with seconds of
backoff. Each user has a better answer than waiting for a server that is down: the rate
limiter's fail modes, the replay cache's 503.
"""

from __future__ import annotations

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def connect(url: str, *, timeout_s: float) -> Redis:
    """A client for ``url`` that owns its pool (``aclose`` closes both); connects lazily."""
    pool = ConnectionPool.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), retries=1),
    )
    return Redis.from_pool(pool)
