"""One server's connection: opened, watched, reconnected, and its tools kept current.

The SDK client lives in a task of its own (``_hold``): anyio ties a transport's task group to
the task that entered it, so the task that opens a connection is the one that closes it,
whichever task calls through it meanwhile.

A dropped connection (a stdio child that exited, a refused or reset HTTP connection, a 404 on an
expired session) is noticed before the next request when the transport has already closed, and
opened again then, with backoff: after ``n`` failed attempts in a row, none before
``min(0.5 * 2**n, 30)`` seconds. A request that fails because the connection dropped is sent
once more on a new connection only when that is safe: it never reached the server, or the tool
says it is idempotent (``idempotentHint``) or read-only. A tool that is neither never runs twice.

Tool lists are fetched on first use and again after the server says they changed:
``notifications/tools/list_changed`` on an ``initialize``-era session, a ``subscriptions/listen``
stream on a 2026-07-28 one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

import httpx2
import mcp_types as types
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from atrium.__about__ import __version__
from atrium.client.mcpjson import ServerSpec
from atrium.client.transports import CONNECT_TIMEOUT_S, NotTaken, Watched, open_transport
from atrium.errors import AtriumError

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 120.0
_BACKOFF_BASE_S = 0.5
_BACKOFF_MAX_S = 30.0
_CLIENT_INFO = types.Implementation(name="atrium-client", version=__version__)


class LinkDown(AtriumError):
    """The server cannot be reached now; the message says why and when it is tried again."""


class Link:
    """The connection to one server (see the module docstring)."""

    def __init__(
        self,
        spec: ServerSpec,
        *,
        log_dir: Path,
        auth: httpx2.Auth | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        call_timeout_s: float = CALL_TIMEOUT_S,
        on_tools_changed: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self.error: str | None = None
        self._log_dir, self._auth = log_dir, auth
        self._connect_timeout_s, self._call_timeout_s = connect_timeout_s, call_timeout_s
        self._on_tools_changed = on_tools_changed
        self._client: Client | None = None
        self._watched: Watched | None = None
        self._holder: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._failures, self._retry_at = 0, 0.0
        self._not_taken = NotTaken()
        self._tools: list[types.Tool] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def connected(self) -> bool:
        watched = self._watched
        return self._client is not None and watched is not None and not watched.closed.is_set()

    async def connect(self) -> Client:
        """The open client, connecting (or reconnecting) first when needed; ``LinkDown`` if not."""
        async with self._lock:
            if self.connected:
                assert self._client is not None
                return self._client
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise LinkDown(
                    f"server '{self.name}' is down ({self.error}); next try in {wait:.1f} s"
                )
            await self._release()
            try:
                client = await self._open()
            except Exception as exc:  # noqa: BLE001 (any failure to open is this server's, reported)
                self._failed(_reason(exc))
                raise LinkDown(f"server '{self.name}' cannot be reached: {self.error}") from None
            self._failures, self.error, self._tools = 0, None, None
            return client

    @property
    def tools_stale(self) -> bool:
        """The tools are to be listed (again): never listed, changed, or the server was down and
        may be tried again now."""
        return self._tools is None and (self.connected or time.monotonic() >= self._retry_at)

    def known_tools(self) -> list[types.Tool]:
        """The tools as last listed; none while the server is down."""
        return self._tools or []

    async def tools(self) -> list[types.Tool]:
        """Every tool of the server (all pages), fetched again once the server says they changed."""
        client = await self.connect()
        if self._tools is None:
            tools: list[types.Tool] = []
            cursor: str | None = None
            while True:
                page = await client.list_tools(cursor=cursor, cache_mode="bypass")
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            self._tools = tools
        return self._tools

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        retry_safe: bool,
        meta: dict[str, Any] | None = None,
    ) -> types.CallToolResult:
        """``tools/call``, sent once more on a new connection only when that is safe."""
        for attempt in (1, 2):
            client = await self.connect()
            not_taken_before = self._not_taken.count
            try:
                return await client.call_tool(
                    name,
                    arguments,
                    read_timeout_seconds=self._call_timeout_s,
                    meta=cast("types.RequestParamsMeta", meta) if meta else None,
                )
            except MCPError as exc:
                never_sent = self._not_taken.count > not_taken_before
                drop = "never taken" if never_sent else _dropped(exc)
                if drop is None:
                    raise
                never_sent = never_sent or drop == "never sent"
                self._lost(drop)
                if attempt == 2 or not (never_sent or retry_safe):
                    raise LinkDown(
                        f"server '{self.name}': the connection dropped during the call ({drop});"
                        " it may have run, and is not sent again (the tool is not idempotent)"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def list_resources(self, cursor: str | None) -> types.ListResourcesResult:
        """A page of the server's resources; none when it offers no resources."""
        client = await self.connect()
        if client.server_capabilities.resources is None:
            return types.ListResourcesResult(resources=[])
        return await client.list_resources(cursor=cursor)

    async def read_resource(self, uri: str) -> types.ReadResourceResult:
        client = await self.connect()
        return await client.read_resource(uri)

    async def close(self) -> None:
        async with self._lock:
            await self._release()

    async def _open(self) -> Client:
        self._stop = asyncio.Event()
        ready: asyncio.Future[tuple[Client, Watched]] = asyncio.get_running_loop().create_future()
        self._holder = asyncio.create_task(self._hold(ready), name=f"mcp-client-{self.name}")
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                client, watched = await asyncio.shield(ready)
        except TimeoutError:
            await self._release()
            raise TimeoutError(f"no answer within {self._connect_timeout_s:g} s") from None
        except BaseException:
            await self._release()
            raise
        self._client, self._watched = client, watched
        return client

    async def _hold(self, ready: asyncio.Future[tuple[Client, Watched]]) -> None:
        """Open the client, hand it over, keep it open until told to stop; all in this task."""
        try:
            async with AsyncExitStack() as stack:
                transport, mode = await open_transport(
                    self.spec,
                    stack,
                    log_dir=self._log_dir,
                    auth=self._auth,
                    not_taken=self._not_taken,
                )
                client = Client(
                    transport,
                    mode=mode,
                    client_info=_CLIENT_INFO,
                    message_handler=self._on_message,
                )
                await stack.enter_async_context(client)
                ready.set_result((client, transport))
                await self._follow_tool_changes(client)
        except Exception as exc:  # noqa: BLE001 (reported to the caller waiting, or logged)
            if not ready.done():
                ready.set_exception(exc)
            else:
                logger.info("server %s: connection ended: %s", self.name, _reason(exc))
        finally:
            if not ready.done():
                ready.cancel()

    async def _follow_tool_changes(self, client: Client) -> None:
        """Until told to stop: on a 2026-07-28 session, listen for tool list changes."""
        tools = client.server_capabilities.tools
        if client.protocol_version >= "2026-07-28" and tools is not None and tools.list_changed:
            with contextlib.suppress(Exception):
                async with client.listen(tools_list_changed=True) as subscription:
                    stopped = asyncio.ensure_future(self._stop.wait())
                    try:
                        async for _event in _until(subscription, stopped):
                            self._tools_changed()
                    finally:
                        stopped.cancel()
        await self._stop.wait()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._tools_changed()

    def _tools_changed(self) -> None:
        self._tools = None
        if self._on_tools_changed is not None:
            self._on_tools_changed()

    def _lost(self, reason: str) -> None:
        logger.info("server %s: connection lost (%s); reconnecting", self.name, reason)
        self.error = reason
        if self._watched is not None:
            self._watched.closed.set()  # the next request reconnects first

    def _failed(self, reason: str) -> None:
        self.error = reason
        delay = min(_BACKOFF_BASE_S * 2**self._failures, _BACKOFF_MAX_S)
        self._failures += 1
        self._retry_at = time.monotonic() + delay

    async def _release(self) -> None:
        self._client, self._watched, self._tools = None, None, None
        holder, self._holder = self._holder, None
        if holder is None:
            return
        self._stop.set()
        try:
            async with asyncio.timeout(5):
                await holder
        except (TimeoutError, asyncio.CancelledError):
            holder.cancel()
            with contextlib.suppress(BaseException):
                await holder


