"""Telling a backend that the client of an ``initialize``-era call went away.

In the ``initialize`` era a request lives in its session, not in the HTTP connection that
carried it: a server may close a stream while its request goes on, and a client may resume it
(``Last-Event-ID``). So when the gateway's client disconnects mid-call and the gateway drops the
upstream connection, a backend does not take it for a cancellation, and the tool would run to
the end for nobody. The gateway therefore sends ``notifications/cancelled`` (MCP 2025-11-25,
"Cancellation"; ``requestId`` the call's own id) on the caller's backend session for every
request of the body that got no answer. In 2026-07-28 there are no sessions: closing the
connection is the cancellation, and nothing is sent.
"""

from __future__ import annotations

import logging
from typing import Protocol

import aiohttp
import orjson
from starlette.types import Scope

from atrium.gateway.directory import ServerRoute
from atrium.gateway.exchange import Exchange
from atrium.gateway.upstream import Upstreams

logger = logging.getLogger(__name__)

CLIENT_GONE = 499  # the status ``Exchange.client_gone`` records
TIMEOUT_S = 5.0
REASON = "The client disconnected."


class Proxy(Protocol):
    upstreams: Upstreams

    def identity(self, route: ServerRoute, exchange: Exchange) -> dict[str, str]: ...


async def cancel_abandoned(
    proxy: Proxy, route: ServerRoute, exchange: Exchange, scope: Scope
) -> None:
    """After a forwarded POST: if its client left before every answer, cancel the rest."""
    inbound, session = exchange.inbound, exchange.backend_session
    if inbound is None or session is None or exchange.failure is None:
        return
    if exchange.failure[1] != CLIENT_GONE:
        return
    abandoned = [c.id for c in inbound.calls if c.is_request and c.id not in exchange.outcomes]
    version = next((v for k, v in scope["headers"] if k == b"mcp-protocol-version"), None)
    for request_id in abandoned:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        headers |= {"Mcp-Session-Id": session, "X-Request-Id": exchange.request_id}
        if version is not None:
            headers["MCP-Protocol-Version"] = version.decode("latin-1")
        headers |= route.credentials
        headers |= proxy.identity(route, exchange)  # a fresh assertion: each is taken once
        await _post(proxy.upstreams, route, cancelled(request_id), headers)


def cancelled(request_id: object, reason: str = REASON) -> bytes:
    """The ``notifications/cancelled`` of ``request_id`` (MCP 2025-11-25, "Cancellation")."""
    params = {"requestId": request_id, "reason": reason}
    return orjson.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params})


async def _post(
    upstreams: Upstreams, route: ServerRoute, body: bytes, headers: dict[str, str]
) -> None:
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    try:
        async with upstreams.session(route.upstream).post(
            route.upstream, data=body, headers=headers, timeout=timeout
        ) as response:
            await response.read()
            if response.status >= 400:
                logger.info(
                    "server %s refused a cancellation: HTTP %d", route.name, response.status
                )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        logger.info("could not tell server %s of a cancelled call: %r", route.name, exc)
