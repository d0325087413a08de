"""The forwarding client (``atrium.gateway.http1``) against backends that speak raw HTTP/1.1
on a loopback socket, byte for byte as each test writes them: every framing the client must
read (Content-Length, chunked, to the connection's end), the framings it must refuse, when a
connection may be used again, and the timeouts. Each test runs on asyncio's loop and on
uvloop's (the gateway's).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx2
import orjson
import pytest
import uvloop

from atrium.gateway.http1 import BrokenAnswer, ConnectFailed
from atrium.gateway.origins import KEEP_ALIVE_S, Upstream
from atrium.serving import Deadlines
from tests.gateway.helpers import Gateway, call_body, call_modern, modern_headers
from tests.processes import free_port

INTERNAL_ERROR = -32603

WAIT_S = 5.0
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)


@dataclass
class Close:
    """Write ``data``, then close the connection."""

    data: bytes = b""


@dataclass
class Hold:
    """Write ``data``, then say nothing more until the client hangs up."""

    data: bytes = b""


@dataclass
class Trickle:
    """Write ``data`` a byte at a time, ``gap_s`` seconds apart."""

    data: bytes
    gap_s: float


Step = bytes | Close | Hold | Trickle


@dataclass
class RawBackend:
    """Answers each request it reads, on whichever connection, with the next step."""

    steps: list[Step]
    port: int = 0
    requests: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # conn, head, body
    connections: int = 0
    hung_up: asyncio.Queue[int] = field(default_factory=asyncio.Queue)  # the client closed
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.connections += 1
        number = self.connections
        try:
            while self.steps:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.hung_up.put_nowait(number)
                    return
                body = await reader.readexactly(_length(head))
                self.requests.append((number, head, body))
                if not await self._answer(self.steps.pop(0), reader, writer):
                    return
        finally:
            writer.close()

    async def _answer(
        self, step: Step, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Play ``step``; whether the connection stays open for another request."""
        if isinstance(step, bytes):
            writer.write(step)
            await writer.drain()
            return True
        if isinstance(step, Trickle):
            for byte in step.data:
                await asyncio.sleep(step.gap_s)
                writer.write(bytes([byte]))
                await writer.drain()
            return True
        writer.write(step.data)
        await writer.drain()
        if isinstance(step, Hold):
            await reader.read()  # until the client hangs up
            self.hung_up.put_nowait(self.connections)
        return False


def _length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@asynccontextmanager
async def raw_backend(*steps: Step) -> AsyncIterator[RawBackend]:
    backend = RawBackend(list(steps))
    server = await asyncio.start_server(backend.serve, "127.0.0.1", 0)
    backend.port = server.sockets[0].getsockname()[1]
    try:
        async with server:
            yield backend
    finally:
        for writer in backend.writers:  # each closed before the test's loop is
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@asynccontextmanager
async def client(limit: int = 8, keep_alive_s: float = KEEP_ALIVE_S) -> AsyncIterator[Upstream]:
    upstream = Upstream(limit=limit, keep_alive_s=keep_alive_s)
    try:
        yield upstream
    finally:
        upstream.close()


async def post(upstream: Upstream, url: str, body: bytes = b"{}", idle: float = WAIT_S) -> bytes:
    """One POST, its whole answer read, its connection handed back."""
    response = await upstream.endpoint(url).request(
        "POST", [(b"content-type", b"application/json")], body, idle=idle
    )
    try:
        return await response.read(WAIT_S)
    finally:
        response.close()


async def until_hung_up(backend: RawBackend) -> None:
    """Until the client closed one of the backend's connections."""
    async with asyncio.timeout(WAIT_S):
        await backend.hung_up.get()


# -- framings read ---------------------------------------------------------------------------


async def test_a_content_length_answer_is_read_and_its_connection_used_again() -> None:
    async with raw_backend(ANSWER, ANSWER) as backend, client() as upstream:
        assert await post(upstream, backend.url) == b"{}"
        assert await post(upstream, backend.url) == b"{}"

    assert [number for number, _, _ in backend.requests] == [1, 1]


async def test_a_chunked_answer_is_read_whole_and_its_connection_used_again() -> None:
    async with raw_backend(CHUNKED, ANSWER) as backend, client() as upstream:
        assert await post(upstream, backend.url) == b"hello world"
        assert await post(upstream, backend.url) == b"{}"

    assert backend.connections == 1


