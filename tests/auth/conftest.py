"""A gateway with its authorization server on a known loopback port, servers with every kind
of OAuth policy, a signed-up user per role, and helpers that play the browser and the client.

The public URL must be the URL clients use (tokens name it as their audience), so the socket
is bound before the settings are written.
"""

from __future__ import annotations

import functools
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from atrium.auth.hashing import hash_password
from atrium.settings import Settings, load_settings
from atrium.store import Store, UserRecord
from tests.auth.flow import PASSWORD, Browser, register_client
from tests.gateway.conftest import Backend, backend  # noqa: F401  (a fixture used here)
from tests.gateway.helpers import Gateway, running_gateway, server_record

__all__ = ["AUTH_SERVERS", "PASSWORD"]

# name -> extra YAML of a server routed to the test backend
AUTH_SERVERS: dict[str, dict[str, Any]] = {
    "users": {"oauth": {"required": True, "scopes": ["user"]}},
    "admins": {"oauth": {"required": True, "scopes": ["admin"], "audience": "mcp"}},
    "open": {"oauth": {"required": False}, "tools": {"public": ["echo"]}},
    "bound": {"oauth": {"required": True, "dpop": "required"}},
    "plain": {"oauth": {"required": True, "dpop": "off"}},
    "one-client": {"oauth": {"required": True, "client_id": "the-only-one"}},
    "readers": {"oauth": {"required": True, "scopes": ["user", "tools:read"]}},
    "per-tool": {
        "oauth": {"required": True},
        "tools": {"scopes": {"upload": ["uploader"], "delete_*": ["admin"]}},
    },
}


@functools.cache
def _hashed() -> str:
    """PASSWORD's argon2 hash, computed once: hashing is slow by design (a tenth of a second)."""
    return hash_password(PASSWORD)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
def oauth_options() -> dict[str, Any]:
    """More ``oauth:`` settings; a test changes them with ``parametrize("oauth_options", ...)``."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, listener: socket.socket, oauth_options: dict[str, Any]) -> Settings:
    port = listener.getsockname()[1]
    extra = "".join(f"  {key}: {json.dumps(value)}\n" for key, value in oauth_options.items())
    (tmp_path / "atrium.yaml").write_text(
        f"gateway:\n  public_url: http://127.0.0.1:{port}\n"
        "oauth:\n  dev_mode: true\n  roles:\n    uploader: [user, uploader]\n" + extra
    )
    return load_settings(tmp_path, environ={})


@pytest.fixture
async def gateway(
    settings: Settings,
    backend: Backend,  # noqa: F811
    listener: socket.socket,
) -> AsyncIterator[Gateway]:
    async with await Store.open(settings) as store:
        records = [
            server_record(name, {"port": backend.port, **extra})
            for name, extra in AUTH_SERVERS.items()
        ]
        await store.servers.save(records)
        for role in ("admin", "user", "reader", "uploader"):
            await store.users.add(
                UserRecord(id=uuid.uuid4().hex, username=role, password_hash=_hashed(), role=role)
            )
        async with running_gateway(settings, store, listener) as running:
            yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
async def browser(gateway: Gateway) -> AsyncIterator[Browser]:
    async with Browser.open(gateway.base) as playing:
        yield playing


@pytest.fixture
async def client(gateway: Gateway, http: httpx2.AsyncClient) -> dict[str, Any]:
    """A public client registered dynamically, as MCP clients do."""
    return await register_client(http, gateway.base)
