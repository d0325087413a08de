"""Serving the test backend and the gateway on loopback sockets, and speaking raw MCP to them.

Both run under a real uvicorn in the test's event loop (``httpx.ASGITransport`` would buffer
the streams whose timing these tests check). Raw requests go through ``httpx2``, the HTTP
client of the MCP SDK; whole conversations through the official ``mcp.Client``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import orjson
import uvicorn
from starlette.types import ASGIApp

from atrium.gateway.app import GatewayApp, create_app
from atrium.gateway.parts import GatewayParts
from atrium.gateway.serve import forwarding
from atrium.registry.schema import parse_server_config
from atrium.registry.sync import record_for
from atrium.serving import EmbeddedServer, uvicorn_config
from atrium.settings import Settings
from atrium.store import ServerRecord, Store
from atrium.store.audit import AuditRecord
from tests.polling import until

DEADLINE_S = 10.0
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
JSON = "application/json"
ACCEPT = "application/json, text/event-stream"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}

# The servers of every gateway test, each on the test backend's port but "down", on a closed one.
SERVERS: dict[str, dict[str, Any]] = {
    "tools": {"description": "Everything allowed"},
    "off": {"enabled": False, "description": "Switched off"},
    "guarded": {"tools": {"denied": ["delete_*", "admin_*"]}, "description": "No destruction"},
    "narrow": {"tools": {"allowed": ["echo", "progress"]}},
    "slowpoke": {"timeout_s": 1},
    "down": {"port": "{down}", "description": "Nobody listens"},
    "hidden": {"display_in_web": False},
}


class Served:
    """``app`` under uvicorn on an ephemeral loopback port, in this event loop."""

    def __init__(self, server: uvicorn.Server, listener: socket.socket | None = None) -> None:
        self.server = server
        self.port = 0
        self._listener = listener or socket.socket()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        if self._listener.getsockname()[1] == 0:
            self._listener.bind(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        task = self._task = asyncio.create_task(self.server.serve(sockets=[self._listener]))
        await until(
            lambda: self.server.started or task.done(), what="the server to start", interval=0.01
        )
        if task.done():
            task.result()
            raise AssertionError("the server stopped while starting")
        return self.port

    async def stop(self) -> None:
        """Stop as uvicorn does on SIGTERM: requests in flight finish, then the lifespan ends."""
        if self._task is not None:
            self.server.should_exit = True
            await self._task
            self._task = None
        self._listener.close()


def uvicorn_server(app: ASGIApp, settings: Settings) -> uvicorn.Server:
    """The gateway ``app`` under uvicorn configured as ``atrium start`` configures it."""
    return EmbeddedServer(uvicorn_config(app, timeout_s=5, **forwarding(settings)))


@asynccontextmanager
async def serving(
    server: uvicorn.Server, listener: socket.socket | None = None
) -> AsyncIterator[Served]:
    """Serve on an ephemeral port, or on ``listener`` (bound already: its port is known)."""
    served = Served(server, listener)
    try:
        await served.start()
        yield served
    finally:
        await served.stop()


def server_record(name: str, config: dict[str, Any]) -> ServerRecord:
    """A stored server as ``cloud sync`` would save it from ``services/mcp/<name>.yaml``.

    Without an ``oauth`` block it is open for local development (``oauth.dev_mode``: callers
    without a token call every tool), which the transport tests need; tests of who may call
    what (tests/gateway/test_access_rules.py, tests/auth/) give their servers one.
    """
    raw = {"binary": "gateway-backend", "oauth": {"dev_mode": True}, **config}
    return record_for(name, parse_server_config(raw), f"services/mcp/{name}.yaml")


async def save_servers(store: Store, backend_port: int, down_port: int) -> None:
    records = []
    for name, extra in SERVERS.items():
        config = {"port": backend_port, **extra}
        config["port"] = down_port if config["port"] == "{down}" else config["port"]
        records.append(server_record(name, config))
    await store.servers.save(records)


@dataclass
class Gateway:
    base: str
    store: Store
    served: Served
    app: GatewayApp

    @property
    def parts(self) -> GatewayParts:
        return self.app.parts

    def url(self, server: str) -> str:
        return f"{self.base}/api/v1/mcp/{server}/mcp"

    async def audit(self, request_id: str, count: int = 1) -> list[AuditRecord]:
        """The audit records of one request, once the background writer has stored them."""
        return await self._stored(lambda: self.store.audit.for_request(request_id), count)

    async def audit_of(self, server: str, count: int = 1) -> list[AuditRecord]:
        """The newest records of ``server``, once at least ``count`` are stored."""
        return await self._stored(lambda: self.store.audit.list_recent(100, server=server), count)

    async def audit_once(
        self, server: str, wanted: Callable[[AuditRecord], bool]
    ) -> list[AuditRecord]:
        """The newest records of ``server``, once one of them is ``wanted``: the record of a
        call made last may be stored after those of the calls before it."""

        async def found() -> list[AuditRecord] | None:
            records = await self.store.audit.list_recent(100, server=server)
            return records if any(map(wanted, records)) else None

        return await until(found, what=f"the audit record wanted of {server}", interval=0.02)

    async def _stored(
        self, query: Callable[[], Awaitable[list[AuditRecord]]], count: int
    ) -> list[AuditRecord]:
        async def enough() -> list[AuditRecord] | None:
            records = await query()
            return records if len(records) >= count else None

        return await until(enough, what=f"{count} audit records to be stored", interval=0.02)

    def token(
        self,
        server: str,
        *scopes: str,
        subject: str = "user-1",
        client_id: str = "test-client",
        audience: str | None = None,
        jkt: str | None = None,
    ) -> str:
        """An access token from this gateway's own issuer, meant for ``server``."""
        value, _ = self.parts.auth.tokens.mint(
            subject=subject,
            client_id=client_id,
            audience=[audience or self.parts.auth.resources.url_for(server)],
            scopes=scopes,
            jkt=jkt,
        )
        return str(value)

    async def add_server(self, name: str, **config: Any) -> None:
        """Save one more server and route to it now, not at the next poll."""
        await self.store.servers.save([server_record(name, config)])
        await self.parts.directory.refresh()

    async def stop(self) -> None:
        await self.served.stop()


