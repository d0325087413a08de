"""The forwarding client's connections, one pool per backend origin (scheme, host, port),
and the endpoints (backend URLs) that share them.

At most ``limit`` connections are open to an origin at once (more requests wait for one, as
aiohttp's connector made them wait); idle ones are reused most recently used first and closed
after ``KEEP_ALIVE_S``, or when the gateway stops. Connecting takes at most
``CONNECT_TIMEOUT_S``. A request is sent twice only when a kept-alive connection closed
before a byte of its answer and its method is idempotent (RFC 9110 §9.2.2, RFC 9112 §9.3.1):
a ``tools/call`` POST is never repeated, since it may have run.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import deque
from collections.abc import Iterable
from typing import TypeVar
from urllib.parse import SplitResult, quote, unquote, urlsplit

from atrium.gateway.http1 import ConnectFailed, Connection, Response, Unanswered

CONNECT_TIMEOUT_S = 10.0
# An idle connection older than this is closed, not reused. Below the 5 s a backend keeps one
# (Atrium's servers: ``serving.Deadlines``; uvicorn's and Node's defaults): a backend that
# closes a connection as a call leaves on it breaks that call, and a POST cannot be resent.
KEEP_ALIVE_S = 4.0
IDEMPOTENT = frozenset({"GET", "DELETE"})
_TARGET_SAFE = "/%:@!$&'()*+,;=-._~?"
_T = TypeVar("_T")


class Origin:
    """The connections to one scheme, host and port: at most ``limit`` open at once (more
    requests wait for one), the idle ones kept for reuse, most recently used first."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        limit: int,
        loop: asyncio.AbstractEventLoop,
        keep_alive_s: float = KEEP_ALIVE_S,
    ) -> None:
        self.host = host
        self._keep_alive_s = keep_alive_s
        self.port = port
        self.loop = loop
        self._tls = tls
        self._limit = limit
        self._open: set[Connection] = set()
        self._idle: deque[Connection] = deque()
        self._room: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def request(
        self, method: str, head: bytes, body: bytes | None, idle: float | None
    ) -> Response:
        """Send one request; its answer once the headers are in. Sent again, once, on a
        fresh connection when a kept-alive one closed unanswered and ``method`` allows it."""
        retry = method in IDEMPOTENT
        while True:
            conn, reused = await self._acquire()
            conn.send(head, body)
            try:
                return await conn.answer(idle)
            except Unanswered:
                conn.release()
                if not (reused and retry):
                    raise
                retry = False
            except BaseException:
                conn.release()
                raise

    async def _acquire(self) -> tuple[Connection, bool]:
        while True:
            conn = self._reusable()
            if conn is not None:
                return conn, True
            if len(self._open) < self._limit:
                return await self._connect(), False
            room = self.loop.create_future()
            self._room.append(room)
            try:
                await room
            except BaseException:
                _discard(self._room, room)
                self._make_room()  # pass on a wake-up this waiter can no longer use
                raise

    def _reusable(self) -> Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if self.loop.time() - conn.idle_since > self._keep_alive_s:
                conn.close()
                continue
            return conn
        return None

    async def _connect(self) -> Connection:
        if self._closed:
            raise ConnectFailed("the gateway is stopping")
        conn = Connection(self)
        self._open.add(conn)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self.loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self._tls,
                    server_hostname=self.host if self._tls is not None else None,
                )
        except OSError as exc:
            self.lost(conn)
            if isinstance(exc, TimeoutError) and exc.errno is None:
                raise  # ours: CONNECT_TIMEOUT_S passed
            raise ConnectFailed(exc.strerror or str(exc) or type(exc).__name__) from None
        except BaseException:
            self.lost(conn)
            raise
        return conn

    def put_back(self, conn: Connection) -> None:
        if self._closed:
            conn.close()
            return
        now = self.loop.time()
        conn.idle_since = now
        idle = self._idle
        while idle and now - idle[0].idle_since > self._keep_alive_s:
            idle.popleft().close()
        idle.append(conn)
        self._make_room()

    def lost(self, conn: Connection) -> None:
        """``conn`` closed (or never opened): it no longer counts against the limit."""
        if conn in self._open:
            self._open.discard(conn)
            _discard(self._idle, conn)
            self._make_room()

    def _make_room(self) -> None:
        while self._room:
            room = self._room.popleft()
            if not room.done():
                room.set_result(None)
                return

    def close(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()


class Endpoint:
    """One backend URL: the request target and ``Host`` of its requests, and its origin's
    connections (several URLs of one origin share them)."""

    def __init__(self, origin: Origin, target: bytes, host: bytes, auth: bytes | None) -> None:
        self.origin = origin
        self._start = b" " + target + b" HTTP/1.1\r\nhost: " + host + b"\r\n"
        self._auth = auth

    async def request(
        self,
        method: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes | None,
        *,
        idle: float | None,
    ) -> Response:
        """``method`` with ``headers`` and ``body``; the answer once its headers are in,
        or ``TimeoutError`` after ``idle`` seconds without a byte of it."""
        return await self.origin.request(method, self.head(method, headers, body), body, idle)

    def head(
        self, method: str, headers: Iterable[tuple[bytes, bytes]], body: bytes | None
    ) -> bytes:
        """The request line and headers. Refuses (``ValueError``) a name or value that would
        end a line early (RFC 9110 §5.5: CR, LF and NUL are never field content)."""
        parts = [method.encode("ascii"), self._start]
        lines = 3  # request line, Host, the blank line
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
            lines += 1
        if self._auth is not None:
            parts.append(self._auth)
            lines += 1
        if body is not None or method != "GET":
            parts += (b"content-length: ", str(len(body or b"")).encode(), b"\r\n")
            lines += 1
        parts.append(b"\r\n")
        head = b"".join(parts)
        if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
            raise ValueError("a request header holds CR, LF or NUL; it was not sent")
        return head


class Upstream:
    """The endpoints of every backend URL and the origins behind them, made on first use."""

    def __init__(self, *, limit: int = 256, keep_alive_s: float = KEEP_ALIVE_S) -> None:
        self._limit = limit
        self._keep_alive_s = keep_alive_s
        self._endpoints: dict[str, Endpoint] = {}
        self._origins: dict[tuple[str, str, int], Origin] = {}
        self._tls: ssl.SSLContext | None = None

    def endpoint(self, url: str) -> Endpoint:
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            endpoint = self._endpoints[url] = self._endpoint(url)
        return endpoint

    def _endpoint(self, url: str) -> Endpoint:
        parts = urlsplit(url)
        host = parts.hostname or ""
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        key = (parts.scheme, host, port)
        origin = self._origins.get(key)
        if origin is None:
            tls = self._context() if secure else None
            loop = asyncio.get_running_loop()
            origin = Origin(
                host, port, tls=tls, limit=self._limit, loop=loop, keep_alive_s=self._keep_alive_s
            )
            self._origins[key] = origin
        name = f"[{host}]" if ":" in host else host
        shown = name.encode() if name.isascii() else name.encode("idna")
        if port != (443 if secure else 80):  # RFC 9110 §7.2: the port only when not the default
            shown += f":{port}".encode()
        target = quote(parts.path or "/", safe=_TARGET_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_TARGET_SAFE)
        return Endpoint(origin, target.encode("ascii"), shown, _basic(parts))

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def close(self) -> None:
        for origin in self._origins.values():
            origin.close()
        self._origins.clear()
        self._endpoints.clear()


def _basic(parts: SplitResult) -> bytes | None:
    """``Authorization: Basic`` for credentials written into the URL (RFC 7617), as
    aiohttp sent them."""
    if parts.username is None:
        return None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return b"authorization: Basic " + base64.b64encode(pair) + b"\r\n"


def _discard(queue: deque[_T], item: _T) -> None:
    if item in queue:
        queue.remove(item)
