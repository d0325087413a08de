"""Single-use memory for DPoP proofs (RFC 9449 §11.1).

A server must not accept the same proof twice within the time it would accept it at all, so
it remembers each proof's ``jti`` (scoped by key thumbprint) for that long. ``ReplayCache`` is
the seam; ``MemoryReplayCache`` serves one process. A deployment with several workers needs a
shared implementation of the same protocol, or a replay could land on a worker that never saw
the original.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol


class ReplayCache(Protocol):
    async def first_use(self, key: str, ttl_s: float) -> bool:
        """Record ``key`` for ``ttl_s`` seconds; False when it is already recorded (a replay)."""
        ...


class MemoryReplayCache:
    """An in-process ``ReplayCache`` holding at most ``max_entries`` keys.

    Expired keys are dropped as time passes; when the cache is still full, the oldest live key
    goes. That keeps memory bounded under a flood of proofs, at the price of forgetting (and so
    accepting a replay of) the oldest ones: size ``max_entries`` above the proof rate times the
    TTL so that this never happens in normal operation.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        # Insertion order finds the oldest key, the heap the soonest expiry (keys may carry
        # different TTLs). A heap item whose key was evicted is stale and skipped when popped.
        self._expiries: OrderedDict[str, float] = OrderedDict()
        self._heap: list[tuple[float, str]] = []

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
            self._evict_oldest()
        self._expiries[key] = now + ttl_s
        heapq.heappush(self._heap, (now + ttl_s, key))
        return True

    def _drop_expired(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            expiry, key = heapq.heappop(self._heap)
            if self._expiries.get(key) == expiry:
                del self._expiries[key]

    def _evict_oldest(self) -> None:
        while len(self._expiries) >= self._max_entries:
            self._expiries.popitem(last=False)
        # Evicted keys leave their heap items behind until they expire; rebuilding now and
        # then keeps the heap proportional to the cache rather than to the traffic.
        if len(self._heap) > 2 * self._max_entries:
            self._heap = [(expiry, key) for key, expiry in self._expiries.items()]
            heapq.heapify(self._heap)
