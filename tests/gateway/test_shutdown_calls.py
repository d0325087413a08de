"""Calls in flight when the gateway stops (issue 18 item 9): each gets ``gateway.shutdown_grace_s``
to finish; then its client gets a JSON-RPC error that says the gateway is stopping (503 when
nothing was sent yet, an error event on a stream already open), and its audit record says the
same thing, once. Both ways a gateway stops: ``GatewayServer.stop`` (``atrium start``), and a
bare uvicorn that cancels what is left at the end of its own grace period.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import orjson

from atrium.gateway.app import create_app
from atrium.gateway.serve import GatewayServer
from atrium.serving import EmbeddedServer, uvicorn_config
from atrium.settings import Settings, load_settings
from atrium.store import Store
from atrium.store.audit import AuditRecord
from tests.gateway.conftest import Backend
from tests.gateway.helpers import (
    META,
    call_body,
    messages,
    modern_headers,
    save_servers,
    serving,
)
from tests.polling import until
from tests.processes import free_port

GRACE_S = 0.5
GATEWAY_STOPPING = -32003


@dataclass
class Stoppable:
    base: str
    store: Store
    stop: Any  # the coroutine function that stops the gateway

    def url(self, server: str, endpoint: str = "mcp") -> str:
        return f"{self.base}/api/v1/mcp/{server}/{endpoint}"

    async def audit(self, request_id: str) -> list[AuditRecord]:
        async def stored() -> list[AuditRecord] | None:
            return await self.store.audit.for_request(request_id) or None

        return await until(stored, what="the audit record", interval=0.02)


def project(tmp_path: Path) -> Settings:
    (tmp_path / "atrium.yaml").write_text(
        f"gateway:\n  port: {free_port()}\n  shutdown_grace_s: {GRACE_S}\n"
    )
    return load_settings(tmp_path, environ={})


@asynccontextmanager
async def atrium_start_gateway(tmp_path: Path, backend: Backend) -> AsyncIterator[Stoppable]:
    """The gateway as ``atrium start`` serves it."""
    settings = project(tmp_path)
    async with await Store.open(settings) as store:
        await save_servers(store, backend.port, free_port())
        server = GatewayServer(settings, store)
        await server.start()
        try:
            yield Stoppable(f"http://127.0.0.1:{settings.gateway_port}", store, server.stop)
        finally:
            await server.stop()


@asynccontextmanager
async def bare_uvicorn_gateway(tmp_path: Path, backend: Backend) -> AsyncIterator[Stoppable]:
    """The gateway's app under a uvicorn that cancels what still runs after 1 s."""
    settings = project(tmp_path)
    async with await Store.open(settings) as store:
        await save_servers(store, backend.port, free_port())
        app = create_app(settings, store=store, poll_s=60)
        async with serving(EmbeddedServer(uvicorn_config(app, timeout_s=1))) as served:
            yield Stoppable(f"http://127.0.0.1:{served.port}", store, served.stop)


async def stop_during(gateway: Stoppable, backend: Backend, tag: str, call: Any) -> httpx2.Response:
    """Start ``call`` (a coroutine giving a response); once the backend runs the tool tagged
    ``tag``, stop the gateway; the response."""
    answer = asyncio.ensure_future(call)
    await until(lambda: tag in backend.witness.started or answer.done(), what="the call to run")
    await gateway.stop()
    return await asyncio.wait_for(answer, 10)


async def slow_call(http: httpx2.AsyncClient, url: str, tag: str) -> httpx2.Response:
    body = call_body("slow", {"seconds": 30, "tag": tag})
    return await http.post(url, content=body, headers=modern_headers("tools/call", "slow"))


def stopping_error(message: dict[str, Any]) -> dict[str, Any]:
    error = message["error"]
    assert isinstance(error, dict)
    assert error["code"] == GATEWAY_STOPPING
    return error


async def test_a_call_cut_at_shutdown_gets_503_and_a_json_rpc_error_audited_alike(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with atrium_start_gateway(tmp_path, backend) as gateway:
        call = slow_call(http, gateway.url("tools"), "cut")
        response = await stop_during(gateway, backend, "cut", call)
        (record,) = await gateway.audit(response.headers["x-request-id"])

    assert response.status_code == 503
    assert "retry-after" not in response.headers
    body = orjson.loads(response.content)
    assert body["id"] == 1
    error = stopping_error(body)
    assert (record.status, record.outcome, record.error) == (503, "http_error", error["message"])
    await until(lambda: "cut" in backend.witness.cancelled, what="the tool to be cancelled")


async def test_a_one_shot_call_cut_at_shutdown_gets_the_same_answer(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with atrium_start_gateway(tmp_path, backend) as gateway:
        body = call_body("slow", {"seconds": 30, "tag": "one-shot"})
        call = http.post(gateway.url("tools", "jsonrpc"), content=body)
        response = await stop_during(gateway, backend, "one-shot", call)
        (record,) = await gateway.audit(response.headers["x-request-id"])

    assert response.status_code == 503
    error = stopping_error(orjson.loads(response.content))
    assert (record.status, record.error) == (503, error["message"])


async def test_a_stream_cut_at_shutdown_ends_with_an_error_event_for_its_call(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    params = {"name": "progress", "arguments": {"steps": 2}, "_meta": {**META, "progressToken": 1}}
    body = orjson.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params})
    async with atrium_start_gateway(tmp_path, backend) as gateway:
        call = http.post(
            gateway.url("tools"), content=body, headers=modern_headers("tools/call", "progress")
        )
        answer = asyncio.ensure_future(call)
        await until(lambda: backend.witness.calls["progress"] or answer.done(), what="the call")
        await gateway.stop()
        response = await asyncio.wait_for(answer, 10)
        (record,) = await gateway.audit(response.headers["x-request-id"])

    assert response.status_code == 200
    *progress, last = messages(response)
    assert [m["method"] for m in progress] == ["notifications/progress"]
    assert last["id"] == 5
    error = stopping_error(last)
    assert (record.status, record.outcome, record.error) == (200, "jsonrpc_error", error["message"])


async def test_a_call_the_server_cancels_at_the_end_of_its_grace_gets_the_same_answer(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with bare_uvicorn_gateway(tmp_path, backend) as gateway:
        call = slow_call(http, gateway.url("tools"), "cancelled")
        response = await stop_during(gateway, backend, "cancelled", call)
        (record,) = await gateway.audit(response.headers["x-request-id"])

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    error = stopping_error(orjson.loads(response.content))
    assert (record.status, record.outcome, record.error) == (503, "http_error", error["message"])


async def test_a_call_that_ends_within_the_grace_period_is_answered_normally(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with atrium_start_gateway(tmp_path, backend) as gateway:
        body = call_body("slow", {"seconds": GRACE_S / 3, "tag": "quick"})
        call = http.post(
            gateway.url("tools"), content=body, headers=modern_headers("tools/call", "slow")
        )
        response = await stop_during(gateway, backend, "quick", call)
        (record,) = await gateway.audit(response.headers["x-request-id"])

    assert response.status_code == 200
    assert "result" in messages(response)[0]
    assert (record.status, record.outcome) == (200, "ok")
