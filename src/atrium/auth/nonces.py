"""Server-provided DPoP nonces (RFC 9449 §8 at the authorization server, §9 at resource
servers), made and checked without keeping state."""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Callable


class NonceIssuer:
    """Stateless server nonces (RFC 9449 §8/§9): an HMAC-protected timestamp.

    Any nonce this issuer made within the last ``lifetime_s`` is valid, on every instance that
    shares the key, so nothing is stored; single use of proofs is the replay cache's job.
    """

    _CONTEXT = b"atrium dpop nonce v1"
    _MAC_BYTES = 16
    # Instances sharing the key may run slightly ahead of the one checking.
    _SKEW_S = 30.0

    def __init__(
        self, key: bytes, *, lifetime_s: float = 300, clock: Callable[[], float] = time.time
    ) -> None:
        if len(key) < 16:
            raise ValueError("a nonce key needs at least 16 bytes")
        self._key = key
        self._lifetime_s = lifetime_s
        self._clock = clock

    def issue(self) -> str:
        stamp = int(self._clock() * 1000).to_bytes(8, "big", signed=True)
        return _b64url(stamp + self._mac(stamp))

    def valid(self, nonce: str) -> bool:
        try:
            raw = base64.b64decode(nonce + "=" * (-len(nonce) % 4), altchars=b"-_", validate=True)
        except ValueError:
            return False
        stamp, mac = raw[:8], raw[8:]
        if len(stamp) != 8 or not hmac.compare_digest(mac, self._mac(stamp)):
            return False
        age = self._clock() - int.from_bytes(stamp, "big", signed=True) / 1000
        return -self._SKEW_S <= age <= self._lifetime_s

    def _mac(self, stamp: bytes) -> bytes:
        return hmac.digest(self._key, self._CONTEXT + stamp, "sha256")[: self._MAC_BYTES]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
