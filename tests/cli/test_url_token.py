"""``atrium plugins mcp ... --url``: the endpoint gets a token like the local gateway does, and
the operator's token never goes to a host that is not this project's gateway.

The gateway runs in the test's loop; the command runs as a user runs it (in a thread, since it
runs an event loop of its own).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from atrium.auth.operator import OPERATOR_CLIENT_ID
from atrium.settings import Settings, load_settings
from atrium.store import Store
from tests.cli.helpers import CliResult, run_atrium
from tests.gateway.conftest import Backend, backend  # noqa: F401  (a fixture used here)
from tests.gateway.helpers import Gateway, running_gateway, server_record

LOCKED = {"oauth": {"required": True, "scopes": ["admin"]}}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A project whose gateway's public URL is the default one, as ``init`` writes it."""
    (tmp_path / "atrium.yaml").write_text("")
    return load_settings(tmp_path, environ={})


@pytest.fixture
async def gateway(settings: Settings, backend: Backend) -> AsyncIterator[Gateway]:  # noqa: F811
    """A gateway with one server, ``locked``, that no caller without an admin token may use."""
    async with await Store.open(settings) as store:
        await store.servers.save([server_record("locked", {"port": backend.port, **LOCKED})])
        async with running_gateway(settings, store) as running:
            yield running


async def tools_at(project: Path, url: str, **env: str) -> CliResult:
    args = ("--project", str(project), "plugins", "mcp", "tools", "locked", "--json")
    return await asyncio.to_thread(run_atrium, *args, "--url", url, "--timeout", "5", env=env)


class Recorder:
    """An HTTP endpoint that answers 404 and keeps the ``Authorization`` headers it got."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        return web.Response(status=404)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, int]]:
    found = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield found, port
    finally:
        await runner.cleanup()


@pytest.fixture
def elsewhere() -> Iterator[socket.socket]:
    """A listener on 127.0.0.2: this machine, but a host the project's gateway does not serve."""
    listener = socket.create_server(("127.0.0.2", 0))
    listener.setblocking(False)
    yield listener
    listener.close()


async def test_a_gateway_url_of_this_project_gets_the_operators_token(
    gateway: Gateway, settings: Settings
) -> None:
    result = await tools_at(settings.project_dir, gateway.url("locked"))

    assert result.exit_code == 0, result.stderr
    assert "echo" in {tool["name"] for tool in json.loads(result.stdout)}
    records = await gateway.audit_of("locked")
    assert {record.client_id for record in records} == {OPERATOR_CLIENT_ID}


async def test_atrium_token_is_sent_instead_when_set(gateway: Gateway, settings: Settings) -> None:
    bobs = gateway.token("locked", "admin", subject="bob")

    result = await tools_at(settings.project_dir, gateway.url("locked"), ATRIUM_TOKEN=bobs)

    assert result.exit_code == 0, result.stderr
    records = await gateway.audit_of("locked")
    assert {(record.subject, record.client_id) for record in records} == {("bob", "test-client")}


async def test_the_operators_token_is_not_sent_to_a_host_the_project_does_not_serve(
    gateway: Gateway, settings: Settings, elsewhere: socket.socket
) -> None:
    port = elsewhere.getsockname()[1]

    result = await tools_at(settings.project_dir, f"http://127.0.0.2:{port}/api/v1/mcp/locked/mcp")

    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "not a host this project's gateway answers to" in message
    assert "ATRIUM_TOKEN" in message
    with pytest.raises(BlockingIOError):
        elsewhere.accept()  # nothing connected: no token left this process


async def test_a_url_that_is_no_gateway_endpoint_gets_no_token(
    gateway: Gateway, settings: Settings, recorder: tuple[Recorder, int]
) -> None:
    found, port = recorder

    result = await tools_at(settings.project_dir, f"http://127.0.0.1:{port}/mcp")

    assert result.exit_code == 1
    assert found.authorizations
    assert set(found.authorizations) == {None}


async def test_outside_a_project_with_a_store_the_command_says_where_a_token_comes_from(
    tmp_path: Path, recorder: tuple[Recorder, int]
) -> None:
    found, port = recorder
    project = tmp_path / "elsewhere"
    project.mkdir()

    result = await tools_at(project, f"http://127.0.0.1:{port}/api/v1/mcp/locked/mcp")

    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "no store of an Atrium project" in message
    assert "ATRIUM_TOKEN" in message
    assert found.authorizations == []
    assert not (project / ".atrium").exists()  # no store, and no key, made on the way