async def test_an_answer_delimited_by_the_connection_end_is_read_to_it_and_not_reused() -> None:
    unframed = Close(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
    async with raw_backend(unframed, ANSWER) as backend, client() as upstream:
        assert await post(upstream, backend.url) == b"all of it"
        assert await post(upstream, backend.url) == b"{}"

    assert backend.connections == 2


async def test_an_interim_answer_is_skipped_for_the_final_one() -> None:
    early_hints = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
    async with raw_backend(early_hints + ANSWER) as backend, client() as upstream:
        response = await upstream.endpoint(backend.url).request("POST", [], b"{}", idle=WAIT_S)
        assert response.status == 200
        assert response.header(b"link") is None
        assert await response.read(WAIT_S) == b"{}"
        response.close()


async def test_a_streamed_answer_arrives_in_parts_before_it_ends() -> None:
    first = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked"
    first += b"\r\n\r\n7\r\ndata: 1\r\n"
    async with raw_backend(Hold(first)) as backend, client() as upstream:
        response = await upstream.endpoint(backend.url).request("POST", [], b"{}", idle=WAIT_S)
        assert response.content_type == "text/event-stream"
        assert await response.read_some(WAIT_S) == b"data: 1"
        with pytest.raises(TimeoutError):
            await response.read_some(0.2)
        response.close()  # unfinished: the connection goes, and the backend sees it go
        await until_hung_up(backend)


# -- framings refused ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        # RFC 9112 §6.3 item 3: both lengths is the start of request smuggling.
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n folded: on\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\n{}",  # bare LF line endings
        b"SMTP ready\r\n\r\n",
    ],
    ids=["cl-and-te", "two-lengths", "bad-length", "bad-chunk", "folded", "bad-name", "lf", "junk"],
)
async def test_an_answer_with_bad_framing_is_refused_and_its_connection_closed(
    answer: bytes,
) -> None:
    async with raw_backend(Hold(answer)) as backend, client() as upstream:
        with pytest.raises(BrokenAnswer):
            await post(upstream, backend.url)
        await until_hung_up(backend)


async def test_a_switch_of_protocols_nobody_asked_for_is_refused() -> None:
    upgrade = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    async with raw_backend(Hold(upgrade)) as backend, client() as upstream:
        with pytest.raises(BrokenAnswer):
            await post(upstream, backend.url)


