"""``serving.BODY_ARRIVED``: set on a request's scope once its whole body has been read from the
connection, never before. The MCP endpoint reads a body so marked without a deadline (nothing
is waited for), so a mark set early would let a client that sends half a body and stops hold
the request past ``body_s``. Against uvicorn on ``PacedProtocol`` on a loopback socket, with
the bytes written by hand: a body in two parts, pipelined requests, a body that stalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import Receive, Scope, Send

from atrium.serving import BODY_ARRIVED, Deadlines, uvicorn_config
from tests.polling import until

Seen = list[tuple[str, bool, bool, bytes]]  # path, marked at start, marked at end, body


def recording_app(seen: Seen, started: asyncio.Event) -> object:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        at_start = bool(scope.get(BODY_ARRIVED))
        started.set()
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
        seen.append((scope["path"], at_start, bool(scope.get(BODY_ARRIVED)), body))
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@asynccontextmanager
async def served(app: object, deadlines: Deadlines | None = None) -> AsyncIterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn_config(app, timeout_s=1, lifespan="off", deadlines=deadlines)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        await until(lambda: server.started, what="the server listening", interval=0.01)
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        await serving


def post(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


@asynccontextmanager
async def connected(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):  # the server closed it first (the 408)
            await writer.wait_closed()


async def answers(reader: asyncio.StreamReader, count: int) -> bytes:
    got = b""
    while got.count(b"HTTP/1.1 ") < count or not got.endswith(b"ok"):
        part = await asyncio.wait_for(reader.read(65536), 5)
        if not part:
            break
        got += part
    return got


async def test_a_body_sent_whole_is_marked_before_the_app_reads_it() -> None:
    seen: Seen = []
    async with served(recording_app(seen, asyncio.Event())) as port, connected(port) as (r, w):
        w.write(post("/whole", b'{"a":1}'))
        await answers(r, 1)
    assert seen == [("/whole", True, True, b'{"a":1}')]


async def test_half_a_body_is_not_marked_until_the_rest_comes() -> None:
    seen: Seen = []
    started = asyncio.Event()
    request = post("/halves", b'{"first":"half","second":"half"}')
    async with served(recording_app(seen, started)) as port, connected(port) as (r, w):
        w.write(request[:-10])
        await asyncio.wait_for(started.wait(), 5)  # the app runs with half the body in
        await asyncio.sleep(0.05)
        w.write(request[-10:])
        await answers(r, 1)
    assert seen == [("/halves", False, True, b'{"first":"half","second":"half"}')]


async def test_a_pipelined_request_is_marked_for_its_own_body_only() -> None:
    # The second request's head and half its body arrive with the first, whole, request: the
    # first is marked, the second only once its own body is complete.
    seen: Seen = []
    started = asyncio.Event()
    second = post("/second", b"0123456789")
    async with served(recording_app(seen, started)) as port, connected(port) as (r, w):
        w.write(post("/first", b"abc") + second[:-4])
        await until(lambda: len(seen) == 1, what="the first answered", interval=0.01)
        await asyncio.sleep(0.05)
        w.write(second[-4:])
        await answers(r, 2)
    assert seen == [("/first", True, True, b"abc"), ("/second", False, True, b"0123456789")]


async def test_a_body_that_stalls_is_never_marked() -> None:
    # Half a body and then nothing: the transport's own deadline ends the request (the MCP
    # endpoint's, marked or not, is body_s); the mark is never set on the way.
    seen: Seen = []
    started = asyncio.Event()
    deadlines = Deadlines(header_s=5, body_s=0.2, keep_alive_s=5)
    async with served(recording_app(seen, started), deadlines) as port, connected(port) as (r, w):
        w.write(post("/stalls", b"0123456789")[:-5])
        answer = await asyncio.wait_for(r.read(65536), 5)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert [(path, start, end) for path, start, end, _ in seen] in ([], [("/stalls", False, False)])
