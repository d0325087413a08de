"""End to end, as a user runs Atrium: a user's own toolkit server hosted by the supervisor knows
who calls through the gateway, and refuses whoever goes around it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from tests.auth.flow import jwt_claims
from tests.e2e.instance import Instance, started_instance
from tests.processes import free_port
from tests.trust import assertion

WHOAMI = Path(__file__).with_name("whoami_server.py")


@pytest.fixture(scope="module")
def whoami(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Instance, int, Path]]:
    folder = tmp_path_factory.mktemp("trust")
    port, calls = free_port(), folder / "calls.txt"
    command = [sys.executable, str(WHOAMI), "--port", "{port}", "--project", "{project}"]
    command += ["--calls", str(calls)]
    yaml = (
        "mcp_servers:\n  whoami:\n    transport: http\n"
        f"    command: {json.dumps(command)}\n    port: {port}\n"
        "    oauth: {required: true, audience: mcp}\n"
    )
    with started_instance(folder / "project", servers={"whoami": yaml}) as instance:
        instance.wait_routed("whoami")  # started_instance waits for the built-in ones only
        yield instance, port, calls


async def whoami_as_admin(instance: Instance) -> tuple[str, CallToolResult]:
    """``whoami`` through the gateway with a token ``atrium admin token issue`` minted."""
    token = instance.atrium("admin", "token", "issue", "--user", "admin", "--server", "whoami")
    headers = {"Authorization": f"Bearer {token.strip()}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(instance.url("whoami"), http_client=http)
        async with Client(transport) as client:
            return token.strip(), await client.call_tool("whoami", {})


async def test_a_hosted_tool_returns_the_subject_of_the_callers_token(
    whoami: tuple[Instance, int, Path],
) -> None:
    instance, _, _ = whoami

    token, result = await whoami_as_admin(instance)

    assert not result.is_error, result
    assert result.structured_content is not None
    identity = json.loads(result.structured_content["result"])
    claims = jwt_claims(token)
    assert (identity["subject"], identity["client_id"]) == (claims["sub"], claims["client_id"])
    assert set(identity["scopes"]) == set(claims["scope"].split())


def test_the_cli_calls_as_the_operator_in_app(whoami: tuple[Instance, int, Path]) -> None:
    instance, _, _ = whoami

    output = instance.atrium("plugins", "mcp", "call", "whoami", "whoami")

    assert '\\"origin\\": \\"in-app\\"' in output or '"origin": "in-app"' in output
    assert "operator:" in output


async def test_a_request_straight_to_the_backend_port_runs_nothing(
    whoami: tuple[Instance, int, Path],
) -> None:
    _, port, calls = whoami
    before = calls.read_text() if calls.exists() else ""
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami"}}
    accept = {"Accept": "application/json, text/event-stream"}
    forged = {"Atrium-Caller-Assertion": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."}

    async with httpx2.AsyncClient(timeout=10) as http:
        anonymous = await http.post(f"http://127.0.0.1:{port}/mcp", json=call, headers=accept)
        spoofed = await http.post(
            f"http://127.0.0.1:{port}/mcp", json=call, headers={**accept, **forged}
        )

    assert (anonymous.status_code, spoofed.status_code) == (401, 401)
    assert (calls.read_text() if calls.exists() else "") == before


async def test_a_caller_key_rotation_needs_no_backend_restart(
    whoami: tuple[Instance, int, Path],
) -> None:
    instance, port, _ = whoami
    old = assertion(instance.project / ".atrium", "whoami")
    pids = running_pids(instance)

    instance.atrium("admin", "keys", "rotate", "--caller")
    instance.atrium("admin", "keys", "rotate", "--caller")
    _, result = await whoami_as_admin(instance)
    async with httpx2.AsyncClient(timeout=30) as http:
        stale = await http.post(
            f"http://127.0.0.1:{port}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream", **old},
        )

    assert not result.is_error, result
    assert stale.status_code == 401  # signed by a key two rotations back
    assert running_pids(instance) == pids  # no restart


def running_pids(instance: Instance) -> dict[str, object]:
    status = json.loads(instance.atrium("plugins", "mcp", "status", "--json"))
    return {server["name"]: server["pid"] for server in status}
