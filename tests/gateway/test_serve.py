"""Serving the gateway: ``X-Forwarded-For`` names the caller's address only when the TCP peer
is a proxy the operator listed in ``gateway.trusted_proxies``; from anyone else (a process on
the same host included) the header is ignored, so it cannot pick a fresh anonymous budget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2

from atrium.gateway.serve import forwarding
from atrium.settings import load_settings
from atrium.store import Store
from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway, call_body, modern_headers, running_gateway, save_servers
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
