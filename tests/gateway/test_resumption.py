"""A stream that drops mid-call, resumed through the gateway (SEP-1699): the official Python
client reconnects with ``Last-Event-ID`` on its sealed session, and gets every event it missed,
each once; the backend's event store (``atrium.servers.event_store``) keeps them meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import Context
from starlette.types import ASGIApp, Receive, Scope, Send

from atrium.servers.app import create_app as create_server_app
from atrium.servers.shutdown import GracefulServer
from atrium.servers.toolkit import AtriumServer
from tests.gateway.helpers import Gateway, serving

RESULT = "finished while the client was away"


@dataclass
class Drops:
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    resumed_from: list[str] = field(default_factory=list)  # Last-Event-IDs the backend got


def dropping_server(drops: Drops) -> AtriumServer[Any]:
    server: AtriumServer[Any] = AtriumServer("dropper", version="1.0.0")

    @server.tool()
    async def drop_then_finish(ctx: Context[Any, Any]) -> str:
        await ctx.report_progress(1, 4)
        await ctx.report_progress(2, 4)
        await ctx.close_sse_stream()
        await ctx.report_progress(3, 4)
        await ctx.report_progress(4, 4)
        drops.finished.set()
        return RESULT

    return server


def holding_resumptions(app: ASGIApp, drops: Drops) -> ASGIApp:
    """``app``, holding each ``GET`` with ``Last-Event-ID`` until the tool has finished: every
    event the client missed is then in the store, whatever the timing."""

    async def held(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            last = dict(scope["headers"]).get(b"last-event-id")
            if last is not None:
                drops.resumed_from.append(last.decode())
                await drops.finished.wait()
        await app(scope, receive, send)

    return held


@pytest.fixture
async def dropping(gateway: Gateway) -> AsyncIterator[tuple[str, Drops]]:
    drops = Drops()
    app = holding_resumptions(create_server_app(dropping_server(drops), callers=None), drops)
    server = GracefulServer(app, host="127.0.0.1", port=0, log_level="warning", timeout_s=5)
    async with serving(server) as served:
        await gateway.add_server("dropper", port=served.port)
        yield gateway.url("dropper"), drops


async def test_a_client_whose_stream_dropped_gets_what_it_missed_once(
    dropping: tuple[str, Drops],
) -> None:
    url, drops = dropping
    seen: list[float] = []

    async def record(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(url, mode="legacy") as client:
        result = await client.call_tool("drop_then_finish", {}, progress_callback=record)

    assert not result.is_error
    assert result.structured_content == {"result": RESULT}
    assert seen == [1, 2, 3, 4]
    assert len(drops.resumed_from) == 1
