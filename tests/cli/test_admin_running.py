"""``atrium admin`` against a running Atrium: the very next request sees the change.

The supervisor runs with its gateway in this event loop, as ``atrium start`` runs them (no
MCP server process: the one server is remote, the gateway tests' backend). The commands run
in-process, as the operator types them. The gateway's own poll comes every 2 s; each test
makes its request at once after the command returns, so only the command's poke through the
control channel (``reload-auth``) can have made the gateway see the change.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from atrium.host import run_foreground
from atrium.registry.loader import load_registry
from atrium.settings import Settings, load_settings
from atrium.supervisor import control
from tests.auth.flow import bearer, call_tool, challenge, jwt_claims
from tests.cli.helpers import CliResult, run_atrium
from tests.gateway.conftest import Backend, backend  # noqa: F401  (a fixture used here)
from tests.gateway.helpers import list_body, modern_headers
from tests.processes import free_port, free_server_ports

SERVER = "probe"


@dataclass
class Running:
    settings: Settings
    env: dict[str, str]
    http: httpx2.AsyncClient

    @property
    def url(self) -> str:
        return self.settings.endpoint_for(SERVER)

    async def admin(self, *args: str, stdin: str = "", ok: bool = True) -> CliResult:
        """``atrium admin ARGS`` as the operator types it, next to the running Atrium."""

        def run() -> CliResult:
            saved, sys.stdin = sys.stdin, io.StringIO(stdin)
            try:
                project = str(self.settings.project_dir)
                return run_atrium("--project", project, "admin", *args, env=self.env)
            finally:
                sys.stdin = saved

        result = await asyncio.to_thread(run)
        if ok:
            assert result.exit_code == 0, result.stderr
        return result

    async def token(self, user: str) -> str:
        """``admin token issue``: every scope of the user's role, for the probe server."""
        issued = await self.admin("token", "issue", "--user", user, "--server", SERVER)
        return issued.stdout.strip()

    async def call(self, token: str) -> httpx2.Response:
        return await call_tool(self.http, self.url, "echo", bearer(token))

    async def refused(self, token: str) -> bool:
        response = await self.call(token)
        return (response.status_code, challenge(response).get("error")) == (401, "invalid_token")


@pytest.fixture
async def running(
    tmp_path: Path,
    backend: Backend,  # noqa: F811
) -> AsyncIterator[Running]:
    assert (await asyncio.to_thread(run_atrium, "init", str(tmp_path))).exit_code == 0
    free_server_ports(tmp_path)
    probe = {"transport": "remote", "url": backend.url, "oauth": {"required": True}}
    (tmp_path / "services/mcp/probe.yaml").write_text(json.dumps({"mcp_servers": {SERVER: probe}}))
    port = free_port()
    env = {"ATRIUM_GATEWAY_PORT": str(port), "ATRIUM_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    settings = load_settings(tmp_path, environ=env)
    started = asyncio.Event()
    task = asyncio.create_task(
        run_foreground(
            settings,
            load_registry(settings),
            [],  # no server process: the probe is remote
            reload=lambda: load_registry(settings),
            gateway=True,
            on_started=lambda _: started.set(),
        )
    )
    try:
        await asyncio.wait_for(started.wait(), 30)
        async with httpx2.AsyncClient(timeout=10) as http:
            running = Running(settings, env, http)
            for user, role in (("ada", "user"), ("bob", "user")):
                await running.admin(
                    "users", "create", user, "--role", role, "--password-stdin", stdin="x" * 12
                )
            yield running
    finally:
        if not task.done():
            await control.request(settings.state_dir, {"op": "stop"})
        await asyncio.wait_for(task, 30)


async def test_disabling_a_user_refuses_their_token_at_the_next_request(running: Running) -> None:
    token, other = await running.token("ada"), await running.token("bob")
    assert (await running.call(token)).status_code == 200

    await running.admin("users", "disable", "ada")

    assert await running.refused(token)
    assert (await running.call(other)).status_code == 200  # one user's change, not everyone's


async def test_deleting_a_user_refuses_their_token_at_the_next_request(running: Running) -> None:
    token = await running.token("ada")
    assert (await running.call(token)).status_code == 200

    await running.admin("users", "delete", "ada")

    assert await running.refused(token)
    assert (await running.admin("users", "delete", "ada", ok=False)).exit_code == 1


async def test_a_new_password_refuses_the_users_tokens_at_the_next_request(
    running: Running,
) -> None:
    token = await running.token("ada")
    assert (await running.call(token)).status_code == 200

    await running.admin("users", "set-password", "ada", "--password-stdin", stdin="y" * 12)

    assert await running.refused(token)


async def test_a_role_with_fewer_scopes_refuses_the_old_token_and_not_a_new_one(
    running: Running,
) -> None:
    token = await running.token("ada")
    assert "tools:write" in jwt_claims(token)["scope"]

    await running.admin("users", "set-role", "ada", "reader")
    refused = await running.refused(token)
    narrowed = await running.token("ada")
    listed = await running.http.post(
        running.url,
        content=list_body(),
        headers={**modern_headers("tools/list"), **bearer(narrowed)},
    )

    assert refused
    assert "tools:write" not in jwt_claims(narrowed)["scope"]
    assert listed.status_code == 200, listed.text


async def test_a_role_with_more_scopes_leaves_the_tokens_alone(running: Running) -> None:
    await running.admin("users", "set-role", "ada", "reader")
    token = await running.token("ada")

    await running.admin("users", "set-role", "ada", "admin")

    listed = await running.http.post(
        running.url, content=list_body(), headers={**modern_headers("tools/list"), **bearer(token)}
    )
    assert listed.status_code == 200, listed.text


@pytest.mark.parametrize("given", ["token", "jti"])
async def test_a_revoked_cli_token_is_refused_at_the_next_request(
    running: Running, given: str
) -> None:
    token, sibling = await running.token("ada"), await running.token("ada")
    assert (await running.call(token)).status_code == 200

    await running.admin("token", "revoke", token if given == "token" else jwt_claims(token)["jti"])

    assert await running.refused(token)
    assert (await running.call(sibling)).status_code == 200  # that token only


async def test_a_key_rotated_out_refuses_its_remembered_token_at_the_next_request(
    running: Running,
) -> None:
    token = await running.token("ada")
    assert (await running.call(token)).status_code == 200  # verified, and remembered

    await running.admin("keys", "rotate")
    still_kept = await running.call(token)
    await running.admin("keys", "rotate")

    assert still_kept.status_code == 200  # its key is still in the set
    assert await running.refused(token)
    assert (await running.call(await running.token("ada"))).status_code == 200
