"""The ``atrium`` server's CLI executor acts as its caller (issue 19 §5-7), end to end: a
``user`` calls the tool through the real gateway, the tool runs the real CLI, and the user gets
only what a user may see, never the operator's powers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.auth.flow import jwt_claims
from tests.e2e.instance import Instance, started_instance
from tests.processes import free_port


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Instance, int]]:
    """The atrium server opened to users; ``show_playbook`` kept for admins."""
    port = free_port()
    yaml = (
        "mcp_servers:\n  atrium:\n    binary: atrium-mcp-atrium\n"
        f"    port: {port}\n"
        "    oauth: {required: true, scopes: [user, tools:write, admin], audience: mcp}\n"
        "    tools: {scopes: {show_playbook: [admin]}}\n"
    )
    folder = tmp_path_factory.mktemp("executor")
    with started_instance(folder / "project", servers={"atrium": yaml}) as instance:
        instance.atrium("admin", "users", "create", "ada", "--password-stdin", stdin="s3cret-pw\n")
        yield instance, port


async def run_as(instance: Instance, user: str, command: str) -> dict[str, Any]:
    """``command`` through the gateway's atrium tool, with ``user``'s token."""
    token = instance.atrium("admin", "token", "issue", "--user", user, "--server", "atrium")
    headers = {"Authorization": f"Bearer {token.strip()}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(instance.url("atrium"), http_client=http)
        async with Client(transport) as client:
            result = await client.call_tool("atrium", {"command": command})
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    return {"error": result.is_error, "text": text, **(result.structured_content or {})}


def ada_subject(instance: Instance) -> str:
    token = instance.atrium("admin", "token", "issue", "--user", "ada", "--server", "atrium")
    return str(jwt_claims(token.strip())["sub"])


async def test_a_user_lists_only_the_tools_a_user_may_call(opened: tuple[Instance, int]) -> None:
    instance, _ = opened

    as_user = await run_as(instance, "ada", "plugins mcp tools atrium --json")
    as_operator = instance.atrium("plugins", "mcp", "tools", "atrium", "--json")

    assert not as_user["error"], as_user
    user_tools = {tool["name"] for tool in json.loads(as_user["stdout"])}
    assert "show_playbook" not in user_tools
    assert {"atrium", "list_playbooks"} <= user_tools
    assert "show_playbook" in {tool["name"] for tool in json.loads(as_operator)}


async def test_a_user_sees_only_their_own_audit_records(opened: tuple[Instance, int]) -> None:
    instance, _ = opened
    instance.atrium("plugins", "mcp", "call", "atrium", "list_playbooks")  # the operator's call
    await run_as(instance, "ada", "plugins mcp list")  # one of ada's own

    mine = await run_as(instance, "ada", "infra logs request list --json --limit 100")
    everyone = json.loads(instance.atrium("infra", "logs", "request", "list", "--json"))

    assert not mine["error"], mine
    subjects = {record["subject"] for record in json.loads(mine["stdout"])}
    assert subjects == {ada_subject(instance)}
    assert any(str(record["subject"]).startswith("operator:") for record in everyone)
    operators = [r for r in everyone if str(r["subject"]).startswith("operator:")]
    other = await run_as(instance, "ada", f"infra logs audit {operators[0]['request_id']} --full")
    assert other["error"]
    assert operators[0]["request_id"] not in other["stdout"]


async def test_a_user_cannot_point_a_command_at_a_backend_port(
    opened: tuple[Instance, int],
) -> None:
    instance, port = opened

    result = await run_as(
        instance, "ada", f"plugins mcp tools atrium --url http://127.0.0.1:{port}/mcp"
    )
    glued = await run_as(
        instance, "ada", f"plugins mcp tools atrium --url=http://127.0.0.1:{port}/mcp"
    )
    raw_logs = await run_as(instance, "ada", "infra logs view --lines 5")

    assert (result["error"], glued["error"], raw_logs["error"]) == (True, True, True)
    assert "--url" in result["text"]
    assert "--url" in glued["text"]
    assert "not available to a command run for a caller" in raw_logs["text"]


async def test_each_run_is_audited_with_its_caller_and_command(
    opened: tuple[Instance, int],
) -> None:
    instance, _ = opened

    result = await run_as(instance, "ada", "plugins mcp status --json")

    records = json.loads(
        instance.atrium("infra", "logs", "request", "list", "--json", "--limit", "20")
    )
    runs = [record for record in records if record["tool"] == "atrium"]
    full = json.loads(
        instance.atrium("infra", "logs", "audit", runs[0]["request_id"], "--json", "--full")
    )
    assert not result["error"], result
    assert runs[0]["subject"] == ada_subject(instance)
    assert full[0]["arguments"] == {"command": "plugins mcp status --json"}
