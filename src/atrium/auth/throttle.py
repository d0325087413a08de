"""Throttles per client address on the authorization server's open doors.

Sign-in: failed password attempts are counted per user name and per client address, and past
the limit the sign-in form refuses to check passwords for a while. Passwords are guessable
where tokens are not (OWASP Authentication Cheat Sheet, "Protect against automated attacks");
counting only failures keeps a user who types correctly unaffected.

Registration: dynamic registrations (RFC 7591, open to anyone; §5 lets a server limit them)
are counted per address, so that one source cannot fill ``oauth.max_dynamic_clients``.

The address is the TCP peer's, or the one a proxy listed in ``gateway.trusted_proxies`` names
(``gateway.serve``). Counters are per gateway process.
"""

from __future__ import annotations

import math
import time

import limits
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

FAILURES_PER_MINUTE = 10


class SignInThrottle:
    def __init__(self, per_minute: int = FAILURES_PER_MINUTE) -> None:
        self._limit = RateLimitItemPerMinute(per_minute)
        self._limiter = FixedWindowRateLimiter(MemoryStorage())

    def blocked(self, username: str, address: str | None) -> bool:
        return any(not self._limiter.test(self._limit, *key) for key in _keys(username, address))

    def failed(self, username: str, address: str | None) -> None:
        for key in _keys(username, address):
            self._limiter.hit(self._limit, *key)


def _keys(username: str, address: str | None) -> list[tuple[str, str]]:
    keys = [("signin-user", username.lower())]
    if address:
        keys.append(("signin-address", address))
    return keys


class RegistrationThrottle:
    """At most ``rate`` (``20/hour``) registrations per client address."""

    def __init__(self, rate: str) -> None:
        self._limit = limits.parse(rate)
        self._limiter = FixedWindowRateLimiter(MemoryStorage())

    def retry_after(self, address: str | None) -> int | None:
        """Seconds until ``address`` may register again, or None when it may now."""
        key = ("register-address", address or "unknown")
        if self._limiter.test(self._limit, *key):
            return None
        reset = self._limiter.get_window_stats(self._limit, *key).reset_time
        return max(1, math.ceil(reset - time.time()))

    def registered(self, address: str | None) -> None:
        self._limiter.hit(self._limit, "register-address", address or "unknown")