@pytest.mark.parametrize(
    "cut",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_a_backend_that_closes_mid_body_breaks_the_answer(cut: bytes) -> None:
    async with raw_backend(Close(cut), ANSWER) as backend, client() as upstream:
        with pytest.raises(BrokenAnswer):
            await post(upstream, backend.url)
        assert await post(upstream, backend.url) == b"{}"

    assert backend.connections == 2


async def test_a_backend_that_closes_before_the_headers_end_breaks_the_answer() -> None:
    cut = Close(b"HTTP/1.1 200 OK\r\nContent-Le")
    async with raw_backend(cut) as backend, client() as upstream:
        with pytest.raises(BrokenAnswer):
            await post(upstream, backend.url)


# -- connections used again, or not ----------------------------------------------------------


async def test_an_answer_not_read_to_its_end_closes_its_connection() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"
    async with raw_backend(Hold(big), ANSWER) as backend, client() as upstream:
        response = await upstream.endpoint(backend.url).request("POST", [], b"{}", idle=WAIT_S)
        assert await response.read_some(WAIT_S) == b"01234"
        response.close()
        await until_hung_up(backend)
        assert await post(upstream, backend.url) == b"{}"

    assert backend.connections == 2


async def test_an_answer_saying_connection_close_is_not_followed_on_its_connection() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    async with raw_backend(Hold(closing), ANSWER) as backend, client() as upstream:
        assert await post(upstream, backend.url) == b"{}"
        assert await post(upstream, backend.url) == b"{}"

    assert backend.connections == 2


async def test_an_answer_followed_by_bytes_nobody_asked_for_spoils_its_connection() -> None:
    smuggled = ANSWER + b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhijack!"
    async with raw_backend(Hold(smuggled), ANSWER) as backend, client() as upstream:
        assert await post(upstream, backend.url) == b"{}"
        assert await post(upstream, backend.url) == b"{}"  # not "hijack!"

    assert backend.connections == 2


async def test_a_get_on_a_kept_connection_closed_unanswered_is_sent_again_once() -> None:
    async with raw_backend(ANSWER, Close(), ANSWER) as backend, client() as upstream:
        assert await post(upstream, backend.url) == b"{}"
        response = await upstream.endpoint(backend.url).request("GET", [], None, idle=WAIT_S)
        assert await response.read(WAIT_S) == b"{}"
        response.close()

    assert [number for number, _, _ in backend.requests] == [1, 1, 2]


async def test_a_post_on_a_kept_connection_closed_unanswered_is_never_sent_twice() -> None:
    async with raw_backend(ANSWER, Close(), ANSWER) as backend, client() as upstream:
        assert await post(upstream, backend.url) == b"{}"
        with pytest.raises(BrokenAnswer):
            await post(upstream, backend.url)

    assert len(backend.requests) == 2  # a tool call may have run: the client is told


async def test_a_connection_idle_past_the_keep_alive_is_not_used_again() -> None:
    async with raw_backend(ANSWER, ANSWER) as backend, client(keep_alive_s=0.2) as upstream:
        assert await post(upstream, backend.url) == b"{}"
        await asyncio.sleep(0.4)
        assert await post(upstream, backend.url) == b"{}"

    assert backend.connections == 2


def test_an_idle_connection_is_dropped_before_a_backend_would_close_it() -> None:
    # A backend closing a kept connection as a tools/call leaves on it would break the call
    # (a POST is never resent): Atrium's backends, uvicorn and Node keep one 5 s.
    assert Deadlines().keep_alive_s > KEEP_ALIVE_S


async def test_open_connections_are_bounded_and_requests_beyond_wait_for_one() -> None:
    async with raw_backend(*[ANSWER] * 6) as backend, client(limit=2) as upstream:
        answers = await asyncio.gather(*(post(upstream, backend.url) for _ in range(6)))

    assert answers == [b"{}"] * 6
    assert backend.connections == 2


async def test_closing_the_client_closes_its_idle_connections() -> None:
    async with raw_backend(ANSWER, ANSWER) as backend:
        async with client() as upstream:
            assert await post(upstream, backend.url) == b"{}"
        await until_hung_up(backend)


# -- what goes out ---------------------------------------------------------------------------


async def test_the_request_carries_the_length_of_its_body_and_the_backend_s_host() -> None:
    async with raw_backend(ANSWER) as backend, client() as upstream:
        await post(upstream, backend.url + "?key=a b", body=b'{"a": 1}')

    ((_, head, body),) = backend.requests
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /mcp?key=a%20b HTTP/1.1"
    assert f"host: 127.0.0.1:{backend.port}".encode() in lines
    assert b"content-length: 8" in lines
    assert body == b'{"a": 1}'


async def test_a_header_value_that_would_end_its_line_is_never_sent() -> None:
    async with raw_backend(ANSWER) as backend, client() as upstream:
        endpoint = upstream.endpoint(backend.url)
        for value in (b"x\r\nContent-Length: 0", b"x\nInjected: 1", b"x\rInjected: 1", b"x\0"):
            with pytest.raises(ValueError, match="CR, LF or NUL"):
                await endpoint.request("POST", [(b"mcp-name", value)], b"{}", idle=WAIT_S)

    assert backend.requests == []


# -- timeouts and errors ---------------------------------------------------------------------


async def test_headers_that_do_not_come_within_idle_time_out_and_the_connection_goes() -> None:
    async with raw_backend(Hold()) as backend, client() as upstream:
        with pytest.raises(TimeoutError):
            await post(upstream, backend.url, idle=0.3)
        await until_hung_up(backend)


async def test_headers_that_keep_coming_do_not_time_out_while_bytes_arrive() -> None:
    slowly = Trickle(ANSWER, gap_s=0.03)  # the answer takes ~2 s, twice ``idle``
    async with raw_backend(slowly) as backend, client() as upstream:
        assert await post(upstream, backend.url, idle=1.0) == b"{}"


async def test_a_port_nobody_listens_on_fails_to_connect() -> None:
    async with client() as upstream:
        with pytest.raises(ConnectFailed):
            await post(upstream, f"http://127.0.0.1:{free_port()}/mcp")


def test_the_client_works_on_uvloop() -> None:
    async def framings() -> None:
        unframed = Close(b"HTTP/1.1 200 OK\r\n\r\nto the end")
        cut = Close(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ncut")
        backend_of = raw_backend(ANSWER, CHUNKED, unframed, cut, Hold())
        async with backend_of as backend, client() as upstream:
            assert await post(upstream, backend.url) == b"{}"
            assert await post(upstream, backend.url) == b"hello world"
            assert await post(upstream, backend.url) == b"to the end"
            with pytest.raises(BrokenAnswer):
                await post(upstream, backend.url)
            with pytest.raises(TimeoutError):
                await post(upstream, backend.url, idle=0.2)
        assert [number for number, _, _ in backend.requests] == [1, 1, 1, 2, 3]

    uvloop.run(framings())


# -- through the gateway ---------------------------------------------------------------------


async def test_a_backend_answer_with_bad_framing_reaches_the_client_as_a_bad_gateway(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    smuggling = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with raw_backend(Hold(smuggling + b"0\r\n\r\n")) as backend:
        await gateway.add_server("raw", port=backend.port)
        response = await call_modern(http, gateway.url("raw"), "echo")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == INTERNAL_ERROR
    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert (record.outcome, record.status) == ("http_error", 502)


async def test_an_event_stream_the_backend_cuts_off_is_audited_as_broken_off(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    progress = {"progressToken": 1, "progress": 1}
    note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": progress}
    event = b"event: message\ndata: " + orjson.dumps(note) + b"\n\n"
    start = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    start += b"Transfer-Encoding: chunked\r\n\r\n"
    chunk = f"{len(event):x}\r\n".encode() + event + b"\r\n"
    received = b""
    async with raw_backend(Close(start + chunk)) as backend:
        await gateway.add_server("raw", port=backend.port)
        body = call_body("echo")
        with contextlib.suppress(httpx2.RemoteProtocolError):
            async with http.stream(
                "POST",
                gateway.url("raw"),
                content=body,
                headers=modern_headers("tools/call", "echo"),
            ) as response:
                request_id = response.headers["x-request-id"]
                async for part in response.aiter_raw():
                    received += part

    assert b"notifications/progress" in received  # what came before the cut reached the client
    (record,) = await gateway.audit(request_id)
    assert (record.outcome, record.status) == ("http_error", 502)
