"""A server's ``backend:`` decides where the gateway forwards its calls: the host (and port)
it names, not ``gateway.backend_host``; servers without one keep going there.

The backend listens on 127.0.0.2 only, standing in for another host: a call reaches it exactly
when the gateway connects to the address the server's YAML names.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import httpx2
import pytest

from atrium.servers.app import create_app as create_server_app
from atrium.servers.shutdown import GracefulServer
from tests.gateway.backend import Witness, build_backend
from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway, call_modern, serving
from tests.processes import free_port

FAR = "127.0.0.2"


@pytest.fixture
async def far_backend() -> AsyncIterator[Backend]:
    """The test backend on 127.0.0.2 alone (bound there, so the SDK checks no Host)."""
    witness = Witness()
    app = witness.app(create_server_app(build_backend(witness), callers=None, host=FAR))
    server = GracefulServer(app, host=FAR, port=0, log_level="warning", timeout_s=5)
    listener = socket.create_server((FAR, 0))
    async with serving(server, listener) as served:
        yield Backend(served.port, witness, server)


async def test_calls_go_to_the_backend_host_and_port_the_server_names(
    gateway: Gateway, far_backend: Backend, http: httpx2.AsyncClient
) -> None:
    port = far_backend.port
    await gateway.add_server("far", port=port, backend={"host": FAR})
    await gateway.add_server("mapped", port=free_port(), backend={"host": FAR, "port": port})
    await gateway.add_server("near", port=port)  # gateway.backend_host: 127.0.0.1

    far = await call_modern(http, gateway.url("far"), "echo", {"text": "far"})
    mapped = await call_modern(http, gateway.url("mapped"), "echo", {"text": "mapped"})
    near = await call_modern(http, gateway.url("near"), "echo", {"text": "near"})

    assert (far.status_code, mapped.status_code) == (200, 200)
    assert far_backend.witness.calls["echo"] == 2
    assert near.status_code == 503  # nobody listens on 127.0.0.1 at that port
    assert gateway.parts.directory.routes["far"].upstream == f"http://{FAR}:{port}/mcp"


async def test_an_ipv6_backend_address_is_bracketed_in_the_url(gateway: Gateway) -> None:
    await gateway.add_server("six", port=5123, backend={"host": "fd00::7"})

    assert gateway.parts.directory.routes["six"].upstream == "http://[fd00::7]:5123/mcp"
