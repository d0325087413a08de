"""Attacks on the gateway's connections (issue 18 item 8): clients that send a request slowly,
or never finish it, must not hold a connection longer than the deadlines of ``atrium.yaml``
(``gateway.header_timeout_s``, ``body_timeout_s``, ``keep_alive_timeout_s``); answers that
take long, SSE streams above all, must not be cut by them.

Every attack speaks raw HTTP on a loopback socket to the gateway served as ``atrium start``
serves it (``GatewayServer``), with deadlines short enough for a test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from atrium.errors import ConfigError
from atrium.gateway.serve import GatewayServer
from atrium.settings import load_settings
from atrium.store import Store
from atrium.store.audit import AuditRecord
from tests.gateway.conftest import Backend
from tests.gateway.helpers import ACCEPT, META, call_body, modern_headers, save_servers
from tests.polling import until
from tests.processes import free_port

HEADER_S = 0.5
BODY_S = 0.5
KEEP_ALIVE_S = 0.5
SLACK_S = 1.5  # scheduling on a loaded machine; a connection held today is held for ever


@dataclass
class Served:
    port: int
    store: Store

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def audit(self, request_id: str) -> list[AuditRecord]:
        async def stored() -> list[AuditRecord] | None:
            return await self.store.audit.for_request(request_id) or None

        return await until(stored, what="the audit record", interval=0.02)


@asynccontextmanager
async def gateway_with_deadlines(tmp_path: Path, backend: Backend) -> AsyncIterator[Served]:
    port = free_port()
    (tmp_path / "atrium.yaml").write_text(
        f"gateway:\n  port: {port}\n  header_timeout_s: {HEADER_S}\n"
        f"  body_timeout_s: {BODY_S}\n  keep_alive_timeout_s: {KEEP_ALIVE_S}\n"
    )
    settings = load_settings(tmp_path, environ={})
    async with await Store.open(settings) as store:
        await save_servers(store, backend.port, free_port())
        server = GatewayServer(settings, store)
        await server.start()
        try:
            yield Served(port, store)
        finally:
            await server.stop()


async def until_closed(reader: asyncio.StreamReader, within_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took;
    fails if it keeps the connection open for ``within_s``."""
    started = time.monotonic()
    received = b""
    try:
        async with asyncio.timeout(within_s):
            while chunk := await reader.read(65536):
                received += chunk
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {within_s:g} s") from None
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


async def connect(served: Served) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", served.port)


def request_head(
    served: Served, *, length: int, tool: str = "echo", path: str = "/api/v1/mcp/tools/mcp"
) -> bytes:
    headers = {**modern_headers("tools/call", tool), "Content-Length": str(length)}
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{served.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> dict[str, Any]:
    document = orjson.loads(response.split(b"\r\n\r\n", 1)[1])
    assert isinstance(document, dict)
    return document


async def test_half_a_request_line_is_closed_within_the_header_deadline(
    tmp_path: Path, backend: Backend
) -> None:
    async with gateway_with_deadlines(tmp_path, backend) as served:
        reader, writer = await connect(served)
        writer.write(b"POST /api/v1/mcp/tools/m")
        await writer.drain()

        response, took = await until_closed(reader, HEADER_S + SLACK_S)
        writer.close()

    assert status_of(response) == 408
    assert body_of(response)["error"] == {
        "code": -32600,
        "message": f"request headers not received within {HEADER_S:g} s",
    }
    assert took >= HEADER_S * 0.8


async def test_headers_trickled_byte_by_byte_do_not_extend_the_header_deadline(
    tmp_path: Path, backend: Backend
) -> None:
    async with gateway_with_deadlines(tmp_path, backend) as served:
        reader, writer = await connect(served)
        head = request_head(served, length=10)

        async def trickle() -> None:
            for byte in head:  # one byte every 50 ms: never silent long, never done in time
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)

        trickling = asyncio.create_task(trickle())
        try:
            response, took = await until_closed(reader, HEADER_S + SLACK_S)
        finally:
            trickling.cancel()
            writer.close()

    assert status_of(response) == 408
    assert took < HEADER_S + SLACK_S


