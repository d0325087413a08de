"""A test backend built with Atrium's toolkit, a store of servers routed to it, and the gateway.

Everything runs in the test's own event loop on loopback sockets and is made afresh per test
(a store opens in ~50 ms, a server starts in less), so tests share no state. The servers are
those of ``helpers.SERVERS``: one open, one disabled, one with denied tools, one with allowed
tools, one with ``timeout_s: 1``, one on a closed port, one hidden from the web.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from atrium.servers.app import create_app as create_server_app
from atrium.servers.shutdown import GracefulServer
from atrium.settings import Settings, load_settings
from atrium.store import Store
from tests.gateway.backend import Witness, build_backend
from tests.gateway.helpers import Gateway, running_gateway, save_servers, serving
from tests.processes import free_port

MAX_BODY_BYTES = 64 * 1024


@dataclass
class Backend:
    port: int
    witness: Witness
    server: GracefulServer

    def running(self) -> int:
        """Requests the backend is still answering."""
        return len(self.server.server_state.tasks)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    witness = Witness()
    app = witness.app(create_server_app(build_backend(witness), callers=None))
    server = GracefulServer(app, host="127.0.0.1", port=0, log_level="warning", timeout_s=5)
    async with serving(server) as served:
        yield Backend(served.port, witness, server)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "atrium.yaml").write_text(f"gateway:\n  max_body_bytes: {MAX_BODY_BYTES}\n")
    return load_settings(tmp_path, environ={})


@pytest.fixture
async def gateway(settings: Settings, backend: Backend) -> AsyncIterator[Gateway]:
    async with await Store.open(settings) as store:
        await save_servers(store, backend.port, free_port())
        async with running_gateway(settings, store) as running:
            yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client
