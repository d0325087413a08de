"""The gateway's connections to backends: requests it forwards, and its own.

Forwarded requests go through ``http1``, a lean keep-alive HTTP/1.1 client on ``httptools``
(one pool of connections per backend origin): on this path aiohttp's request building cost
more CPU than the rest of the gateway's work per call, and the httpx family 3-7x more again
(ARCHITECTURE.md, "Dependencies"; bench/RESULTS.md). The gateway's own, rarer requests (one-shot
calls and their backend sessions, tool lookups, cancellations, the OpenAPI bridge) keep one
pooled aiohttp session per origin. Compression is asked for on neither, so a response can be
inspected (policy, audit) without decoding it.

Only the headers named here cross the gateway, either way: a client's ``Authorization`` and
``Cookie`` stay here, and the request's framing (``Content-Length``) is the gateway's own.

A backend's error answer that holds no JSON-RPC message (a framework's plain-text 406, an HTML
page, an empty 500) is not relayed: the client, which expects JSON-RPC, gets it wrapped in a
JSON-RPC error (``bare_error``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from atrium.gateway.errors import MAX_BACKEND_TEXT, GatewayError, backend_error
from atrium.gateway.http1 import Response
from atrium.gateway.origins import Endpoint, Upstream

# Request headers a client's call carries through the gateway (MCP spec, Streamable HTTP;
# 2026-07-28 routing headers): everything else, Authorization and Cookie above all, stays here.
# The client's Mcp-Session-Id is not among them: the backend gets its own (``sessions``).
FORWARDED_REQUEST_HEADERS = frozenset(
    {
        b"accept",
        b"content-type",
        b"mcp-protocol-version",
        b"mcp-method",
        b"mcp-name",
        b"last-event-id",
    }
)
FORWARDED_RESPONSE_HEADERS = frozenset(
    {
        b"content-type",
        b"mcp-session-id",
        b"mcp-protocol-version",
        b"cache-control",
        b"retry-after",
        b"allow",
    }
)


def request_headers(
    incoming: list[tuple[bytes, bytes]],
    request_id: str,
    *extra: Mapping[str, str],
    session: str | None = None,
) -> list[tuple[bytes, bytes]]:
    """The headers of a forwarded request: the client's that may cross (names in lower case,
    as ASGI gives them; of a repeated one, the last), then ``extra``'s (which replace any
    of the same name), then the backend's own ``session`` id."""
    kept: dict[bytes, bytes] = {}
    for name, value in incoming:
        if name in FORWARDED_REQUEST_HEADERS or name.startswith(b"mcp-param-"):
            kept[name] = value
    for headers in extra:
        for key, text in headers.items():
            kept[key.lower().encode("latin-1")] = text.encode()
    if session is not None:
        kept[b"mcp-session-id"] = session.encode()
    if b"accept" not in kept:
        kept[b"accept"] = b"*/*"  # what the gateway sent before it had a client of its own
    return [(b"x-request-id", request_id.encode()), *kept.items()]


def response_headers(response: Response, request_id: str) -> list[tuple[bytes, bytes]]:
    out = [(b"x-request-id", request_id.encode())]
    out += [item for item in response.headers if item[0] in FORWARDED_RESPONSE_HEADERS]
    return out


# Headers of a backend's bare error that still mean something to the client.
_KEPT_ON_ERROR = (("Retry-After", b"retry-after"), ("Allow", b"allow"))


async def bare_error(
    response: Response, server: str, within: float | None = None
) -> GatewayError | None:
    """The JSON-RPC error that stands for ``response`` when it is an error answer without a
    JSON-RPC message; ``None`` for any other answer, which is relayed as it came. A JSON body
    is read whole (it is relayed if it is JSON-RPC after all); any other only as far as the
    error keeps of it. Each read waits ``within`` seconds at most."""
    if response.status < 400 or response.content_type == "text/event-stream":
        return None
    if response.content_type == "application/json":
        body = await response.read(within)  # kept: the relay reads it again
        if is_json_rpc(body):
            return None
    else:
        body = await response.read_prefix(MAX_BACKEND_TEXT + 1, within)
    kept = {
        name: value.decode("latin-1")
        for name, key in _KEPT_ON_ERROR
        if (value := response.header(key))
    }
    return backend_error(server, response.status, body, kept)


def is_json_rpc(body: bytes) -> bool:
    """Whether ``body`` is a JSON-RPC response, or a batch of them (JSON-RPC 2.0 §5, §6)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    messages = document if isinstance(document, list) and document else [document]
    return all(_is_response(message) for message in messages)


def _is_response(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("jsonrpc") == "2.0"
        and ("result" in message or "error" in message)
    )


class Upstreams:
    """The connections to backends, made on first use, closed with the app: ``endpoint``
    for forwarded requests, ``session`` for the gateway's own."""

    def __init__(self, *, limit: int = 256) -> None:
        self._limit = limit
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._forwarding = Upstream(limit=limit)

    def endpoint(self, url: str) -> Endpoint:
        """Where forwarded requests to ``url`` go (``http1``)."""
        return self._forwarding.endpoint(url)

    def session(self, url: str) -> aiohttp.ClientSession:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        session = self._sessions.get(key)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit, keepalive_timeout=60, ttl_dns_cache=60
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding", "User-Agent"),
                timeout=aiohttp.ClientTimeout(total=None, connect=10),
            )
            self._sessions[key] = session
        return session

    async def close(self) -> None:
        self._forwarding.close()
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
