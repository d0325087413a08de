"""Sign-in throttling: failed password attempts are counted per user name and per client
address, and past the limit the sign-in form refuses to check passwords for a while.

Passwords are guessable where tokens are not (OWASP Authentication Cheat Sheet, "Protect
against automated attacks"); counting only failures keeps a user who types correctly
unaffected. Counters are per gateway process.
"""

from __future__ import annotations

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