async def _until(subscription: Any, stopped: asyncio.Future[Any]) -> AsyncIterator[Any]:
    """The subscription's events until ``stopped`` completes."""
    iterator = subscription.__aiter__()
    while True:
        following = asyncio.ensure_future(iterator.__anext__())
        done, _ = await asyncio.wait({following, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if following not in done:
            following.cancel()
            return
        try:
            yield following.result()
        except StopAsyncIteration:
            return


def _dropped(exc: MCPError) -> str | None:
    """Why a request failed when the connection under it went away; ``None`` otherwise.

    The SDK says "Connection closed" (-32000) for a transport that ended, and "Session
    terminated" for a 404 on the session: the server did not take the request.
    """
    if exc.code == types.CONNECTION_CLOSED and exc.message == "Connection closed":
        return "connection closed"
    if exc.code == types.INVALID_REQUEST and exc.message == "Session terminated":
        return "never sent"
    return None


def _reason(exc: BaseException) -> str:
    """One line for what stopped a connection: the innermost errors, not the task groups."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_reason(inner) for inner in exc.exceptions)
    text = str(exc) or exc.__class__.__name__
    if isinstance(exc, httpx2.ConnectError):
        return f"connection refused or unreachable ({text})"
    if isinstance(exc, FileNotFoundError | PermissionError):
        return f"cannot start the command: {text}"
    return text
