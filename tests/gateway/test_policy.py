"""Tool policy: ``tools.allowed`` / ``tools.denied`` on ``tools/call`` and on ``tools/list``.

``guarded`` denies ``delete_*`` and ``admin_*``; ``narrow`` allows only ``echo`` and ``progress``.
"""

from __future__ import annotations

import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.gateway.conftest import Backend
from tests.gateway.helpers import (
    Gateway,
    call_body,
    call_modern,
    legacy_call_body,
    legacy_headers,
    legacy_session,
    list_body,
    messages,
    modern_headers,
)


def assert_refused_unknown_tool(response: httpx2.Response, server: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == -32602
    assert f"'{server}'" in error["message"]
    assert response.headers["x-request-id"]


async def test_a_denied_tool_is_refused_and_never_reaches_the_backend(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    response = await call_modern(http, gateway.url("guarded"), "delete_everything")

    assert_refused_unknown_tool(response, "guarded")
    assert backend.witness.requests == []
    assert backend.witness.calls["delete_everything"] == 0


async def test_a_tool_the_denied_globs_miss_is_called(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    response = await call_modern(http, gateway.url("guarded"), "echo", {"text": "still here"})

    assert response.json()["result"]["structuredContent"] == {"result": "still here"}
    assert backend.witness.calls["echo"] == 1


async def test_a_tool_outside_the_allowed_globs_is_refused(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    response = await call_modern(http, gateway.url("narrow"), "fail")

    assert_refused_unknown_tool(response, "narrow")
    assert backend.witness.calls["fail"] == 0


async def test_a_denied_tool_is_refused_in_the_initialize_era(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("guarded")
    session = await legacy_session(http, url)

    response = await http.post(
        url, content=legacy_call_body("admin_reset"), headers=legacy_headers(session)
    )

    assert_refused_unknown_tool(response, "guarded")
    assert backend.witness.bodies_naming("admin_reset") == []


async def test_the_official_client_sees_a_refusal_as_a_json_rpc_error(
    gateway: Gateway, backend: Backend
) -> None:
    async with Client(gateway.url("guarded"), mode="legacy") as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("delete_everything", {})

    assert refused.value.code == -32602
    assert backend.witness.calls["delete_everything"] == 0


async def test_a_2026_name_header_that_contradicts_the_body_is_refused(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    headers = modern_headers("tools/call", "echo")
    body = call_body("delete_everything")

    response = await http.post(gateway.url("tools"), content=body, headers=headers)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32020
    assert backend.witness.requests == []


async def test_an_older_era_name_header_is_never_trusted_over_the_body(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("guarded")
    session = await legacy_session(http, url)
    headers = {**legacy_headers(session), "Mcp-Method": "tools/call", "Mcp-Name": "echo"}

    response = await http.post(url, content=legacy_call_body("delete_everything"), headers=headers)

    assert_refused_unknown_tool(response, "guarded")
    assert backend.witness.bodies_naming("delete_everything") == []


async def direct_tool_names(backend: Backend) -> list[str]:
    async with Client(backend.url) as client:
        return [tool.name for tool in (await client.list_tools()).tools]


def tool_names(response: httpx2.Response) -> list[str]:
    (answer,) = messages(response)
    return [tool["name"] for tool in answer["result"]["tools"]]


async def test_tools_list_in_a_json_answer_is_filtered_in_order(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    everything = await direct_tool_names(backend)

    response = await http.post(
        gateway.url("guarded"), content=list_body(), headers=modern_headers("tools/list")
    )

    assert response.headers["content-type"].startswith("application/json")
    expected = [name for name in everything if name not in ("delete_everything", "admin_reset")]
    assert tool_names(response) == expected


async def test_tools_list_in_an_event_stream_is_filtered_in_order(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    everything = await direct_tool_names(backend)
    url = gateway.url("narrow")
    session = await legacy_session(http, url)

    response = await http.post(
        url, content=list_body(modern=False), headers=legacy_headers(session)
    )

    assert response.headers["content-type"].startswith("text/event-stream")
    assert tool_names(response) == [name for name in everything if name in ("progress", "echo")]


async def test_the_official_client_lists_only_the_tools_it_may_call_in_both_eras(
    gateway: Gateway, backend: Backend
) -> None:
    everything = await direct_tool_names(backend)
    expected = [name for name in everything if name not in ("delete_everything", "admin_reset")]

    for mode in ("auto", "legacy"):
        async with Client(gateway.url("guarded"), mode=mode) as client:
            listed = [tool.name for tool in (await client.list_tools()).tools]
        assert listed == expected, mode


async def test_a_listing_answered_again_from_the_catalogs_copy_is_filtered_the_same(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    everything = await direct_tool_names(backend)
    expected = [name for name in everything if name not in ("delete_everything", "admin_reset")]
    url = gateway.url("guarded")

    first = await http.post(url, content=list_body(), headers=modern_headers("tools/list"))
    second = await http.post(url, content=list_body(), headers=modern_headers("tools/list"))

    # The backend's answer is long enough to be kept parsed (``ToolCatalog.listing``): the
    # second answer comes from the copy.
    assert "guarded" in gateway.parts.proxy.catalog._listings
    assert tool_names(first) == tool_names(second) == expected
    assert first.content == second.content
    records = await gateway.audit_of("guarded", 2)
    assert [(r.method, r.outcome) for r in records[:2]] == [("tools/list", "ok")] * 2
