"""Single-use memory for DPoP proofs (RFC 9449 §11.1).

A server must not accept the same proof twice within the time it would accept it at all, so
it remembers each proof's ``jti`` (scoped by key thumbprint) for that long. ``ReplayCache`` is
the seam; ``MemoryReplayCache`` serves one process. A deployment with several workers needs a
shared implementation of the same protocol, or a replay could land on a worker that never saw
the original (``replay_redis``).

Why not a library: ``cachetools``' ``TTLCache``/``TLRUCache`` make room by evicting live
entries, which here would forget an unexpired proof and accept its replay; ``limits``'
``MemoryStorage`` has no bound at all (anyone with a key can fill it), sweeps every key from a
timer thread, and reads the wall clock, not an injected one. What single use needs (refuse
when full, never forget a live key) is the fifty lines below.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from atrium.auth.errors import OAuthError

logger = logging.getLogger(__name__)


class ReplayCache(Protocol):
    async def first_use(self, key: str, ttl_s: float) -> bool:
        """Record ``key`` for ``ttl_s`` seconds; False when it is already recorded (a replay).

        Raises ``OAuthError`` 503 ``temporarily_unavailable`` when it cannot record the key
        (full, or its store unreachable): the proof is refused, never let through unchecked.
        """
        ...


class MemoryReplayCache:
    """An in-process ``ReplayCache`` holding at most ``max_entries`` keys.

    Expired keys are dropped as time passes; a live key is never dropped, since forgetting
    one would accept a replay of its proof. When the cache is full of live keys, new proofs are
    refused (503 ``temporarily_unavailable``) until some expire: bounded memory is paid for in
    availability, never in single use. Proofs are recorded only for requests that are otherwise
    served (``dpop.DpopVerifier``), so filling it takes as many good grants or tokens; size
    ``max_entries`` above the proof rate times the TTL.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        # The heap finds the soonest expiry (keys may carry different TTLs).
        self._expiries: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._full = False  # logged once per spell of refusals, not once per proof

    def __len__(self) -> int:
        return len(self._expiries)

    async def first_use(self, key: str, ttl_s: float) -> bool:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        now = self._clock()
        self._drop_expired(now)
        if key in self._expiries:
            return False
        if len(self._expiries) >= self._max_entries:
            if not self._full:
                logger.warning("DPoP replay cache full (%d proofs), refusing new ones", len(self))
            self._full = True
            retry_after = max(1, math.ceil(self._heap[0][0] - now))
            raise OAuthError(
                "temporarily_unavailable",
                "too many DPoP proofs to remember right now; try again shortly",
                status=503,
                headers={"Retry-After": str(retry_after)},
            )
        self._full = False
        self._expiries[key] = now + ttl_s
        heapq.heappush(self._heap, (now + ttl_s, key))
        return True

    def _drop_expired(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, key = heapq.heappop(self._heap)
            del self._expiries[key]
