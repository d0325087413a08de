"""Seed 002's flow for a user's own server, end to end: write a server from scratch under
``extensions/mcp/<name>/`` on Atrium's toolkit, ``atrium build mcp <name>``, sync, restart,
and call its tool through the gateway with OAuth as two users. On the same instance, the
``atrium`` server's artifact viewer through the gateway: its tool names the viewer,
``resources/list`` lists it, a run links its artifact, which its caller and an admin read and
another user may not.

The build installs into "Atrium's environment": a throwaway virtualenv layered over this one
(``tests.cli.test_build.layered_python``), first on the instance's PATH, so the project's own
``.venv`` is never changed.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.apps import APP_MIME_TYPE
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, ResourceLink, TextContent, TextResourceContents

from atrium.servers.atrium.viewer import VIEWER_URI
from tests.auth.flow import jwt_claims
from tests.cli.test_build import layered_python, write_python_extension
from tests.e2e.instance import Instance, started_instance
from tests.polling import wait_until
from tests.processes import free_port

GREETER = '''\
"""A user's own server, written from scratch on Atrium's toolkit."""

from typing import Any

from atrium import AtriumServer, Context, ToolAnnotations, current_caller, run

server: AtriumServer[Any] = AtriumServer("greeter", version="0.1.0")


@server.tool(
    title="Greet",
    description="Greet someone, saying who asked.",
    annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
)
def greet(name: str, ctx: Context) -> str:
    return f"Hello {name}, from {current_caller(ctx).subject}"


def main() -> None:
    run(server)
'''

GREETER_YAML = """\
mcp_servers:
  greeter:
    binary: greeter-mcp
    package: greeter
    port: {port}
    enabled: true
    description: Greets
    oauth: {{required: true, scopes: [user], audience: mcp}}
"""

# The atrium server opened to users (the scaffold keeps it for admins), so two users reach it.
ATRIUM_YAML = (
    "mcp_servers:\n  atrium:\n    binary: atrium-mcp-atrium\n    port: {port}\n"
    "    oauth: {{required: true, scopes: [user, admin], audience: mcp}}\n"
)


@dataclass
class Flow:
    instance: Instance
    python: Path


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    root = tmp_path_factory.mktemp("build-flow")
    python = layered_python(root / "env")
    servers = {"atrium": ATRIUM_YAML.format(port=free_port())}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{python.parent}{os.pathsep}{os.environ['PATH']}")
        with started_instance(root / "project", servers=servers) as instance:
            instance.atrium("admin", "users", "create", "bob", "--role", "user")
            yield Flow(instance, python)


def token(instance: Instance, user: str, server: str) -> str:
    issued = instance.atrium("admin", "token", "issue", "--user", user, "--server", server)
    return issued.strip()


@asynccontextmanager
async def connected(instance: Instance, server: str, bearer: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {bearer}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(instance.url(server), http_client=http)
        async with Client(transport) as client:
            yield client


def routed(instance: Instance, server: str) -> bool:
    try:
        answer = httpx2.get(f"{instance.base}/api/v1/mcp/registry/{server}", timeout=2)
        return bool(answer.json().get("status") == "running")
    except (httpx2.HTTPError, ValueError):
        return False


def build_sync_restart(flow: Flow, name: str) -> None:
    """What the seed has a person type after writing a server: build it with the Atrium that
    hosts it, sync the YAML to the store, restart it; until the gateway routes it."""
    instance = flow.instance
    build = [str(flow.python), "-m", "atrium", "--project", str(instance.project)]
    built = subprocess.run(
        [*build, "build", "mcp", name], env=instance.env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    packages = json.loads(instance.atrium("plugins", "mcp", "list-packages", "--json"))
    assert {row["package"]: row["installed"] for row in packages}[name] is True
    instance.atrium("cloud", "sync", "local", "mcp", "--direction", "to-db", "-y")
    instance.atrium("infra", "services", "restart", name)
    wait_until(lambda: routed(instance, name), timeout_s=30, what=f"{name} routed")


async def test_a_server_written_from_scratch_is_built_synced_restarted_and_called(
    flow: Flow,
) -> None:
    instance = flow.instance
    write_python_extension(instance.project, "greeter", "greeter-mcp", "greeter_server", GREETER)
    (instance.project / "services/mcp/greeter.yaml").write_text(
        GREETER_YAML.format(port=free_port())
    )

    build_sync_restart(flow, "greeter")

    answers = {}
    for user in ("admin", "bob"):
        bearer = token(instance, user, "greeter")
        async with connected(instance, "greeter", bearer) as client:
            result = await client.call_tool("greet", {"name": "Ada"})
        assert not result.is_error, result.content
        [text] = result.content
        assert isinstance(text, TextContent)
        answers[str(jwt_claims(bearer)["sub"])] = text.text
    assert answers == {subject: f"Hello Ada, from {subject}" for subject in answers}
    assert len(answers) == 2


async def run(client: Client) -> tuple[dict[str, Any], str]:
    result = await client.call_tool("atrium", {"command": "plugins mcp list --json"})
    assert not result.is_error, result.content
    [link] = [block for block in result.content if isinstance(block, ResourceLink)]
    return result.structured_content or {}, str(link.uri)


async def read(client: Client, uri: str) -> dict[str, Any]:
    [contents] = (await client.read_resource(uri)).contents
    assert isinstance(contents, TextResourceContents)
    document: dict[str, Any] = json.loads(contents.text)
    return document


async def test_the_artifact_viewer_and_artifacts_through_the_gateway_for_two_users(
    flow: Flow,
) -> None:
    instance = flow.instance
    admin_token, bob_token = (token(instance, user, "atrium") for user in ("admin", "bob"))
    bob = str(jwt_claims(bob_token)["sub"])

    async with (
        connected(instance, "atrium", admin_token) as admin,
        connected(instance, "atrium", bob_token) as user,
    ):
        tools = {tool.name: tool for tool in (await user.list_tools()).tools}
        listed = {str(r.uri): r.mime_type for r in (await user.list_resources()).resources}
        admins_run, admins_uri = await run(admin)
        bobs_run, bobs_uri = await run(user)
        own = await read(user, bobs_uri)
        seen_by_admin = await read(admin, bobs_uri)
        with pytest.raises(MCPError) as refused:
            await user.read_resource(admins_uri)

    assert (tools["atrium"].meta or {})["ui"]["resourceUri"] == VIEWER_URI
    assert listed[VIEWER_URI] == APP_MIME_TYPE
    assert admins_uri == f"artifact://atrium/{admins_run['artifact_id']}"
    assert own["content"]["stdout"] == bobs_run["stdout"]
    assert own["content"]["caller"]["subject"] == bob
    assert seen_by_admin == own
    assert refused.value.code == INVALID_PARAMS
