"""The gateway's connections to backends: one pooled aiohttp session per backend origin.

aiohttp rather than httpx: on this path the httpx family costs 3-7x more CPU per request
(ARCHITECTURE.md, "Dependencies"). Connections are kept alive and reused; compression is not
asked for, so a response can be inspected (policy, audit) without decoding it.

A backend's error answer that holds no JSON-RPC message (a framework's plain-text 406, an HTML
page, an empty 500) is not relayed: the client, which expects JSON-RPC, gets it wrapped in a
JSON-RPC error (``bare_error``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from atrium.gateway.errors import MAX_BACKEND_TEXT, GatewayError, backend_error

# Request headers a client's call carries through the gateway (MCP spec, Streamable HTTP;
# 2026-07-28 routing headers): everything else, Authorization and Cookie above all, stays here.
FORWARDED_REQUEST_HEADERS = frozenset(
    {
        "accept",
        "content-type",
        "mcp-protocol-version",
        "mcp-session-id",
        "mcp-method",
        "mcp-name",
        "last-event-id",
    }
)
FORWARDED_RESPONSE_HEADERS = frozenset(
    {
        "content-type",
        "mcp-session-id",
        "mcp-protocol-version",
        "cache-control",
        "retry-after",
        "allow",
    }
)


def request_headers(incoming: list[tuple[bytes, bytes]], request_id: str) -> dict[str, str]:
    out = {"X-Request-Id": request_id}
    for raw_name, raw_value in incoming:
        name = raw_name.decode("latin-1").lower()
        if name in FORWARDED_REQUEST_HEADERS or name.startswith("mcp-param-"):
            out[name] = raw_value.decode("latin-1")
    return out


def response_headers(
    response: aiohttp.ClientResponse, request_id: str
) -> list[tuple[bytes, bytes]]:
    out = [(b"x-request-id", request_id.encode())]
    for name, value in response.headers.items():
        if name.lower() in FORWARDED_RESPONSE_HEADERS:
            out.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return out


# Headers of a backend's bare error that still mean something to the client.
_KEPT_ON_ERROR = ("Retry-After", "Allow")


async def bare_error(response: aiohttp.ClientResponse, server: str) -> GatewayError | None:
    """The JSON-RPC error that stands for ``response`` when it is an error answer without a
    JSON-RPC message; ``None`` for any other answer, which is relayed as it came. A JSON body
    is read whole (it is relayed if it is JSON-RPC after all); any other only as far as the
    error keeps of it."""
    if response.status < 400 or response.content_type == "text/event-stream":
        return None
    if response.content_type == "application/json":
        body = await response.read()  # kept by aiohttp: the relay reads it again
        if is_json_rpc(body):
            return None
    else:
        body = await response.content.read(MAX_BACKEND_TEXT + 1)
    kept = {name: value for name in _KEPT_ON_ERROR if (value := response.headers.get(name))}
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
    """Pooled HTTP sessions, created on first use, closed with the app."""

    def __init__(self, *, limit: int = 256) -> None:
        self._limit = limit
        self._sessions: dict[str, aiohttp.ClientSession] = {}

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
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
