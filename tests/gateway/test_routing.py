"""Routing to a backend: unknown, disabled and unreachable servers, both protocol eras, headers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.gateway.conftest import Backend
from tests.gateway.helpers import (
    ACCEPT,
    LEGACY,
    MODERN,
    Gateway,
    call_modern,
    legacy_call_body,
    legacy_headers,
    legacy_session,
)

DISABLED_REASON = "enabled: false in its configuration"


def assert_gateway_error(
    response: httpx2.Response, status: int, code: int, server: str
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert f"'{server}'" in error["message"]
    assert response.headers["x-request-id"]
    return error


async def test_an_unknown_server_is_not_found_and_hidden_servers_are_not_revealed(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await call_modern(http, gateway.url("nowhere"), "echo")

    error = assert_gateway_error(response, 404, -32600, "nowhere")
    assert "tools" in error["message"]
    assert "hidden" not in error["message"]


async def test_a_disabled_server_is_not_found_with_the_reason(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    response = await call_modern(http, gateway.url("off"), "echo")

    error = assert_gateway_error(response, 404, -32600, "off")
    assert error["data"] == {"reason": DISABLED_REASON}
    assert backend.witness.requests == []


async def test_a_server_nobody_listens_for_is_unavailable(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await call_modern(http, gateway.url("down"), "echo")

    assert_gateway_error(response, 503, -32002, "down")
    assert response.headers["retry-after"]


async def test_the_official_client_is_told_why_a_disabled_server_refuses(gateway: Gateway) -> None:
    def is_the_refusal(error: MCPError) -> bool:
        return error.code == -32600 and error.data == {"reason": DISABLED_REASON}

    refusal = pytest.RaisesExc(MCPError, check=is_the_refusal)
    with pytest.RaisesGroup(refusal, flatten_subgroups=True):
        async with Client(gateway.url("off")) as client:
            await client.list_tools()


@asynccontextmanager
async def hanging_up() -> AsyncIterator[int]:
    """A TCP server that closes every connection without answering; yields its port."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_a_backend_that_hangs_up_without_answering_is_a_bad_gateway(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    async with hanging_up() as port:
        await gateway.add_server("broken", port=port)
        response = await call_modern(http, gateway.url("broken"), "echo")

    assert_gateway_error(response, 502, -32603, "broken")


async def test_the_official_client_lists_and_calls_in_the_2026_era(
    gateway: Gateway, backend: Backend
) -> None:
    async with Client(backend.url) as direct:
        expected = [tool.name for tool in (await direct.list_tools()).tools]
    backend.witness.requests.clear()

    async with Client(gateway.url("tools")) as client:
        listed = [tool.name for tool in (await client.list_tools()).tools]
        result = await client.call_tool("echo", {"text": "modern"})

    assert listed == expected
    assert result.structured_content == {"result": "modern"}
    seen = backend.witness.requests
    assert {r.headers.get("mcp-protocol-version") for r in seen} == {MODERN}
    assert not backend.witness.bodies_naming('"initialize"')


async def test_the_official_client_lists_and_calls_in_the_initialize_era(
    gateway: Gateway, backend: Backend
) -> None:
    async with Client(gateway.url("tools"), mode="legacy") as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("echo", {"text": "legacy"})

    assert {"echo", "slow", "progress"} <= listed
    assert result.structured_content == {"result": "legacy"}
    assert backend.witness.bodies_naming('"initialize"')
    assert any("mcp-session-id" in r.headers for r in backend.witness.requests)


async def test_routing_headers_the_client_encoded_are_compared_decoded(
    gateway: Gateway, backend: Backend
) -> None:
    # A non-ASCII name travels in Mcp-Name as "=?base64?...?=" (2026-07-28, "HTTP headers").
    async with Client(gateway.url("tools")) as client:
        prompt = await client.get_prompt("résumé")

    assert prompt.messages
    assert backend.witness.requests[-1].headers["mcp-name"].startswith("=?base64?")


async def test_mcp_param_and_routing_headers_reach_the_backend(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    async with Client(gateway.url("tools")) as client:
        await client.list_tools()  # the client learns which argument goes in Mcp-Param-Region
        result = await client.call_tool("seen_headers", {"region": "eu-west"})

    seen = result.structured_content
    assert seen is not None
    assert seen["mcp-param-region"] == "eu-west"
    assert seen["mcp-method"] == "tools/call"
    assert seen["mcp-name"] == "seen_headers"
    assert seen["mcp-protocol-version"] == MODERN
    assert len(seen["x-request-id"]) == 32


async def test_credentials_meant_for_the_gateway_stay_at_the_gateway(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    token = gateway.token("tools", "user")
    http.headers.update({"Authorization": f"Bearer {token}", "Cookie": "session=1"})

    response = await call_modern(http, gateway.url("tools"), "echo", {"text": "hi"})

    assert response.status_code == 200
    (received,) = backend.witness.requests
    assert "authorization" not in received.headers
    assert "cookie" not in received.headers
    assert received.headers["x-request-id"] == response.headers["x-request-id"]


async def test_a_legacy_session_opens_a_get_stream_and_ends_with_delete(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("tools")
    session = await legacy_session(http, url)  # the backend's Mcp-Session-Id came through
    stream_headers = {
        "Accept": "text/event-stream",
        "MCP-Protocol-Version": LEGACY,
        "Mcp-Session-Id": session,
    }

    async with http.stream("GET", url, headers=stream_headers) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["x-request-id"]
    deleted = await http.delete(url, headers=legacy_headers(session))
    after = await http.post(url, content=legacy_call_body("echo"), headers=legacy_headers(session))

    assert deleted.status_code == 200
    assert after.status_code == 404  # the backend ended the session the DELETE named
    methods = [(r.method, r.headers.get("mcp-session-id")) for r in backend.witness.requests]
    backend_ids = {r.headers.get("mcp-session-id") for r in backend.witness.requests} - {None}
    assert len(backend_ids) == 1  # the client's id is sealed for it (gateway.sessions)
    backend_id = backend_ids.pop()
    assert session != backend_id
    assert ("GET", backend_id) in methods
    assert ("DELETE", backend_id) in methods


async def test_last_event_id_reaches_the_backend(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    session = await legacy_session(http, gateway.url("tools"))
    headers = {
        "Accept": ACCEPT,
        "MCP-Protocol-Version": LEGACY,
        "Mcp-Session-Id": session,
        "Last-Event-ID": "stream-1_42",
    }

    async with http.stream("GET", gateway.url("tools"), headers=headers):
        pass

    (resumed,) = [r for r in backend.witness.requests if r.method == "GET"]
    assert resumed.headers["last-event-id"] == "stream-1_42"


async def test_calls_to_one_backend_share_a_pooled_connection(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    for text in ("one", "two", "three"):
        response = await call_modern(http, gateway.url("tools"), "echo", {"text": text})
        assert response.status_code == 200
    response = await call_modern(http, gateway.url("guarded"), "echo", {"text": "four"})
    assert response.status_code == 200

    assert len({received.peer for received in backend.witness.requests}) == 1
