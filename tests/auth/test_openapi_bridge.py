"""The OpenAPI bridge: a per-caller OpenAPI 3.1 description of a server's tools, and a REST
route per tool that goes through the same authentication, tool access, limits and audit as the
MCP endpoint. Here, beside the OAuth tests, for their gateway with every kind of policy."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx2

from atrium.registry.schema import port_of
from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway

REST_TOOLS = ["echo", "peek", "fail", "upload", "login"]


def spec_url(gateway: Gateway, server: str) -> str:
    return f"{gateway.base}/api/v1/mcp/{server}/openapi.json"


def tool_url(gateway: Gateway, server: str, tool: str) -> str:
    return f"{gateway.base}/api/v1/mcp/{server}/tools/{tool}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def spec_for(
    http: httpx2.AsyncClient, gateway: Gateway, server: str, *scopes: str
) -> dict[str, Any]:
    response = await http.get(
        spec_url(gateway, server), headers=bearer(gateway.token(server, *scopes))
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_the_spec_describes_each_tool_the_caller_may_call(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    admin = await spec_for(http, gateway, "readers", "admin")
    reader = await spec_for(http, gateway, "readers", "user", "tools:read")

    assert admin["openapi"] == "3.1.0"
    assert "/api/v1/mcp/readers/tools/echo" in admin["paths"]
    assert list(reader["paths"]) == ["/api/v1/mcp/readers/tools/peek"]
    echo = admin["paths"]["/api/v1/mcp/readers/tools/echo"]["post"]
    schema = echo["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["text"]
    flows = admin["components"]["securitySchemes"]["oauth2"]["flows"]["authorizationCode"]
    assert flows["authorizationUrl"] == f"{gateway.base}/api/v1/core/oauth/authorize"
    assert flows["tokenUrl"] == f"{gateway.base}/api/v1/core/oauth/token"


async def test_without_a_token_the_spec_of_a_protected_server_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await http.get(spec_url(gateway, "users"))

    assert response.status_code == 401
    assert "resource_metadata=" in response.headers["www-authenticate"]


async def test_a_plain_http_client_with_a_bearer_token_calls_a_tool(
    gateway: Gateway,
    http: httpx2.AsyncClient,
    backend: Backend,
) -> None:
    token = gateway.token("users", "user", "tools:write", subject="rest-user")

    response = await http.post(
        tool_url(gateway, "users", "echo"), json={"text": "over rest"}, headers=bearer(token)
    )

    assert response.status_code == 200, response.text
    assert "over rest" in response.text
    assert backend.witness.calls["echo"] == 1
    (record,) = await gateway.audit_of("users")
    assert (record.method, record.tool, record.subject, record.status) == (
        "tools/call",
        "echo",
        "rest-user",
        200,
    )


async def test_arguments_that_break_the_schema_get_422_naming_the_problem(
    gateway: Gateway,
    http: httpx2.AsyncClient,
    backend: Backend,
) -> None:
    token = gateway.token("users", "user", "tools:write")

    response = await http.post(
        tool_url(gateway, "users", "echo"), json={"text": 5}, headers=bearer(token)
    )

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_arguments"
    assert body["details"][0]["path"] == "/text"
    assert backend.witness.calls["echo"] == 0


async def test_refusals_have_http_statuses(gateway: Gateway, http: httpx2.AsyncClient) -> None:
    user = bearer(gateway.token("per-tool", "user", "tools:write"))

    unknown = await http.post(tool_url(gateway, "per-tool", "nope"), json={}, headers=user)
    guarded = await http.post(
        tool_url(gateway, "per-tool", "upload"), json={"content": "x"}, headers=user
    )
    failing = await http.post(tool_url(gateway, "per-tool", "fail"), json={}, headers=user)
    anonymous = await http.post(tool_url(gateway, "per-tool", "echo"), json={"text": "x"})

    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    assert guarded.status_code == 403
    assert "uploader" in guarded.headers["www-authenticate"]
    assert (failing.status_code, failing.json()["error"]) == (400, "tool_error")
    assert anonymous.status_code == 401


async def test_schemathesis_finds_no_server_error(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    await gateway.add_server(
        "rest",
        port=port_of(gateway.parts.directory.routes["users"].config),
        oauth={"required": True},
        tools={"allowed": REST_TOOLS},
    )
    token = gateway.token("rest", "admin")
    st = Path(sys.executable).parent / "st"
    process = await asyncio.create_subprocess_exec(
        str(st),
        "run",
        spec_url(gateway, "rest"),
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "25",
        "--request-timeout",
        "10",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)

    text = output.decode()
    assert process.returncode == 0, text[-4000:]
    assert f"Tested: {len(REST_TOOLS)}" in text  # every tool's route was exercised
