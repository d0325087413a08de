"""One HTTP/1.1 connection to a backend, for the forwarding path: the request written as
given, the answer parsed by ``httptools`` (llhttp, the parser under uvicorn) on an asyncio
protocol. Its pool, per backend origin, is ``origins``.

Why not aiohttp's ``ClientSession.request``: building one request through it cost more CPU
than the gateway's own work on a call (bench/RESULTS.md, issue 17). Forwarding needs little
of it: one request line, headers already chosen (``upstream``), a body already in memory.

Framing is never guessed at (RFC 9112 §6, §11.2): the request's ``Content-Length`` is the
length of the body sent (``origins.Endpoint``), never a client's header; the answer's length
is llhttp's to read in its strict mode, which refuses ``Content-Length`` beside
``Transfer-Encoding``, lengths that disagree, malformed chunks, folded or nameless headers
and bytes after ``Connection: close`` (``BrokenAnswer``). A connection goes back to its pool
only when its answer was read to the end and both sides keep it alive; anything else (an
answer cut short, an abandoned one, bytes nobody asked for) closes it, so no request ever
reads the rest of another's answer.

Timeouts: the wait for an answer's headers ends after ``idle`` seconds without a byte
(aiohttp's ``sock_read``: a backend may hold its headers back until a slow tool returns);
each body read takes the time its caller gives it.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import httptools

HIGH_WATER = 256 * 1024  # bytes of an answer buffered before reading from the socket pauses


class Keeper(Protocol):
    """Where a connection goes when its request is over (``origins.Origin``)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def put_back(self, conn: Connection) -> None: ...

    def lost(self, conn: Connection) -> None: ...


class UpstreamError(Exception):
    """The backend could not be talked to; the message says how, for the client's error."""


class ConnectFailed(UpstreamError):
    """No connection could be opened (refused, no such host, TLS handshake refused)."""


class BrokenAnswer(UpstreamError):
    """The connection broke before the answer ended, or the answer is no valid HTTP/1.1."""


class Unanswered(BrokenAnswer):
    """Closed before a byte of the answer came: the backend may not have read the request."""


