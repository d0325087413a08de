"""``GET /api/v1/mcp/registry`` and ``/api/v1/mcp/registry/{server}``: what the gateway serves."""

from __future__ import annotations

import os
import time

import httpx2

from atrium.runstate import RuntimeState, ServerStatus, SupervisorLock, write_state
from atrium.settings import Settings
from tests.gateway.conftest import Backend
from tests.gateway.helpers import SERVERS, Gateway


async def test_the_registry_lists_every_server_shown_on_the_web_and_no_other(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await http.get(f"{gateway.base}/api/v1/mcp/registry")

    assert response.status_code == 200
    listed = {entry["name"] for entry in response.json()["servers"]}
    assert listed == set(SERVERS) - {"hidden"}


async def test_an_entry_tells_a_client_how_to_connect(
    gateway: Gateway, backend: Backend, settings: Settings, http: httpx2.AsyncClient
) -> None:
    oauth = {"required": True, "scopes": ["tools:read", "tools:write"]}
    await gateway.add_server("secured", port=backend.port, description="Needs a token", oauth=oauth)

    response = await http.get(f"{gateway.base}/api/v1/mcp/registry/secured")

    assert response.status_code == 200
    assert response.json() == {
        "name": "secured",
        "description": "Needs a token",
        "endpoint": f"{settings.public_url}/api/v1/mcp/secured/mcp",
        "transport": "http",
        "oauth": oauth,
        "status": "unknown",
    }


async def test_a_hidden_or_unknown_server_has_no_entry(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    hidden = await http.get(f"{gateway.base}/api/v1/mcp/registry/hidden")
    unknown = await http.get(f"{gateway.base}/api/v1/mcp/registry/nowhere")

    assert (hidden.status_code, unknown.status_code) == (404, 404)


async def test_status_comes_from_the_running_supervisor(
    gateway: Gateway, backend: Backend, settings: Settings, http: httpx2.AsyncClient
) -> None:
    lock = SupervisorLock(settings.state_dir)
    assert lock.acquire()
    try:
        running = ServerStatus("tools", "http", backend.port, state="running", pid=os.getpid())
        write_state(settings.state_dir, RuntimeState(os.getpid(), time.time(), {"tools": running}))

        response = await http.get(f"{gateway.base}/api/v1/mcp/registry")
    finally:
        lock.release()

    status = {entry["name"]: entry["status"] for entry in response.json()["servers"]}
    assert status["tools"] == "running"
    assert status["guarded"] == "unknown"  # the supervisor does not know it
    assert status["off"] == "disabled"


async def test_without_a_supervisor_every_enabled_server_is_unknown_and_a_remote_one_remote(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    await gateway.add_server("far", transport="remote", url="https://mcp.example/mcp")

    response = await http.get(f"{gateway.base}/api/v1/mcp/registry")

    status = {entry["name"]: entry["status"] for entry in response.json()["servers"]}
    assert status.pop("far") == "remote"
    assert status.pop("off") == "disabled"
    assert set(status.values()) == {"unknown"}


async def test_the_entry_of_a_server_named_mcp_is_not_taken_for_an_mcp_endpoint(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    await gateway.add_server("mcp", port=backend.port)

    response = await http.get(f"{gateway.base}/api/v1/mcp/registry/mcp")

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "mcp"
