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

import hashlib
import heapq
import logging
import math
import secrets
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
        # A key is kept as 64 bits of a keyed BLAKE2b (this process's own secret: nobody can
        # aim a key at another's), in the second its TTL runs out (rounded up: kept up to a
        # second longer, never shorter). Some 70 bytes a key instead of ~340 for the string,
        # its expiry and a heap entry of its own: a gateway taking a proof a millisecond
        # remembers 600,000 of them over RFC 9449's two windows (issue 18: memory flat). Two
        # proofs share 64 bits once in ~10^14 at a full cache: the second is refused, as a
        # replay would be, never let through.
        self._secret = secrets.token_bytes(16)
        self._live: set[int] = set()
        self._due: dict[int, list[int]] = {}  # the second they expire in -> keys
        self._seconds: list[int] = []  # a heap of ``_due``'s seconds: the soonest first
        self._full = False  # logged once per spell of refusals, not once per proof

    def __len__(self) -> int:
        return len(self._live)

    async def first_use(self, key: str, ttl_s: float) -> bool:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        now = self._clock()
        self._drop_expired(now)
        digest = self._digest(key)
        if digest in self._live:
            return False
        if len(self._live) >= self._max_entries:
            if not self._full:
                logger.warning("DPoP replay cache full (%d proofs), refusing new ones", len(self))
            self._full = True
            retry_after = max(1, math.ceil(self._seconds[0] - now))
            raise OAuthError(
                "temporarily_unavailable",
                "too many DPoP proofs to remember right now; try again shortly",
                status=503,
                headers={"Retry-After": str(retry_after)},
            )
        self._full = False
        second = math.ceil(now + ttl_s)
        due = self._due.get(second)
        if due is None:
            due = self._due[second] = []
            heapq.heappush(self._seconds, second)
        due.append(digest)
        self._live.add(digest)
        return True

    def _digest(self, key: str) -> int:
        hashed = hashlib.blake2b(key.encode(), digest_size=8, key=self._secret)
        return int.from_bytes(hashed.digest(), "big")

    def _drop_expired(self, now: float) -> None:
        while self._seconds and self._seconds[0] <= now:
            for digest in self._due.pop(heapq.heappop(self._seconds)):
                self._live.discard(digest)