class Response:
    """One answer's status and headers (names in lower case); its body is read from the
    connection as it arrives. ``close()`` hands the connection back (or closes it)."""

    __slots__ = ("_body", "_conn", "_released", "headers", "status")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self._body: bytes | None = None
        self._released = False

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), if the answer has it."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters (RFC 9110 §8.3.1)."""
        value = self.header(b"content-type")
        if value is None:
            return "application/octet-stream"
        return value.split(b";", 1)[0].strip().decode("latin-1").lower()

    async def read(self, within: float | None = None) -> bytes:
        """The whole body, ``within`` seconds at most; kept, so it can be read again."""
        if self._body is None:
            self._body = await self._conn.read_all(within)
        return self._body

    async def read_some(self, within: float | None = None) -> bytes:
        """The body's next bytes, waiting ``within`` seconds at most; ``b""`` at its end."""
        return await self._conn.read_some(within)

    async def read_prefix(self, size: int, within: float | None = None) -> bytes:
        """The body's first ``size`` bytes, or all of it if shorter."""
        parts: list[bytes] = []
        got = 0
        while got < size and (part := await self._conn.read_some(within)):
            parts.append(part)
            got += len(part)
        return b"".join(parts)[:size]

    def close(self) -> None:
        if not self._released:
            self._released = True
            self._conn.release()


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection to a backend and the parser of its answers."""

    def __init__(self, keeper: Keeper) -> None:
        self._keeper = keeper
        self._loop = keeper.loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._busy = False
        self._answered = False
        self._interim = False
        self._head_done = False
        self._complete = False
        self._reusable = True
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._quiet: float | None = None  # the idle timeout of the current wait
        self._last_data = 0.0

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._busy:  # nobody asked: a connection that says more than asked is done
            self.close()
            return
        self._last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BrokenAnswer("the server switched protocols, which was not asked for"))
        except httptools.HttpParserError as exc:
            self._fail(BrokenAnswer(f"the server's answer is no valid HTTP/1.1 ({exc})"))
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._reusable = False
        if self._busy and not self._complete and self._error is None:
            if self._head_done and exc is None and _reads_to_eof(self.status, self.headers):
                self._complete = True  # RFC 9112 §6.3 item 8: the body ends with the connection
            elif not self._answered:
                self._error = Unanswered("the connection closed before an answer came")
            else:
                self._error = BrokenAnswer(_cut_short(exc))
        self._wake()
        self._keeper.lost(self)

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            # A second answer to one request: the stream is out of step. Raising stops the
            # parser before it reads a byte of it (``_fail`` then closes the connection).
            raise BrokenAnswer("the server answered more than it was asked")
        self._answered = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # RFC 9110 §15.2: an interim answer; the final one follows
            self._interim = True
            self.headers = []
            return
        self.status = status
        self._head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._complete:
            return
        self._complete = True
        if not self._parser.should_keep_alive():
            self._reusable = False
        self._wake()

    # -- one request -----------------------------------------------------------------------

    def send(self, head: bytes, body: bytes | None) -> None:
        assert self.transport is not None
        self._busy = True
        self._answered = self._interim = self._head_done = self._complete = False
        self.status = 0
        self.headers = []
        self._chunks = []
        self._buffered = 0
        self._error = None
        self._last_data = self._loop.time()
        if body:
            self.transport.write(head + body)
        else:
            self.transport.write(head)

    async def answer(self, idle: float | None) -> Response:
        """Wait for the answer's headers, until ``idle`` seconds pass without a byte."""
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait(idle, idle=True)
        return Response(self)

    async def read_all(self, within: float | None) -> bytes:
        deadline = None if within is None else self._loop.time() + within
        while not self._complete:
            if self._error is not None:
                raise self._error
            await self._wait(None if deadline is None else deadline - self._loop.time())
        return self._take()

    async def read_some(self, within: float | None) -> bytes:
        if within is not None and within <= 0:
            raise TimeoutError  # as ``asyncio.wait_for`` does: no time left, whatever is in
        if not self._chunks and not self._complete:
            if self._error is not None:
                raise self._error
            await self._wait(within)
            if not self._chunks and not self._complete and self._error is not None:
                raise self._error
        return self._take()

    def release(self) -> None:
        """The request is over: keep the connection for the next one only if its answer
        was read to the end (whatever of its body went unread) and both sides agree."""
        self._busy = False
        self._chunks = []
        if self._complete and self._reusable and not self.closed:
            self._keeper.put_back(self)
        else:
            self.close()

    def close(self) -> None:
        self._reusable = False
        if self.transport is not None:
            self.transport.close()

    # -- waiting ---------------------------------------------------------------------------

    def _take(self) -> bytes:
        chunks = self._chunks
        self._chunks = []
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    async def _wait(self, within: float | None, *, idle: bool = False) -> None:
        """Until the parser has news, the connection ends, or ``within`` seconds pass: counted
        from the last byte received when ``idle``, else from now."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        waiter = self._waiter = self._loop.create_future()
        if within is not None:
            self._quiet = within if idle else None
            self._timer = self._loop.call_later(max(within, 0.0), self._expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _expire(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            return
        if self._quiet is not None:
            # One timer per wait, moved on only when it fires: cheaper than one per byte.
            quiet_until = self._last_data + self._quiet
            if quiet_until > self._loop.time():
                self._timer = self._loop.call_at(quiet_until, self._expire, waiter)
                return
        waiter.set_exception(TimeoutError())

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self._complete:  # the answer was whole: only the connection is spoilt
            self.close()
            return
        self._error = error
        self.close()
        self._wake()


def _reads_to_eof(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether an answer's body is delimited by the connection's end (RFC 9112 §6.3): no
    ``Content-Length`` and no final chunked coding, on a status that has a body."""
    if status in (204, 304):
        return False
    for name, value in headers:
        if name == b"content-length":
            return False
        if name == b"transfer-encoding" and value.rstrip().lower().endswith(b"chunked"):
            return False
    return True


def _cut_short(exc: Exception | None) -> str:
    why = f" ({exc})" if exc is not None else ""
    return f"the connection closed before the answer ended{why}"
