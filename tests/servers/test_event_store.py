"""Resumable streams of the ``initialize`` era (``atrium.servers.event_store``, SEP-1699): a
stream opens with a priming event and a ``retry`` hint, a tool may close it mid-call, and a
``GET`` with ``Last-Event-ID`` replays what came after, once, to that session alone."""

from __future__ import annotations

from typing import Any

import httpx2
import orjson
from mcp.server.mcpserver import Context
from mcp.types import JSONRPCNotification

from atrium.servers.event_store import RETRY_MS, MemoryEventStore
from atrium.servers.toolkit import AtriumServer
from tests.servers.helpers import serving

LEGACY = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


def dropping_server() -> AtriumServer[Any]:
    server: AtriumServer[Any] = AtriumServer("dropper", version="1.0.0")

    @server.tool()
    async def drop(ctx: Context[Any, Any]) -> str:
        await ctx.report_progress(1, 2)
        await ctx.close_sse_stream()
        await ctx.report_progress(2, 2)
        return "answered after the stream was closed"

    return server


def events(text: str) -> list[dict[str, str]]:
    """The SSE events of a response body: their ``id``, ``retry`` and ``data`` fields."""
    found = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            if name in ("id", "retry", "data"):
                fields[name] = fields.get(name, "") + value.removeprefix(" ")
        if fields:
            found.append(fields)
    return found


async def session(http: httpx2.AsyncClient, url: str) -> dict[str, str]:
    """A new ``initialize``-era session: the headers its requests carry."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t"}},
    }
    opened = await http.post(url, json=initialize, headers={"Accept": ACCEPT})
    headers = {
        "Accept": ACCEPT,
        "MCP-Protocol-Version": LEGACY,
        "Mcp-Session-Id": opened.headers["mcp-session-id"],
    }
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await http.post(url, json=initialized, headers=headers)
    return headers


async def call_drop(
    http: httpx2.AsyncClient, url: str, headers: dict[str, str]
) -> tuple[list[Any], str]:
    """Call ``drop`` (progress 1, the stream closes, progress 2, the answer): the messages that
    came before the stream closed, and the id of the last event the client saw."""
    params = {"name": "drop", "arguments": {}, "_meta": {"progressToken": "p"}}
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
    response = await http.post(url, json=body, headers=headers)
    seen = events(response.text)
    assert seen[0]["data"] == ""
    assert seen[0]["retry"] == str(RETRY_MS)
    return [orjson.loads(e["data"]) for e in seen[1:]], seen[-1]["id"]


async def resume(http: httpx2.AsyncClient, url: str, headers: dict[str, str], last: str) -> Any:
    stream = {**headers, "Accept": "text/event-stream", "Last-Event-ID": last}
    async with http.stream("GET", url, headers=stream) as response:
        messages = []
        async for line in response.aiter_lines():
            if line.startswith("data:") and line[5:].strip():
                messages.append(orjson.loads(line[5:]))
                if "result" in messages[-1]:
                    break
        return messages


async def test_a_stream_closed_mid_call_resumes_after_the_last_event_the_client_saw() -> None:
    async with serving(dropping_server()) as base, httpx2.AsyncClient(timeout=10) as http:
        url = f"{base}/mcp"
        headers = await session(http, url)
        live, last = await call_drop(http, url, headers)
        missed = await resume(http, url, headers, last)

    # However the messages split between the stream and its resumption, each arrives once.
    messages = live + missed
    assert [m.get("params", {}).get("progress") for m in messages[:-1]] == [1, 2]
    assert messages[-1]["id"] == 7
    assert messages[-1]["result"]["content"][0]["text"] == "answered after the stream was closed"


async def test_another_sessions_event_id_replays_nothing() -> None:
    async with serving(dropping_server()) as base, httpx2.AsyncClient(timeout=10) as http:
        url = f"{base}/mcp"
        alice, mallory = await session(http, url), await session(http, url)
        _, last = await call_drop(http, url, alice)
        stolen = await resume(http, url, mallory, last)
        own = await resume(http, url, alice, last)

    assert stolen == []
    assert own[-1]["result"]["content"][0]["text"] == "answered after the stream was closed"


def note(n: int) -> JSONRPCNotification:
    return JSONRPCNotification(jsonrpc="2.0", method="notifications/message", params={"n": n})


async def test_the_store_keeps_the_newest_events_and_replays_each_once() -> None:
    store = MemoryEventStore(max_events=3)
    ids = [await store.store_event("s", note(n)) for n in range(1, 6)]
    replayed: list[int] = []

    async def collect(event: Any) -> None:
        replayed.append(event.message.params["n"])

    evicted = await store.replay_events_after(ids[0], collect)
    stream = await store.replay_events_after(ids[2], collect)

    assert evicted is None
    assert stream == "s"
    assert replayed == [4, 5]
    assert len(set(ids)) == 5


async def test_events_stored_while_a_replay_runs_are_replayed_too() -> None:
    store = MemoryEventStore()
    first = await store.store_event("s", None)  # a priming event: never replayed
    await store.store_event("s", note(1))
    await store.store_event("other", note(99))
    replayed: list[int] = []

    async def collect(event: Any) -> None:
        replayed.append(event.message.params["n"])
        if len(replayed) == 1:
            await store.store_event("s", note(2))

    await store.replay_events_after(first, collect)

    assert replayed == [1, 2]
