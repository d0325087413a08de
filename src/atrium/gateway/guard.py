"""Transport guard: the checks every MCP request passes before anything else.

The MCP spec (Streamable HTTP, "Security Warning") requires servers to validate ``Origin`` to
stop DNS-rebinding attacks; we also check ``Host`` (a rebound name still carries the attacker's
host name) and cap the body before reading it whole.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import Receive

from atrium.auth.uris import LOOPBACK_AUTHORITIES, LOOPBACK_HOSTS
from atrium.gateway.errors import INVALID_REQUEST, GatewayError, stalled
from atrium.settings import Settings

# A Host header names IPv6 bracketed ("[::1]:8080"); a client may also send it bare.
_LOOPBACK_HOST_HEADERS = LOOPBACK_AUTHORITIES | LOOPBACK_HOSTS


@dataclass(frozen=True)
class Guard:
    hosts: frozenset[str]
    origins: frozenset[str]
    max_body: int
    max_batch: int = 50  # messages in one JSON-RPC batch (gateway.max_batch)
    body_timeout_s: float | None = None  # a body's longest silence (gateway.body_timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> Guard:
        public = urlsplit(settings.public_url)
        hosts = {
            *_LOOPBACK_HOST_HEADERS,
            public.hostname or "",
            settings.gateway_host,
            *settings.allowed_hosts,
        }
        origins = {f"{public.scheme}://{public.netloc}", *settings.allowed_origins}
        return cls(
            frozenset(h.lower() for h in hosts if h),
            frozenset(origins),
            settings.max_body_bytes,
            settings.max_batch,
            settings.body_timeout_s,
        )

    def check(self, host: str | None, origin: str | None) -> None:
        if host is None or _hostname(host) not in self.hosts:
            raise GatewayError(
                421, INVALID_REQUEST, f"Misdirected request: host {host!r} is not served here"
            )
        if origin is not None and not self._origin_ok(origin):
            raise GatewayError(403, INVALID_REQUEST, f"Forbidden: origin {origin!r} is not allowed")

    def _origin_ok(self, origin: str) -> bool:
        if origin in self.origins:
            return True
        # Any port on a loopback name is the user's own machine (RFC 8252 §7.3 reasoning).
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK_HOSTS

    def check_length(self, content_length: str | None) -> None:
        if (
            content_length is not None
            and content_length.isdigit()
            and int(content_length) > self.max_body
        ):
            raise too_large(self.max_body)


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, INVALID_REQUEST, f"Request body larger than {limit} bytes")


def _hostname(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def read_body(receive: Receive, limit: int, idle_s: float | None = None) -> bytes:
    """A request body of at most ``limit`` bytes (413 past it, read no further); 408 when
    ``idle_s`` pass without a byte of it: a trickling client must not hold the request.
    ``idle_s`` is ``None`` for a body the server has read whole (``serving.BODY_ARRIVED``):
    nothing is waited for, and a deadline costs a timer set and cancelled (issue 17)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if idle_s is None:
            message = await receive()
        else:
            try:
                async with asyncio.timeout(idle_s):
                    message = await receive()
            except TimeoutError:
                raise stalled(idle_s) from None
        if message["type"] == "http.disconnect":
            raise GatewayError(400, INVALID_REQUEST, "client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
