"""``run_agent`` end to end (Atrium issue 13, "Faces: MCP"): an MCP client calls the ``atrium``
server's ``run_agent`` through the real gateway, the agent runs inside the atrium server and
calls back through the gateway as the same subject (in-app), and an agent that runs itself
stops at the depth limit with every level finished."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from atrium.ai.service import MAX_AGENT_DEPTH
from atrium.auth.issuing import mint_access_token
from atrium.auth.operator import AGENT_CLIENT_ID
from atrium.settings import load_settings
from atrium.store import Store
from atrium.store.audit import AuditRecord
from tests.ai.project import KEY_VARIABLE, write_agent, write_ai_config
from tests.ai.providers_fake import AnthropicFake, text, tool_call
from tests.auth.flow import jwt_claims
from tests.e2e.instance import Instance, started_instance
from tests.polling import until
from tests.processes import free_port

RUN_AGENT = "mcp__atrium__run_agent"
LIST_PLAYBOOKS = "mcp__atrium__list_playbooks"
CLIENT_ID = "an-mcp-client"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """Atrium with the scaffold's policy for the atrium server (admin only), which is given
    the model key: a server's process sees only the environment its YAML passes on."""
    yaml = json.dumps(
        {
            "mcp_servers": {
                "atrium": {
                    "binary": "atrium-mcp-atrium",
                    "port": free_port(),
                    "oauth": {"required": True, "scopes": ["admin"], "audience": "mcp"},
                    "env": {KEY_VARIABLE: {"$env": KEY_VARIABLE}},
                }
            }
        }
    )
    project = tmp_path_factory.mktemp("run-agent") / "project"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_VARIABLE, "test-key")
        with started_instance(project, servers={"atrium": yaml}) as started:
            write_agent(project, "reader", servers=["atrium"], allowed_tools=[LIST_PLAYBOOKS])
            write_agent(project, "echo", servers=["atrium"], allowed_tools=[RUN_AGENT])
            yield started


def admin_token(instance: Instance) -> str:
    """A token of the first admin for the atrium server, as an external MCP client holds one
    (``atrium admin token issue`` would be the CLI's, which the audit counts as in-app)."""
    issued = instance.atrium("admin", "token", "issue", "--user", "admin", "--server", "atrium")
    return mint_access_token(
        load_settings(instance.project, instance.env),
        subject=str(jwt_claims(issued.strip())["sub"]),
        client_id=CLIENT_ID,
        server="atrium",
        scopes=["admin"],
        ttl_s=600,
    )


async def run_agent(instance: Instance, token: str, arguments: dict[str, Any]) -> CallToolResult:
    headers = {"Authorization": f"Bearer {token.strip()}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(instance.url("atrium"), http_client=http)
        async with Client(transport) as client:
            return await client.call_tool("run_agent", arguments)


async def audit_mark(instance: Instance) -> int:
    """The id of the newest audit record: what a test's calls come after."""
    async with await Store.open(load_settings(instance.project, instance.env)) as store:
        records = await store.audit.list_recent(1)
    return records[0].id if records else 0


async def audited_calls(
    instance: Instance, tool: str, count: int, *, after: int
) -> list[AuditRecord]:
    """The audit records of ``tools/call`` ``tool`` on atrium since ``after``, once ``count``
    are written (the gateway writes them in batches), oldest first."""
    settings = load_settings(instance.project, instance.env)

    async def written() -> list[AuditRecord] | None:
        async with await Store.open(settings) as store:
            records = await store.audit.list_recent(500, server="atrium")
        calls = [r for r in records if r.id > after and r.method == "tools/call" and r.tool == tool]
        return calls[::-1] if len(calls) >= count else None

    return await until(written, what=f"{count} audited calls of {tool}", timeout_s=15)


def tool_results(fake: AnthropicFake, request: int) -> list[dict[str, Any]]:
    return [
        block
        for message in fake.requests[request].body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


async def test_the_agent_calls_back_through_the_gateway_as_its_caller(
    instance: Instance,
) -> None:
    token = admin_token(instance)
    subject = jwt_claims(token.strip())["sub"]
    mark = await audit_mark(instance)
    script = [tool_call(LIST_PLAYBOOKS, {}), text("There are two playbooks.")]
    with AnthropicFake(script) as fake:
        write_ai_config(instance.project, fake)
        result = await run_agent(instance, token, {"agent": "reader", "message": "Playbooks?"})

    assert not result.is_error, result
    run = result.structured_content
    assert run is not None
    assert [(c["name"], c["ok"]) for c in run["tool_calls"]] == [(LIST_PLAYBOOKS, True)]
    assert run["text"] == "There are two playbooks."
    [listed] = tool_results(fake, 1)
    assert "troubleshoot-a-server" in listed["content"]
    [outer] = await audited_calls(instance, "run_agent", 1, after=mark)
    [inner] = await audited_calls(instance, "list_playbooks", 1, after=mark)
    assert (outer.subject, outer.client_id, outer.origin) == (subject, CLIENT_ID, "external")
    assert outer.outcome == "ok"
    assert (inner.subject, inner.origin, inner.client_id) == (subject, "in-app", AGENT_CLIENT_ID)
    assert inner.outcome == "ok"


async def test_an_agent_that_runs_itself_stops_at_the_depth_limit_and_every_level_ends(
    instance: Instance,
) -> None:
    token = admin_token(instance)
    mark = await audit_mark(instance)
    again = tool_call(RUN_AGENT, {"agent": "echo", "message": "Run yourself again."})
    answers = [text(f"Level {level} is done.") for level in range(MAX_AGENT_DEPTH, 0, -1)]
    with AnthropicFake([again] * MAX_AGENT_DEPTH + answers) as fake:
        write_ai_config(instance.project, fake)
        result = await run_agent(instance, token, {"agent": "echo", "message": "Go."})

    assert not result.is_error, result
    assert (result.structured_content or {})["text"] == "Level 1 is done."
    assert (fake.remaining, len(fake.requests)) == (0, 2 * MAX_AGENT_DEPTH)
    # Request MAX_AGENT_DEPTH is the deepest run's second turn: its call was refused.
    [refused] = tool_results(fake, MAX_AGENT_DEPTH)
    assert refused.get("is_error") is True
    assert f"level {MAX_AGENT_DEPTH + 1}" in refused["content"]
    # Each level above heard the answer of the level below.
    for request in range(MAX_AGENT_DEPTH + 1, 2 * MAX_AGENT_DEPTH):
        [answered] = tool_results(fake, request)
        assert answered.get("is_error") is not True, answered
    calls = await audited_calls(instance, "run_agent", 1 + MAX_AGENT_DEPTH, after=mark)
    assert sorted(r.origin for r in calls) == ["external"] + ["in-app"] * MAX_AGENT_DEPTH
    assert sorted(r.outcome for r in calls) == ["ok"] * MAX_AGENT_DEPTH + ["tool_error"]
    assert len({r.subject for r in calls}) == 1


async def test_list_agents_names_the_projects_agents_through_the_gateway(
    instance: Instance,
) -> None:
    headers = {"Authorization": f"Bearer {admin_token(instance).strip()}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(instance.url("atrium"), http_client=http)
        async with Client(transport) as client:
            result = await client.call_tool("list_agents", {})

    assert not result.is_error, result
    listing = result.structured_content
    assert listing is not None
    assert "reader" in [agent["name"] for agent in listing["agents"]]
    assert listing["problems"] == []