@asynccontextmanager
async def running_gateway(
    settings: Settings,
    store: Store,
    listener: socket.socket | None = None,
    *,
    poll_s: float = 60,
) -> AsyncIterator[Gateway]:
    """The gateway over ``store`` (which it leaves open), until the block ends or ``stop()``."""
    app = create_app(settings, store=store, poll_s=poll_s)
    async with serving(uvicorn_server(app, settings), listener) as served:
        yield Gateway(f"http://127.0.0.1:{served.port}", store, served, app)


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {"Accept": ACCEPT, "Content-Type": JSON, "MCP-Protocol-Version": MODERN}
    headers["Mcp-Method"] = method
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def call_body(tool: str, arguments: dict[str, Any] | None = None, *, id: int = 1) -> bytes:
    params = {"name": tool, "arguments": arguments or {}, "_meta": META}
    return orjson.dumps({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})


def list_body(*, id: int = 1, modern: bool = True) -> bytes:
    params = {"_meta": META} if modern else {}
    return orjson.dumps({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params})


async def call_modern(
    http: httpx2.AsyncClient, url: str, tool: str, arguments: dict[str, Any] | None = None
) -> httpx2.Response:
    """One 2026-07-28 ``tools/call``, headers agreeing with the body."""
    body = call_body(tool, arguments)
    return await http.post(url, content=body, headers=modern_headers("tools/call", tool))


def messages(response: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a JSON or SSE response."""
    if response.headers["content-type"].startswith("application/json"):
        return [orjson.loads(response.content)]
    found = []
    for event in response.text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in event.split("\n") if line.startswith("data:")]
        if any(data):  # a priming event (SEP-1699) has an id and empty data
            found.append(orjson.loads("\n".join(data)))
    return found


async def legacy_session(
    http: httpx2.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> str:
    """Initialize an ``initialize``-era session through ``url``; its ``Mcp-Session-Id``.
    ``headers`` (a token, say) go with both requests."""
    extra = headers or {}
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "gateway-tests", "version": "1"},
        },
    }
    response = await http.post(url, json=initialize, headers={"Accept": ACCEPT, **extra})
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    response = await http.post(url, json=initialized, headers={**legacy_headers(session), **extra})
    assert response.status_code == 202, response.text
    return session


def legacy_headers(session: str) -> dict[str, str]:
    return {
        "Accept": ACCEPT,
        "Content-Type": JSON,
        "MCP-Protocol-Version": LEGACY,
        "Mcp-Session-Id": session,
    }


def legacy_call_body(tool: str, arguments: dict[str, Any] | None = None, *, id: int = 1) -> bytes:
    params = {"name": tool, "arguments": arguments or {}}
    return orjson.dumps({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
