"""Raw HTTP/1.1 on a loopback socket for tests/gateway/test_attack_lifecycle.py: requests
written as an attacker writes them (pipelined, half-closed, cut at any moment), answers read
back one by one, as the bytes say, whatever their framing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from tests.gateway.helpers import META, modern_headers

PATH = "/api/v1/mcp/{server}/mcp"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def request_id(self) -> str:
        return self.headers["x-request-id"]

    def json(self) -> Any:
        """The one JSON-RPC message of a JSON answer, or the last of an event stream."""
        if self.headers["content-type"].startswith("application/json"):
            return orjson.loads(self.body)
        events = self.body.decode().replace("\r\n", "\n").split("\n\n")
        data = [line[5:].strip() for e in events for line in e.split("\n") if line[:5] == "data:"]
        return orjson.loads([d for d in data if d][-1])


def call(
    tool: str, arguments: dict[str, Any], *, id: int = 1, progress: int | None = None
) -> bytes:
    """A 2026-07-28 ``tools/call`` body."""
    meta: dict[str, Any] = {**META}
    if progress is not None:
        meta["progressToken"] = progress
    params = {"name": tool, "arguments": arguments, "_meta": meta}
    return orjson.dumps({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})


def post(
    port: int,
    body: bytes,
    *,
    method: str = "tools/call",
    name: str | None = None,
    server: str = "tools",
) -> bytes:
    """The whole request: head (``Content-Length`` the body's) and body."""
    headers = modern_headers(method, name)
    headers["Content-Length"] = str(len(body))
    lines = [f"POST {PATH.format(server=server)} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def tool_post(port: int, tool: str, arguments: dict[str, Any], *, id: int = 1) -> bytes:
    return post(port, call(tool, arguments, id=id), name=tool)


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """One answer: its head, then a body framed by ``Content-Length`` or chunks."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _chunks(reader)
    else:
        body = await reader.read()
    return Answer(status, headers, body)


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")
    return body


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """All the gateway sends until it closes the connection (a reset counts as closing)."""
    received = b""
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received
