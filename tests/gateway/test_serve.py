"""Serving the gateway: ``X-Forwarded-For`` names the caller's address only when the TCP peer
is a proxy the operator listed in ``gateway.trusted_proxies``; from anyone else (a process on
the same host included) the header is ignored, so it cannot pick a fresh anonymous budget."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest

from atrium.errors import AtriumError, ConfigError
from atrium.gateway.serve import GatewayServer, forwarding
from atrium.settings import load_settings
from atrium.store import Store
from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway, call_body, modern_headers, running_gateway, save_servers
from tests.polling import until
from tests.processes import free_port


@asynccontextmanager
async def gateway_with(tmp_path: Path, backend: Backend, yaml: str) -> AsyncIterator[Gateway]:
    """The test gateway with ``yaml`` as atrium.yaml and server ``limited`` at 2 calls/minute."""
    (tmp_path / "atrium.yaml").write_text(yaml)
    settings = load_settings(tmp_path, environ={})
    async with await Store.open(settings) as store:
        await save_servers(store, backend.port, free_port())
        async with running_gateway(settings, store) as gateway:
            await gateway.add_server("limited", port=backend.port, rate_limit="2/minute")
            yield gateway


async def anonymous_calls_from(
    http: httpx2.AsyncClient, gateway: Gateway, *addresses: str
) -> list[int]:
    """One anonymous ``tools/call`` claiming to come from each of ``addresses``; the statuses."""
    statuses = []
    for address in addresses:
        headers = {**modern_headers("tools/call", "echo"), "X-Forwarded-For": address}
        body = call_body("echo", {"text": "hi"})
        response = await http.post(gateway.url("limited"), content=body, headers=headers)
        statuses.append(response.status_code)
    return statuses


async def test_a_local_process_cannot_pick_a_fresh_anonymous_budget_with_x_forwarded_for(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with gateway_with(tmp_path, backend, "") as gateway:
        statuses = await anonymous_calls_from(http, gateway, "192.0.2.1", "192.0.2.2", "192.0.2.3")

    assert statuses == [200, 200, 429]
    assert backend.witness.calls["echo"] == 2


async def test_behind_a_trusted_proxy_each_forwarded_address_has_its_own_budget(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    yaml = "gateway:\n  trusted_proxies: [127.0.0.0/8]\n"
    async with gateway_with(tmp_path, backend, yaml) as gateway:
        statuses = await anonymous_calls_from(
            http, gateway, "192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.2"
        )

    assert statuses == [200, 200, 429, 200]


def test_forwarded_headers_are_read_only_with_trusted_proxies(tmp_path: Path) -> None:
    untrusting = load_settings(tmp_path, environ={})
    (tmp_path / "atrium.yaml").write_text("gateway:\n  trusted_proxies: [10.0.0.5, 10.1.0.0/16]\n")
    trusting = load_settings(tmp_path, environ={})

    assert forwarding(untrusting)["proxy_headers"] is False
    assert forwarding(trusting) == {
        "proxy_headers": True,
        "forwarded_allow_ips": ["10.0.0.5", "10.1.0.0/16"],
    }


async def test_a_draining_gateway_fails_its_health_check_and_serves_calls_until_it_stops(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    # gateway.drain_s: a load balancer takes the replica out by its health check; the calls it
    # sent meanwhile are answered, not cut (it could not resend them safely).
    port = free_port()
    (tmp_path / "atrium.yaml").write_text(f"gateway:\n  port: {port}\n  drain_s: 1.5\n")
    settings = load_settings(tmp_path, environ={})
    base = f"http://127.0.0.1:{port}"
    async with await Store.open(settings) as store:
        await save_servers(store, backend.port, free_port())
        server = GatewayServer(settings, store)
        await server.start()
        before = (await http.get(f"{base}/health")).status_code
        stopping = asyncio.create_task(server.stop())

        async def draining() -> httpx2.Response | None:
            response = await http.get(f"{base}/health")
            return response if response.status_code == 503 else None

        health = await until(draining, what="/health answering 503", interval=0.02)
        call = await http.post(
            f"{base}/api/v1/mcp/tools/mcp",
            content=call_body("echo", {"text": "late"}),
            headers=modern_headers("tools/call", "echo"),
        )
        still_draining = not stopping.done()
        await asyncio.wait_for(stopping, 30)

        with pytest.raises(httpx2.ConnectError):
            await http.get(f"{base}/health")
    assert (before, health.json(), call.status_code) == (200, {"status": "draining"}, 200)
    assert still_draining


def test_the_drain_is_a_bounded_duration(tmp_path: Path) -> None:
    (tmp_path / "atrium.yaml").write_text("gateway:\n  drain_s: -1\n")

    with pytest.raises(ConfigError, match="drain_s"):
        load_settings(tmp_path, environ={})
    assert load_settings(tmp_path, environ={"ATRIUM_GATEWAY_DRAIN_S": "5"}).drain_s == 5


async def test_the_port_is_held_from_the_start_and_a_failed_start_is_an_error(
    tmp_path: Path,
) -> None:
    # The lifespan takes a second or more on a busy machine: were the port only checked before
    # it, another process could take it meanwhile. A lifespan that fails (here: a closed store)
    # is an error of the gateway's, not uvicorn's SystemExit, which would end the event loop
    # of every part sharing the process. Here the lifespan fails on a database file that is not
    # one.
    port = free_port()
    settings = load_settings(tmp_path, environ={"ATRIUM_GATEWAY_PORT": str(port)})
    store = await Store.open(settings)
    await store.close()
    for file in (tmp_path / ".atrium").glob("atrium.db*"):
        file.write_bytes(b"not a database" * 100)
    server = GatewayServer(settings, store)

    starting = asyncio.create_task(server.start())
    await asyncio.sleep(0)  # start() has run to its first wait: the lifespan has not ended
    with socket.socket() as other, pytest.raises(OSError, match="in use") as taken:
        other.bind(("127.0.0.1", port))
    with pytest.raises(AtriumError, match="the gateway could not start"):
        await starting

    assert taken.value.errno == errno.EADDRINUSE
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # given back
