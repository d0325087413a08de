"""Throttles on the authorization server's open doors, shared by every gateway replica.

Sign-in: failed password attempts are counted per client address and per user name, each
against a limit of its own (``oauth.signin_failures_per_address``, ``10/minute``;
``oauth.signin_failures_per_user``, ``30/minute``), and past either the sign-in form refuses to
check passwords for a while. Passwords are guessable where tokens are not (OWASP
Authentication Cheat Sheet, "Protect against automated attacks"); counting only failures keeps
a user who types correctly unaffected. The address limit stops one source guessing at many
names; the name limit stops many sources guessing at one. The name limit is the higher one,
above twice the address limit, because a fixed window opens at its key's first hit: windows
of two keys need not line up, and one address can land up to twice its limit inside one window
of the name's. So no single address can lock a user out; that takes several, each throttled.

Registration: dynamic registrations (RFC 7591, open to anyone; §5 lets a server limit them)
are counted per address, so that one source cannot fill ``oauth.max_dynamic_clients``.

Where the counts live: in Redis when ``redis.url`` is set (keys
``<prefix>:auth:LIMITER/...``), so N replicas allow what one does, not N times as much; else in
the process. While Redis fails, each replica counts in its own memory (retrying Redis after a
second): limits then hold per replica, never not at all, and nobody is refused a sign-in only
because a counter is out of reach.

The address is the one ``client_address`` reads: the TCP peer's, or the one a proxy listed in
``gateway.trusted_proxies`` names (uvicorn rewrites the ASGI ``client`` from
``X-Forwarded-For`` for those alone, ``gateway.serve.forwarding``; the rate limits read the same
field). From any other peer the header is ignored, so a forged one dodges nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import quote

import limits
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from atrium.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")
PAUSE_AFTER_FAILURE_S = 1.0
# Longer names are counted by digest: a key stays short whatever a form posts.
MAX_NAME_IN_KEY = 128


def client_address(request: HTTPConnection) -> str | None:
    """The client's address: the TCP peer's, or the one a trusted proxy named (module
    docstring); ``None`` when the server knows none (a Unix socket)."""
    return request.client.host if request.client else None


class Counters:
    """Fixed-window counters in ``shared`` storage (Redis) or, without one or while it fails,
    in this process's memory."""

    def __init__(self, shared: Storage | None = None) -> None:
        self._shared = FixedWindowRateLimiter(shared) if shared is not None else None
        self._memory = MemoryStorage()
        self._local = FixedWindowRateLimiter(self._memory)
        self._paused_until = 0.0
        self._failing = False

    @classmethod
    def for_redis(cls, redis: Redis | None, prefix: str) -> Counters:
        """Counters in ``redis`` under ``<prefix>:auth`` (the pool stays its owner's)."""
        if redis is None:
            return cls()
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=f"{prefix}:auth",
            wrap_exceptions=True,
            # Documented, typed more narrowly than it is: the pool goes to redis.asyncio.Redis.
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
        return cls(storage)

    async def allowed(self, item: limits.RateLimitItem, *ids: str) -> bool:
        """Whether one more hit would stay within ``item``."""
        return await self._run(lambda limiter: limiter.test(item, *ids))

    async def hit(self, item: limits.RateLimitItem, *ids: str) -> None:
        await self._run(lambda limiter: limiter.hit(item, *ids))

    async def reset_in(self, item: limits.RateLimitItem, *ids: str) -> float:
        """Seconds until the window of ``ids`` ends."""
        stats = await self._run(lambda limiter: limiter.get_window_stats(item, *ids))
        return max(0.0, stats.reset_time - time.time())

    async def close(self) -> None:
        """Stop the memory storage's expiry task (the Redis pool is closed by its owner)."""
        if self._memory.timer is not None:
            self._memory.timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._memory.timer

    async def _run(self, step: Callable[[FixedWindowRateLimiter], Awaitable[T]]) -> T:
        if self._shared is None or time.monotonic() < self._paused_until:
            return await step(self._local)
        try:
            result = await step(self._shared)
        except (StorageError, OSError) as exc:
            self._shared_failed(exc)
            return await step(self._local)
        if self._failing:
            self._failing = False
            logger.info("the auth throttles' counters are in Redis again")
        return result

    def _shared_failed(self, exc: StorageError | OSError) -> None:
        """Leave Redis alone for a while: an outage must not cost every sign-in a time-out."""
        self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
        if not self._failing:
            self._failing = True
            cause = exc.storage_error if isinstance(exc, StorageError) else exc
            logger.warning("the auth throttles count in this process: Redis failed (%r)", cause)


class SignInThrottle:
    """Failed sign-ins per client address and per user name, each with its own limit."""

    def __init__(self, counters: Counters, *, per_address: str, per_user: str) -> None:
        self._counters = counters
        self._per_address = limits.parse(per_address)
        self._per_user = limits.parse(per_user)

    @classmethod
    def from_settings(cls, settings: Settings, counters: Counters) -> SignInThrottle:
        options = settings.oauth
        return cls(
            counters,
            per_address=options.signin_failures_per_address,
            per_user=options.signin_failures_per_user,
        )

    async def blocked(self, username: str, address: str | None) -> bool:
        """Whether ``username`` or ``address`` failed too often to try again now."""
        for item, key in self._keys(username, address):
            if not await self._counters.allowed(item, *key):
                return True
        return False

    async def failed(self, username: str, address: str | None) -> None:
        for item, key in self._keys(username, address):
            await self._counters.hit(item, *key)

    def _keys(
        self, username: str, address: str | None
    ) -> list[tuple[limits.RateLimitItem, tuple[str, str]]]:
        keys = [(self._per_user, ("signin-user", _name_key(username)))]
        if address:
            keys.append((self._per_address, ("signin-address", quote(address, safe=":"))))
        return keys


def _name_key(username: str) -> str:
    """A user name as a key: case folded (``Alice`` guesses count for ``alice``), escaped
    (limits joins key parts with ``/``) and, when long, digested."""
    folded = quote(username.casefold(), safe="")
    if len(folded) <= MAX_NAME_IN_KEY:
        return folded
    return "sha256-" + hashlib.sha256(folded.encode("ascii")).hexdigest()


class RegistrationThrottle:
    """At most ``rate`` (``20/hour``) registrations per client address."""

    def __init__(self, counters: Counters, rate: str) -> None:
        self._counters = counters
        self._limit = limits.parse(rate)

    async def retry_after(self, address: str | None) -> int | None:
        """Seconds until ``address`` may register again, or None when it may now."""
        key = _address_key(address)
        if await self._counters.allowed(self._limit, *key):
            return None
        return max(1, math.ceil(await self._counters.reset_in(self._limit, *key)))

    async def registered(self, address: str | None) -> None:
        await self._counters.hit(self._limit, *_address_key(address))


def _address_key(address: str | None) -> tuple[str, str]:
    return ("register-address", quote(address or "unknown", safe=":"))
