"""Opening one server's transport for the ``mcp`` SDK client, and knowing when it has closed.

stdio: the command as a child process, its stderr appended to a log file (never mixed into the
protocol on stdout). ``http``: Streamable HTTP, both protocol eras (``mode="auto"`` probes
``server/discover`` and falls back to ``initialize``). ``sse``: the legacy HTTP+SSE transport,
which only the ``initialize`` era speaks.

``Watched`` wraps a transport's read stream: once the peer is gone (a stdio child that exited,
an SSE stream that ended), ``closed`` is set, so a caller can reconnect *before* sending a
request rather than learn it from a request that may or may not have been delivered.
"""

from __future__ import annotations

import functools
import ssl
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import anyio
import httpx2
from mcp.client._transport import TransportStreams
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from atrium.client.mcpjson import HttpTarget, ServerSpec, StdioTarget

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0  # a response stream may stay open while a tool works


class Watched:
    """A transport whose read side sets ``closed`` when the peer goes away."""

    def __init__(self, inner: AbstractAsyncContextManager[TransportStreams]) -> None:
        self._inner = inner
        self.closed = anyio.Event()

    async def __aenter__(self) -> TransportStreams:
        read, write = await self._inner.__aenter__()
        return _WatchedRead(read, self.closed), write

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.closed.set()
        return await self._inner.__aexit__(exc_type, exc, tb)


class _WatchedRead:
    """The read stream, unchanged but for noticing its end."""

    def __init__(self, inner: Any, closed: anyio.Event) -> None:
        self._inner = inner
        self._closed = closed

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._closed.set()
            raise

    async def aclose(self) -> None:
        self._closed.set()
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedRead:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _WatchedRead:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __getattr__(self, name: str) -> Any:  # ``last_context`` and the like
        return getattr(self._inner, name)


class NotTaken:
    """How many requests the server never took: the connection was refused (name not resolved,
    nothing listening), or the request named a session the server no longer knows (404, the
    specification's answer; or 400 naming the session, as servers built on the TypeScript
    SDK's examples answer). The SDK folds these into generic errors, and only a request that was
    never taken is always safe to send again."""

    def __init__(self) -> None:
        self.count = 0


_SESSION_HEADER = "mcp-session-id"


class _Observed(httpx2.AsyncBaseTransport):
    """The HTTP transport, counting the requests the server never took into ``not_taken``."""

    def __init__(self, not_taken: NotTaken) -> None:
        self._inner = httpx2.AsyncHTTPTransport(verify=_tls())
        self._not_taken = not_taken

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except httpx2.ConnectError:
            self._not_taken.count += 1
            raise
        refused = response.status_code in (400, 404) and request.method == "POST"
        if refused and _SESSION_HEADER in request.headers:
            body = await response.aread()
            if response.status_code == 404 or b"session" in body.lower():
                self._not_taken.count += 1
            return httpx2.Response(
                response.status_code, headers=response.headers, content=body, request=request
            )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every connection (loading the CA bundle costs ~60 ms of CPU)."""
    return ssl.create_default_context()


async def open_transport(
    spec: ServerSpec,
    stack: AsyncExitStack,
    *,
    log_dir: Path,
    auth: httpx2.Auth | None,
    not_taken: NotTaken,
) -> tuple[Watched, str]:
    """The server's transport, watched, and the ``mode`` the SDK client negotiates with."""
    target = spec.target
    if isinstance(target, StdioTarget):
        errlog = _stderr_log(spec, stack, log_dir)
        return Watched(stdio_client(_parameters(target), errlog=errlog)), "auto"
    if target.transport == "sse":
        return Watched(_sse(target, auth)), "legacy"
    http = await stack.enter_async_context(_http_client(target, auth, not_taken))
    return Watched(streamable_http_client(target.url, http_client=http)), "auto"


def stderr_log_path(log_dir: Path, spec: ServerSpec) -> Path:
    prefix = f"{spec.plugin}-" if spec.plugin else ""
    return log_dir / f"mcp-client-{prefix}{spec.name}.log"


def _parameters(target: StdioTarget) -> StdioServerParameters:
    return StdioServerParameters(
        command=target.command,
        args=list(target.args),
        env=dict(target.env) or None,
        cwd=target.cwd,
    )


def _stderr_log(spec: ServerSpec, stack: AsyncExitStack, log_dir: Path) -> TextIO:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = stack.enter_context(stderr_log_path(log_dir, spec).open("a", encoding="utf-8"))
    return log


def _sse(
    target: HttpTarget, auth: httpx2.Auth | None
) -> AbstractAsyncContextManager[TransportStreams]:
    return sse_client(
        target.url,
        headers=dict(target.headers),
        timeout=CONNECT_TIMEOUT_S,
        sse_read_timeout=READ_TIMEOUT_S,
        auth=auth,
    )


def _http_client(
    target: HttpTarget, auth: httpx2.Auth | None, not_taken: NotTaken
) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        headers=dict(target.headers),
        auth=auth,
        transport=_Observed(not_taken),
        timeout=httpx2.Timeout(CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
    )
