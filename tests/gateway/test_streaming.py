"""Streaming through the gateway: SSE relayed as it comes, time-outs, clients that go away."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx2
from mcp import Client
from mcp.shared.subscriptions import ToolsListChanged

from tests.gateway.conftest import Backend
from tests.gateway.helpers import (
    DEADLINE_S,
    Gateway,
    call_body,
    call_modern,
    legacy_call_body,
    legacy_headers,
    legacy_session,
    messages,
    modern_headers,
)
from tests.polling import until


async def call_with_progress(client: Client, backend: Backend) -> tuple[str, list[float]]:
    """Call ``progress``; the first progress event the client gets lets the tool go on."""
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)
        backend.witness.gate("progress").set()

    result = await client.call_tool("progress", {"steps": 3}, progress_callback=on_progress)
    text = result.content[0].text  # type: ignore[union-attr]
    return text, seen


async def test_progress_reaches_a_2026_client_while_the_tool_still_runs(
    gateway: Gateway, backend: Backend
) -> None:
    async with Client(gateway.url("tools")) as client:
        text, seen = await call_with_progress(client, backend)

    assert text == "the gate opened"
    assert seen == [1, 2, 3]


async def test_progress_reaches_an_initialize_era_client_while_the_tool_still_runs(
    gateway: Gateway, backend: Backend
) -> None:
    async with Client(gateway.url("tools"), mode="legacy") as client:
        text, seen = await call_with_progress(client, backend)

    assert text == "the gate opened"
    assert seen == [1, 2, 3]


async def test_a_backend_slower_than_timeout_s_gets_a_timeout_error(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await call_modern(http, gateway.url("slowpoke"), "slow", {"seconds": 30})

    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == -32001
    assert "'slowpoke'" in error["message"]
    assert response.json()["id"] == 1
    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert (record.tool, record.outcome, record.status) == ("slow", "http_error", 504)


async def test_a_timeout_on_an_event_stream_ends_it_with_a_timeout_error(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("slowpoke")
    session = await legacy_session(http, url)  # the initialize era answers calls as SSE

    body = legacy_call_body("slow", {"seconds": 30}, id=7)
    response = await http.post(url, content=body, headers=legacy_headers(session))

    assert response.headers["content-type"].startswith("text/event-stream")
    (answer,) = messages(response)
    assert answer["id"] == 7
    assert answer["error"]["code"] == -32001
    assert "'slowpoke'" in answer["error"]["message"]
    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert (record.tool, record.outcome, record.status) == ("slow", "http_error", 504)


def raw_request(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


async def test_a_client_that_disconnects_cancels_the_call_on_the_backend(
    gateway: Gateway, backend: Backend
) -> None:
    url = gateway.url("tools")
    body = call_body("slow", {"seconds": 30, "tag": "abandoned"})
    parts = urlsplit(url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(raw_request(url, body, modern_headers("tools/call", "slow")))
    await writer.drain()
    await until(lambda: "abandoned" in backend.witness.started, what="the call to start")

    writer.close()
    await writer.wait_closed()

    await until(lambda: "abandoned" in backend.witness.cancelled, what="the call's cancellation")
    assert "abandoned" not in backend.witness.finished
    (record,) = await gateway.audit_of("tools")
    assert (record.tool, record.outcome, record.status) == ("slow", "http_error", 499)


async def test_a_2026_listen_stream_outlives_timeout_s_as_a_get_stream_does(
    gateway: Gateway,
) -> None:
    async with (
        Client(gateway.url("slowpoke")) as client,  # timeout_s: 1
        client.listen(tools_list_changed=True) as subscription,
    ):
        async with Client(gateway.url("tools")) as other:
            # The listen stream stays silent for longer than slowpoke's timeout_s.
            await other.call_tool("change_tools", {"after_s": 1.5})
        async with asyncio.timeout(DEADLINE_S):
            event = await anext(subscription)

    assert isinstance(event, ToolsListChanged)


async def test_stopping_the_gateway_ends_open_get_streams_instead_of_waiting_for_them(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("tools")
    session = await legacy_session(http, url)
    headers = {**legacy_headers(session), "Accept": "text/event-stream"}

    async with http.stream("GET", url, headers=headers) as stream:
        assert stream.status_code == 200
        gateway.parts.proxy.close_streams()
        # Ends now, not when the backend or the client gives up.
        await asyncio.wait_for(stream.aread(), DEADLINE_S)
    # Within the 5 s grace period the test gateway has: nothing is left to wait for.
    await asyncio.wait_for(gateway.stop(), 4)
