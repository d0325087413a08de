"""Single-use memory for DPoP proofs shared by every replica, in Redis (RFC 9449 §11.1).

``MemoryReplayCache`` serves one process; with several, a proof replayed to a replica that
never saw the original would pass. Here ``SET key 1 NX PX ttl`` records a ``jti`` and says
whether it was new in one atomic step, and Redis forgets it once the proof could no longer be
accepted anyway, so memory follows the proof rate times the TTL, with no eviction to tune.

Redis unreachable, or out of memory: the proof is refused (503 ``temporarily_unavailable``),
never accepted unchecked. Single use is a security property; an outage must not switch it off.
So run this Redis with ``maxmemory-policy noeviction`` (Redis' default): under any other policy
a full Redis makes room by evicting keys, these included (every one of them has a TTL, so the
``volatile-*`` policies pick them first), and a forgotten proof could be replayed. With
``noeviction`` a full Redis refuses the ``SET``, and so the proof.

Why not ``limits``' Redis storage, already a dependency for rate limits: it counts (a Lua
``INCR`` and ``EXPIRE``) where one ``SET NX PX`` answers "first use?" atomically, in one round
trip, with nothing to interpret.
"""

from __future__ import annotations

import logging
import math

from redis.asyncio import Redis
from redis.exceptions import RedisError

from atrium.auth.errors import OAuthError

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5


class RedisReplayCache:
    """A ``ReplayCache`` whose keys are ``<prefix>:dpop:<key>`` in ``redis``."""

    def __init__(self, redis: Redis, *, prefix: str = "atrium") -> None:
        self._redis = redis
        self._prefix = f"{prefix}:dpop:"

    async def first_use(self, key: str, ttl_s: float) -> bool:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        # Rounded up: remembering a proof a little too long is harmless, too short is not.
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        try:
            created = await self._redis.set(self._prefix + key, b"1", nx=True, px=ttl_ms)
        except (RedisError, OSError) as exc:
            logger.warning("DPoP replay cache unavailable, refusing proofs: %r", exc)
            raise OAuthError(
                "temporarily_unavailable",
                "cannot check that the DPoP proof is fresh; try again shortly",
                status=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from None
        return bool(created)
