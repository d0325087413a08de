"""The HTTP face of every server: ``/health`` and both protocol eras on ``/mcp``."""

from __future__ import annotations

import json
from typing import Any

import httpx2
from mcp.client.client import Client
from mcp.types import HEADER_MISMATCH

from atrium import AtriumServer, ToolAnnotations
from tests.servers.helpers import serving

MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


def echo_server() -> AtriumServer[Any]:
    server: AtriumServer[Any] = AtriumServer("echo", version="1.2.3")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def echo(text: str) -> str:
        return text

    return server


def modern_tools_list(method_header: str = "tools/list") -> tuple[dict[str, str], dict[str, Any]]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method_header, "Accept": ACCEPT}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}
    return headers, body


def json_rpc(response: httpx2.Response) -> dict[str, Any]:
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return dict(json.loads(data[-1]))
    return dict(response.json())


async def test_health_names_the_server_and_its_version() -> None:
    async with serving(echo_server()) as url, httpx2.AsyncClient() as http:
        response = await http.get(f"{url}/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "server": "echo", "version": "1.2.3"}


async def test_a_2026_07_28_request_is_answered_without_a_session() -> None:
    headers, body = modern_tools_list()
    async with serving(echo_server()) as url, httpx2.AsyncClient() as http:
        response = await http.post(f"{url}/mcp", headers=headers, json=body)

    assert response.status_code == 200
    assert "mcp-session-id" not in response.headers
    assert [tool["name"] for tool in json_rpc(response)["result"]["tools"]] == ["echo"]


async def test_a_2026_07_28_request_whose_routing_headers_disagree_is_refused() -> None:
    headers, body = modern_tools_list(method_header="tools/call")
    async with serving(echo_server()) as url, httpx2.AsyncClient() as http:
        response = await http.post(f"{url}/mcp", headers=headers, json=body)

    assert response.status_code == 400
    assert json_rpc(response)["error"]["code"] == HEADER_MISMATCH


async def test_an_initialize_era_client_gets_a_session() -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": HANDSHAKE,
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"},
        },
    }
    async with serving(echo_server()) as url, httpx2.AsyncClient() as http:
        response = await http.post(f"{url}/mcp", headers={"Accept": ACCEPT}, json=body)
        session = response.headers.get("mcp-session-id")
        ended = await http.delete(f"{url}/mcp", headers={"Mcp-Session-Id": session or ""})

    assert response.status_code == 200
    assert session
    assert json_rpc(response)["result"]["protocolVersion"] == HANDSHAKE
    assert ended.status_code == 200


async def test_the_sdk_client_speaks_either_era() -> None:
    async with serving(echo_server()) as url:
        async with Client(f"{url}/mcp") as modern:
            modern_version = modern.protocol_version
            modern_result = await modern.call_tool("echo", {"text": "hi"})
        async with Client(f"{url}/mcp", mode="legacy") as legacy:
            legacy_version = legacy.protocol_version
            legacy_result = await legacy.call_tool("echo", {"text": "hi"})

    assert (modern_version, legacy_version) == (MODERN, HANDSHAKE)
    assert modern_result.structured_content == legacy_result.structured_content == {"result": "hi"}
