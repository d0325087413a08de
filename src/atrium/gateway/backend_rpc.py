"""The gateway's own JSON-RPC requests to a backend, in the 2026-07-28 era (stateless: no
``initialize``, the protocol version and client capabilities in each request's ``_meta``).

The OpenAPI bridge turns an HTTP call into one ``tools/call`` and needs ``tools/list`` to
describe a server; both are one POST whose answer is JSON or an SSE stream that ends with the
response (progress notifications before it are skipped).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from atrium.gateway import jsonrpc
from atrium.gateway.directory import ServerRoute
from atrium.gateway.errors import GatewayError, bad_gateway, timed_out
from atrium.gateway.pool import response_in_stream
from atrium.gateway.upstream import Upstreams

META = {
    "io.modelcontextprotocol/protocolVersion": jsonrpc.MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "atrium-gateway", "version": "1"},
}
_ids = itertools.count(1)


def request_body(method: str, params: dict[str, Any]) -> tuple[int, bytes]:
    request_id = next(_ids)
    message = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": method,
        "params": {**params, "_meta": META},
    }
    return request_id, orjson.dumps(message)


async def call(
    upstreams: Upstreams,
    route: ServerRoute,
    method: str,
    body: bytes,
    request_id: int,
    *,
    name: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST one request; the JSON-RPC response message (result or error) with ``request_id``."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": jsonrpc.MODERN,
        "Mcp-Method": method,
        **({"Mcp-Name": name} if name is not None else {}),
        **route.credentials,
        **(extra_headers or {}),
    }
    timeout = aiohttp.ClientTimeout(total=route.config.timeout_s, connect=10)
    session = upstreams.session(route.upstream)
    try:
        async with session.post(
            route.upstream, data=body, headers=headers, timeout=timeout
        ) as response:
            if response.status >= 400:
                raise bad_gateway(route.name, f"HTTP {response.status} from the server")
            if response.content_type == "text/event-stream":
                return await _from_stream(response, request_id, route.name)
            return _matching(orjson.loads(await response.read()), request_id, route.name)
    except aiohttp.ClientConnectorError as exc:
        raise route.unreachable(f"cannot connect to {route.upstream}") from exc
    except TimeoutError:
        raise timed_out(route.name, route.config.timeout_s) from None
    except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
        raise bad_gateway(route.name, exc.__class__.__name__) from None


async def _from_stream(
    response: aiohttp.ClientResponse, request_id: int, server: str
) -> dict[str, Any]:
    found = await response_in_stream(response, request_id)
    if found is None:
        raise bad_gateway(server, "the stream ended without a response")
    return found


def _matching(message: Any, request_id: int, server: str) -> dict[str, Any]:
    if isinstance(message, dict) and message.get("id") == request_id:
        return message
    raise bad_gateway(server, "the answer is not the response to the request")


async def list_tools(
    upstreams: Upstreams,
    route: ServerRoute,
    identity: Callable[[], Mapping[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Every tool of the server, following ``nextCursor`` (at most 50 pages); ``identity``
    gives each page's request its own caller assertion (a backend takes each one once)."""
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(50):
        request_id, body = request_body("tools/list", {"cursor": cursor} if cursor else {})
        headers = identity() if identity is not None else None
        message = await call(
            upstreams, route, "tools/list", body, request_id, extra_headers=headers
        )
        result = message.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            raise _error_of(route.name, message)
        tools.extend(t for t in result["tools"] if isinstance(t, dict))
        cursor = result.get("nextCursor")
        if not cursor:
            break
    return tools


def _error_of(server: str, message: dict[str, Any]) -> GatewayError:
    error = message.get("error")
    text = error.get("message") if isinstance(error, dict) else "no result"
    return bad_gateway(server, f"tools/list failed: {text}")
