"""The gateway's own requests to a backend for one-shot calls (``oneshot``): one POST and its
answer, and the ``initialize``-era backend sessions the gateway opens itself.

A session is opened per server and caller (subject and client), since a backend may keep
per-session state for whoever opened it, and reused by that caller's later one-shot calls.
Anonymous callers are no one in particular: nothing tells two of them apart, so each of their
messages gets a session of its own, ended once answered (one kept for "anonymous" would carry
one stranger's state to the next, and let them cancel each other's calls). At
most ``MAX_SESSIONS`` are kept (least recently used goes first, ended with a ``DELETE``); one
the backend no longer knows is opened again, once, and the message
sent again — it never ran, the backend refused the session before reading it (a 404, or the
400 "no valid session ID" many servers answer instead, without an answer to the message).

A call whose caller leaves (cancelled) is followed by ``notifications/cancelled`` on its
session, so the backend stops the tool instead of finishing it for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp
import orjson

from atrium.__about__ import __version__
from atrium.gateway.cancellation import cancelled
from atrium.gateway.directory import ServerRoute
from atrium.gateway.errors import MAX_BACKEND_TEXT, GatewayError, bad_gateway, timed_out
from atrium.gateway.sse import EventRelay
from atrium.gateway.upstream import Upstreams

logger = logging.getLogger(__name__)

ACCEPT = "application/json, text/event-stream"
LEGACY_VERSION = "2025-11-25"
MAX_SESSIONS = 512
_ids = itertools.count(1)

Identity = Callable[[], Mapping[str, str]]


class SessionKey(NamedTuple):
    server: str
    upstream: str
    subject: str | None
    client_id: str | None


@dataclass(frozen=True)
class Posted:
    """The backend's answer to one POST: its status, the JSON-RPC response to the request
    (``None`` for a notification's 202, or when the answer held none), its session id, and
    when it held none, the start of its body (what a bare error said: ``errors.backend_error``)."""

    status: int
    message: dict[str, Any] | None
    session_id: str | None = None
    text: bytes = b""


@dataclass(frozen=True)
class BackendSession:
    id: str | None  # None: the backend keeps no sessions (stateless)
    version: str
    credentials: Mapping[str, str]  # the route's own (an API key a remote server needs)


async def post(
    upstreams: Upstreams,
    route: ServerRoute,
    body: bytes,
    headers: Mapping[str, str],
    upstream_id: int | None,
) -> Posted:
    """POST ``body``; the answer, read whole (JSON) or up to the response (event stream)."""
    timeout = aiohttp.ClientTimeout(total=route.config.timeout_s, connect=10)
    session = upstreams.session(route.upstream)
    try:
        async with session.post(
            route.upstream, data=body, headers=dict(headers), timeout=timeout
        ) as response:
            session_id = response.headers.get("mcp-session-id")
            if upstream_id is None or response.status == 202:
                return Posted(response.status, None, session_id)
            if response.content_type == "text/event-stream":
                message = await response_in_stream(response, upstream_id)
                return Posted(response.status, message, session_id)
            raw = await response.read()
            message = _matching(raw, upstream_id)
            text = raw[: MAX_BACKEND_TEXT + 1] if message is None else b""
            return Posted(response.status, message, session_id, text)
    except aiohttp.ClientConnectorError as exc:
        raise route.unreachable(f"cannot connect to {route.upstream}") from exc
    except TimeoutError:
        raise timed_out(route.name, route.config.timeout_s) from None
    except aiohttp.ClientError as exc:
        raise bad_gateway(route.name, exc.__class__.__name__) from None


async def response_in_stream(
    response: aiohttp.ClientResponse, upstream_id: int
) -> dict[str, Any] | None:
    """The response to ``upstream_id`` in an event stream (progress before it skipped)."""
    found: list[dict[str, Any]] = []

    def keep(message: dict[str, Any]) -> bytes | None:
        if message.get("id") == upstream_id and ("result" in message or "error" in message):
            found.append(message)
        return None

    relay = EventRelay(keep)
    async for chunk in response.content.iter_any():
        relay.feed(chunk)
        if found:
            return found[0]
    relay.feed(relay.flush() + b"\n\n")
    return found[0] if found else None


def _matching(raw: bytes, upstream_id: int) -> dict[str, Any] | None:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(document, dict) and document.get("id") == upstream_id:
        return document
    return None


class SessionPool:
    def __init__(self, upstreams: Upstreams, *, limit: int = MAX_SESSIONS) -> None:
        self.upstreams = upstreams
        self._limit = limit
        self._sessions: OrderedDict[SessionKey, asyncio.Future[BackendSession]] = OrderedDict()

    async def send(
        self,
        route: ServerRoute,
        key: SessionKey,
        body: bytes,
        upstream_id: int | None,
        identity: Identity,
    ) -> Posted:
        """``body`` (one message) on the caller's backend session, opened if need be."""
        if key.subject is None:
            return await self._once(route, body, upstream_id, identity)
        for attempt in (1, 2):
            session = await self._session(route, key, identity)
            try:
                answer = await post(
                    self.upstreams,
                    route,
                    body,
                    self._headers(route, session, identity),
                    upstream_id,
                )
            except asyncio.CancelledError:
                if upstream_id is not None:
                    self._cancel_later(route, session, upstream_id, identity)
                raise
            # 404 is the spec's answer to an unknown session; many servers answer 400 "no
            # valid session ID". Either way without an answer to the message: it never ran.
            forgotten = answer.status in (400, 404) and answer.message is None
            if forgotten and session.id is not None:
                self._drop(key)
                if attempt == 1:
                    continue
            return answer
        raise AssertionError("unreachable")

    async def _once(
        self, route: ServerRoute, body: bytes, upstream_id: int | None, identity: Identity
    ) -> Posted:
        """``body`` on a session opened for it alone, ended once it is answered."""
        session = await self._open(route, identity)
        try:
            headers = self._headers(route, session, identity)
            return await post(self.upstreams, route, body, headers, upstream_id)
        finally:
            self._end(route.upstream, session)

    def close(self) -> None:
        """Forget every session (the gateway stops; so, usually, do the backends)."""
        self._sessions.clear()

    async def _session(
        self, route: ServerRoute, key: SessionKey, identity: Identity
    ) -> BackendSession:
        opening = self._sessions.get(key)
        if opening is None or (opening.done() and _failed(opening)):
            opening = asyncio.ensure_future(self._open(route, identity))
            self._sessions[key] = opening
            while len(self._sessions) > self._limit:
                self._drop(next(iter(self._sessions)))
        self._sessions.move_to_end(key)
        try:
            return await asyncio.shield(opening)
        except GatewayError:
            self._sessions.pop(key, None)
            raise

    async def _open(self, route: ServerRoute, identity: Identity) -> BackendSession:
        upstream_id = next(_ids)
        params = {
            "protocolVersion": LEGACY_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "atrium-gateway", "version": __version__},
        }
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": upstream_id, "method": "initialize", "params": params}
        )
        headers = {
            "Content-Type": "application/json",
            "Accept": ACCEPT,
            **route.credentials,
            **identity(),
        }
        answer = await post(self.upstreams, route, body, headers, upstream_id)
        result = answer.message.get("result") if answer.message else None
        if not isinstance(result, dict):
            raise bad_gateway(route.name, f"the server did not initialize: {_why(answer)}")
        version = result.get("protocolVersion")
        version = version if isinstance(version, str) else LEGACY_VERSION
        session = BackendSession(answer.session_id, version, route.credentials)
        initialized = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await post(
            self.upstreams, route, initialized, self._headers(route, session, identity), None
        )
        return session

    def _headers(
        self, route: ServerRoute, session: BackendSession, identity: Identity
    ) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": ACCEPT,
            "MCP-Protocol-Version": session.version,
            **route.credentials,
            **identity(),
        }
        if session.id is not None:
            headers["Mcp-Session-Id"] = session.id
        return headers

    def _cancel_later(
        self, route: ServerRoute, session: BackendSession, upstream_id: int, identity: Identity
    ) -> None:
        body = cancelled(upstream_id, "the client went away")
        headers = self._headers(route, session, identity)
        task = asyncio.ensure_future(
            self._quietly(post(self.upstreams, route, body, headers, None))
        )
        _background.add(task)
        task.add_done_callback(_background.discard)

    def _drop(self, key: SessionKey) -> None:
        opening = self._sessions.pop(key, None)
        if opening is None or not opening.done() or _failed(opening):
            return
        self._end(key.upstream, opening.result())

    def _end(self, url: str, session: BackendSession) -> None:
        if session.id is None:
            return
        # Without the caller's assertion a backend that wants one refuses the DELETE; then
        # the session ends when the backend expires it, as a client's own would.
        headers = {**session.credentials, "Mcp-Session-Id": session.id}
        client = self.upstreams.session(url)
        task = asyncio.ensure_future(self._quietly(client.delete(url, headers=headers)))
        _background.add(task)
        task.add_done_callback(_background.discard)

    @staticmethod
    async def _quietly(work: Any) -> None:
        with contextlib.suppress(GatewayError, aiohttp.ClientError, OSError, TimeoutError):
            result = await work
            if isinstance(result, aiohttp.ClientResponse):
                result.release()


_background: set[asyncio.Future[None]] = set()


def _failed(opening: asyncio.Future[BackendSession]) -> bool:
    return opening.cancelled() or opening.exception() is not None


def _why(answer: Posted) -> str:
    error = answer.message.get("error") if answer.message else None
    if isinstance(error, dict):
        return str(error.get("message"))[:200]
    return f"HTTP {answer.status}"