async def test_half_a_second_request_on_a_kept_alive_connection_meets_the_header_deadline(
    tmp_path: Path, backend: Backend
) -> None:
    async with gateway_with_deadlines(tmp_path, backend) as served:
        reader, writer = await connect(served)
        writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
        first = await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 5)
        writer.write(b"POST /api/v1/mcp/tools/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()

        response, took = await until_closed(reader, HEADER_S + SLACK_S)
        writer.close()

    assert status_of(first) == 200
    assert status_of(response) == 408
    assert took >= HEADER_S * 0.8


async def test_pipelined_requests_behind_a_long_answer_are_all_answered(
    tmp_path: Path, backend: Backend
) -> None:
    slow = call_body("slow", {"seconds": 3 * HEADER_S, "tag": "first"})
    echo = call_body("echo", {"text": "second"}, id=2)
    async with gateway_with_deadlines(tmp_path, backend) as served:
        reader, writer = await connect(served)
        writer.write(request_head(served, length=len(slow), tool="slow") + slow)
        writer.write(request_head(served, length=len(echo)) + echo)
        await writer.drain()
        answers = b""
        async with asyncio.timeout(10):
            while (answers.count(b"HTTP/1.1 200") < 2 or not answers.endswith(b"}")) and (
                chunk := await reader.read(65536)
            ):
                answers += chunk
        writer.close()

    assert answers.count(b"HTTP/1.1 200") == 2, answers
    assert b"slept" in answers
    assert b"second" in answers


async def test_a_connection_that_never_sends_a_byte_is_closed_without_an_answer(
    tmp_path: Path, backend: Backend
) -> None:
    async with gateway_with_deadlines(tmp_path, backend) as served:
        reader, writer = await connect(served)

        response, _ = await until_closed(reader, HEADER_S + SLACK_S)
        writer.close()

    assert response == b""


async def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_timeout_s(
    tmp_path: Path, backend: Backend
) -> None:
    async with gateway_with_deadlines(tmp_path, backend) as served:
        reader, writer = await connect(served)
        writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
        await writer.drain()

        response, took = await until_closed(reader, KEEP_ALIVE_S + SLACK_S)
        writer.close()

    assert status_of(response) == 200  # answered, then closed once idle
    assert took >= KEEP_ALIVE_S * 0.8


async def test_a_body_that_stalls_is_answered_408_with_a_json_rpc_error_and_audited_once(
    tmp_path: Path, backend: Backend
) -> None:
    body = call_body("echo", {"text": "hello"})
    async with gateway_with_deadlines(tmp_path, backend) as served:
        reader, writer = await connect(served)
        writer.write(request_head(served, length=len(body)) + body[:20])
        await writer.drain()

        response, _ = await until_closed(reader, BODY_S + SLACK_S)
        writer.close()
        request_id = next(
            line.split(b": ")[1].decode()
            for line in response.split(b"\r\n")
            if line.lower().startswith(b"x-request-id:")
        )
        records = await served.audit(request_id)

    assert status_of(response) == 408
    assert body_of(response)["error"]["code"] == -32600
    assert b"connection: close" in response.lower()
    assert [(r.status, r.outcome) for r in records] == [(408, "http_error")]
    assert backend.witness.calls["echo"] == 0


async def test_a_stalled_body_on_any_other_route_is_cut_off_too(
    tmp_path: Path, backend: Backend
) -> None:
    async with gateway_with_deadlines(tmp_path, backend) as served:
        reader, writer = await connect(served)
        head = (
            f"POST /api/v1/core/oauth/token HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
        )
        writer.write(head.encode() + b"grant_type=")
        await writer.drain()

        response, _ = await until_closed(reader, BODY_S + 1 + SLACK_S)
        writer.close()

    assert status_of(response) == 408
    assert body_of(response)["error"]["code"] == -32600


async def test_a_slow_body_that_keeps_coming_is_read_to_the_end(
    tmp_path: Path, backend: Backend
) -> None:
    body = call_body("echo", {"text": "steady"})
    async with gateway_with_deadlines(tmp_path, backend) as served:
        reader, writer = await connect(served)
        writer.write(request_head(served, length=len(body)))
        started = time.monotonic()
        for start in range(0, len(body), 32):  # a gap of half the deadline, longer in all
            writer.write(body[start : start + 32])
            await writer.drain()
            await asyncio.sleep(BODY_S / 2)
        took = time.monotonic() - started
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()

    assert took > 2 * BODY_S
    assert status_of(head) == 200
    assert backend.witness.calls["echo"] == 1


async def test_a_slow_body_that_keeps_coming_on_any_other_route_is_read_too(
    tmp_path: Path, backend: Backend
) -> None:
    body = b"grant_type=authorization_code&code=nothing"
    async with gateway_with_deadlines(tmp_path, backend) as served:
        reader, writer = await connect(served)
        head = (
            f"POST /api/v1/core/oauth/token HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode())
        started = time.monotonic()
        for start in range(0, len(body), 10):  # gaps under the deadline, longer than it in all
            writer.write(body[start : start + 10])
            await writer.drain()
            await asyncio.sleep(BODY_S * 0.8)
        took = time.monotonic() - started
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()

    assert took > BODY_S + 1  # longer than the transport's own deadline for a stalled body
    assert status_of(answer) == 401  # the token endpoint read it all: it names no client


async def test_a_long_sse_stream_outlives_every_deadline(tmp_path: Path, backend: Backend) -> None:
    params = {"name": "progress", "arguments": {"steps": 2}, "_meta": {**META, "progressToken": 7}}
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
    headers = {**modern_headers("tools/call", "progress"), "Accept": ACCEPT}
    events: list[bytes] = []
    async with (
        gateway_with_deadlines(tmp_path, backend) as served,
        httpx2.AsyncClient(timeout=10) as http,
        http.stream(
            "POST", f"{served.base}/api/v1/mcp/tools/mcp", content=body, headers=headers
        ) as response,
    ):
        async for chunk in response.aiter_bytes():
            events.append(chunk)
            if len(events) == 1:
                # The stream has sent step 1; silent now for longer than any deadline.
                await asyncio.sleep(HEADER_S + BODY_S + KEEP_ALIVE_S)
                backend.witness.gate("progress").set()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert b"the gate opened" in b"".join(events)


def test_a_deadline_of_zero_is_refused_naming_its_key(tmp_path: Path) -> None:
    (tmp_path / "atrium.yaml").write_text("gateway:\n  header_timeout_s: 0\n")

    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path, environ={})

    assert [p.key_path for p in raised.value.problems] == ["gateway.header_timeout_s"]
