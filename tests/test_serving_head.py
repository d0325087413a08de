"""``HeldHead``: an answer's head and its body's first bytes leave in one ``send``; a head with
nothing after it in the same turn of the event loop leaves at the end of that turn; bytes
never change order. Against a real loopback socket pair: what the peer reads, and how many
``send`` calls the transport made (counted on the socket)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx2
import uvicorn
from starlette.types import Receive, Scope, Send

from atrium.serving import HeldHead, uvicorn_config
from tests.polling import until


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport


class CountingTransport:
    """The real transport, its writes counted (each is one ``send`` when its buffer is empty)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.transport.write(data)

    def close(self) -> None:
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def pair() -> tuple[CountingTransport, socket.socket]:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    _, protocol = await loop.connect_accepted_socket(Recorder, ours)
    assert protocol.transport is not None
    return CountingTransport(protocol.transport), theirs


async def read(peer: socket.socket, expected: bytes) -> bytes:
    """What the peer reads, up to the length of ``expected`` or the end of the stream."""
    loop = asyncio.get_running_loop()
    got = b""
    while len(got) < len(expected):
        part = await asyncio.wait_for(loop.sock_recv(peer, 65536), 5)
        if not part:
            break
        got += part
    return got


async def test_a_head_and_its_body_leave_in_one_write() -> None:
    counted, peer = await pair()
    held = HeldHead(counted, asyncio.get_running_loop())  # type: ignore[arg-type]

    held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    held.write(b"{}")
    held.write(b"")

    expected = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    assert await read(peer, expected) == expected
    assert counted.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b""]
    counted.close()
    peer.close()


async def test_a_head_alone_leaves_at_the_end_of_the_turn_and_before_what_follows() -> None:
    counted, peer = await pair()
    held = HeldHead(counted, asyncio.get_running_loop())  # type: ignore[arg-type]

    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert counted.writes == []  # held, this turn
    await asyncio.sleep(0)
    assert counted.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]  # a stream's head is not kept waiting
    held.write(b"data: 1\n\n")
    held.close()

    expected = b"HTTP/1.1 200 OK\r\n\r\ndata: 1\n\n"
    assert await read(peer, expected) == expected
    peer.close()


async def test_closing_sends_what_is_held_first() -> None:
    counted, peer = await pair()
    held = HeldHead(counted, asyncio.get_running_loop())  # type: ignore[arg-type]

    held.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    held.close()
    await asyncio.sleep(0)  # the scheduled flush finds nothing held

    assert counted.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    expected = b"HTTP/1.1 204 No Content\r\n\r\n"
    assert await read(peer, expected) == expected
    peer.close()


async def test_a_server_on_the_paced_protocol_answers_json_and_streams() -> None:
    # The whole path: uvicorn with PacedProtocol hands each request a HeldHead.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/json":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b'{"ok":true}'})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for n in range(3):
            await send({"type": "http.response.body", "body": b"%d\n" % n, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn_config(app, timeout_s=1, lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        await until(lambda: server.started, what="the server listening", interval=0.01)
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        async with httpx2.AsyncClient() as http:
            answer = await http.get(f"{base}/json")
            lines = []
            async with http.stream("GET", f"{base}/stream") as stream:
                async for line in stream.aiter_lines():
                    lines.append(line)
        assert (answer.status_code, answer.json()) == (200, {"ok": True})
        assert lines == ["0", "1", "2"]
    finally:
        server.should_exit = True
        await serving


async def test_a_head_held_for_a_connection_lost_meanwhile_is_dropped() -> None:
    counted, peer = await pair()
    held = HeldHead(counted, asyncio.get_running_loop())  # type: ignore[arg-type]

    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    counted.transport.close()  # the client went away in the same turn (not through HeldHead)
    await asyncio.sleep(0)  # the flush: no write on a closed transport, no error

    assert counted.writes == []
    peer.close()
