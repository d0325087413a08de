"""Kills under load (issue 18, the audit invariant): whatever signal hits the gateway or a
backend, every request the gateway answered has exactly one audit row.

The gateway is a process of its own (``tests.gateway.gateway_process``), SIGKILLed while
clients call through it; a new one starts on the same project, replaying the dead one's
journal before it serves. A backend killed under load leaves its callers answered with errors,
each recorded once.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2

from atrium.settings import Settings
from atrium.store import Store
from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway, call_modern, save_servers
from tests.gateway.test_audit import killable_backend
from tests.gateway.test_ratelimit_redis import REPO, healthy, stopped
from tests.polling import until
from tests.processes import free_port

CLIENTS = 4
ANSWERED_BEFORE_KILL = 80


@asynccontextmanager
async def gateway_process(
    settings: Settings, http: httpx2.AsyncClient
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """The gateway of ``settings``' project as a process of its own, until the block ends."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ATRIUM_")}
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.gateway.gateway_process",
        str(settings.project_dir),
        cwd=REPO,
        env={**environ, **settings.environ, "ATRIUM_GATEWAY_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await healthy(process, http, base)
        yield process, base
    finally:
        await stopped(process)


async def calling(url: str, answered: list[httpx2.Response], kill: Callable[[], None]) -> None:
    """Call ``echo`` until the gateway is gone; keep every whole answer, and ``kill`` the
    gateway the moment the ``ANSWERED_BEFORE_KILL``-th is in: its record has just been made,
    the other clients' calls are in flight."""
    async with httpx2.AsyncClient(timeout=30) as client:
        while True:
            try:
                response = await call_modern(client, url, "echo", {"text": "load"})
            except httpx2.TransportError:
                return
            answered.append(response)
            if len(answered) == ANSWERED_BEFORE_KILL:
                kill()


async def test_a_gateway_killed_under_load_loses_no_audit_row_and_doubles_none(
    database_settings: Settings, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with await Store.open(database_settings) as store:
        await save_servers(store, backend.port, free_port())
    answered: list[httpx2.Response] = []

    async with gateway_process(database_settings, http) as (process, base):
        url = f"{base}/api/v1/mcp/tools/mcp"
        clients = [calling(url, answered, process.kill) for _ in range(CLIENTS)]
        await asyncio.wait_for(asyncio.gather(*clients), 120)
        await process.wait()
    async with gateway_process(database_settings, http):
        pass  # replays the dead one's journal before it serves

    async with await Store.open(database_settings) as store:
        stored = Counter(r.request_id for r in await store.audit.list_recent(100_000))
    assert len(answered) >= ANSWERED_BEFORE_KILL
    assert {response.status_code for response in answered} == {200}
    ids = [response.headers["x-request-id"] for response in answered]
    assert [stored[request_id] for request_id in ids] == [1] * len(ids)
    assert max(stored.values()) == 1


async def test_a_backend_killed_under_load_leaves_one_row_per_answered_request(
    gateway: Gateway, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    answered: list[httpx2.Response] = []
    stop = asyncio.Event()

    async def calling_slow(url: str) -> None:
        while not stop.is_set():
            answered.append(await call_modern(http, url, "slow", {"seconds": 0.02}))

    async with killable_backend(tmp_path) as (backend, port):
        await gateway.add_server("fragile", port=port)
        url = gateway.url("fragile")
        clients = [asyncio.create_task(calling_slow(url)) for _ in range(CLIENTS)]
        await until(lambda: len(answered) >= 40, what="calls answered", timeout_s=60)
        backend.kill()
        count = len(answered)
        await until(lambda: len(answered) >= count + 20, what="calls after the kill")
        stop.set()
        await asyncio.gather(*clients)

    assert await gateway.parts.audit.settled(10)
    stored = Counter(r.request_id for r in await gateway.store.audit.list_recent(100_000))
    assert {response.status_code for response in answered} >= {200, 503}
    ids = [response.headers["x-request-id"] for response in answered]
    assert [stored[request_id] for request_id in ids] == [1] * len(ids)
    assert max(stored.values()) == 1
