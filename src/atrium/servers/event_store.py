"""Resumable SSE streams for ``initialize``-era sessions: the events a client missed, replayed.

MCP 2025-11-25, Streamable HTTP, "Resumability and Redelivery" (SEP-1699): a server gives each
SSE event an ``id``, opens each POST stream with a priming event (an id and empty data) carrying
a ``retry`` hint, and may close a stream while its request goes on; the client reconnects with
``GET`` and ``Last-Event-ID`` and gets every later event of that stream, each exactly once. The
SDK's transport does the protocol; this module keeps the events (``MemoryEventStore``).

The SDK hands one store to every session of a server, and names streams by what only one
session knows them by (the JSON-RPC id of their request, ``_GET_stream`` for the standalone
stream): two clients both have a stream ``1``. Events are therefore kept per session, found
through ``SessionScopes``, an ASGI middleware that tells the store which session a request
belongs to (a ``ContextVar``, which the session's own tasks inherit from the request that
opened it). A ``Last-Event-ID`` of another session finds nothing, whatever its value; event ids
are random besides, so none can be guessed.

Bounded: at most ``max_events`` events over all sessions (the oldest go first) and
``max_sessions`` sessions remembered. A client that was away long enough to miss an evicted
event gets what is left after it, or nothing when its own last event is gone.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from contextvars import ContextVar
from dataclasses import dataclass, field

from mcp.server.streamable_http import (
    MCP_SESSION_ID_HEADER,
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    StreamId,
)
from mcp.types import JSONRPCMessage
from starlette.types import ASGIApp, Message, Receive, Scope, Send

RETRY_MS = 1000
"""The ``retry`` of priming events: how long a client waits before reconnecting (the SDK
client's own default when a server gives none)."""

MAX_EVENTS = 10_000
MAX_SESSIONS = 10_000
_SESSION_HEADER = MCP_SESSION_ID_HEADER.lower().encode("latin-1")


class SessionScope:
    """The events of one session (identity is the key: two scopes are never equal)."""


_current: ContextVar[SessionScope | None] = ContextVar("atrium_event_scope", default=None)
_UNSCOPED = SessionScope()  # a store used without SessionScopes: one shared scope


@dataclass
class _Event:
    id: EventId
    scope: SessionScope
    stream: StreamId
    message: JSONRPCMessage | None  # None: a priming event, never replayed


@dataclass
class MemoryEventStore(EventStore):
    """The SDK's ``EventStore``, in memory, per session, bounded."""

    max_events: int = MAX_EVENTS
    _events: OrderedDict[EventId, _Event] = field(default_factory=OrderedDict)
    _streams: dict[tuple[SessionScope, StreamId], deque[EventId]] = field(default_factory=dict)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        scope = _current.get() or _UNSCOPED
        event = _Event(secrets.token_urlsafe(12), scope, stream_id, message)
        self._events[event.id] = event
        self._streams.setdefault((scope, stream_id), deque()).append(event.id)
        while len(self._events) > self.max_events:
            self._evict()
        return event.id

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        """Send the events of ``last_event_id``'s stream that came after it, in order; events
        stored while this runs are sent too. ``None`` when the id is not this session's."""
        last = self._events.get(last_event_id)
        if last is None or last.scope is not (_current.get() or _UNSCOPED):
            return None
        key, after, position = (last.scope, last.stream), last_event_id, 0
        while (ids := self._streams.get(key)) is not None:
            # Evictions (from the left) may run while a send awaits: find our place again.
            if not (0 < position <= len(ids) and ids[position - 1] == after):
                position = ids.index(after) + 1 if after in self._events else 0
            if position >= len(ids):
                break
            event = self._events[ids[position]]
            after, position = event.id, position + 1
            if event.message is not None:
                await send_callback(EventMessage(event.message, event.id))
        return last.stream

    def forget(self, scope: SessionScope) -> None:
        """Drop a finished session's events."""
        for key in [key for key in self._streams if key[0] is scope]:
            for event_id in self._streams.pop(key):
                self._events.pop(event_id, None)

    def _evict(self) -> None:
        _, oldest = self._events.popitem(last=False)
        key = (oldest.scope, oldest.stream)
        ids = self._streams[key]
        ids.popleft()  # a stream's events are evicted in the order they were stored
        if not ids:
            del self._streams[key]


class SessionScopes:
    """ASGI middleware: each request's events go to (and replay from) its own session.

    A request without ``Mcp-Session-Id`` gets a new scope, which becomes its session's when the
    response names one (the ``initialize`` answer); the session's tasks, started while that
    request runs, inherit it. A request naming a session gets that session's scope, or a new,
    empty one for an id never seen (the SDK answers it 404). A ``DELETE`` that ends a session
    drops its events.
    """

    def __init__(
        self, app: ASGIApp, store: MemoryEventStore, *, max_sessions: int = MAX_SESSIONS
    ) -> None:
        self.app = app
        self.store = store
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[bytes, SessionScope] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        named = next((v for k, v in scope["headers"] if k == _SESSION_HEADER), None)
        current = (self._sessions.get(named) if named is not None else None) or SessionScope()
        token = _current.set(current)
        try:
            await self.app(scope, receive, self._watch(scope["method"], send, named, current))
        finally:
            _current.reset(token)

    def _watch(self, method: str, send: Send, named: bytes | None, current: SessionScope) -> Send:
        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._note(method, message, named, current)
            await send(message)

        return watched

    def _note(
        self, method: str, start: Message, named: bytes | None, current: SessionScope
    ) -> None:
        if named is None:
            opened = next((v for k, v in start["headers"] if k.lower() == _SESSION_HEADER), None)
            if opened is not None and start["status"] < 300:
                self._remember(opened, current)
        elif method == "DELETE" and start["status"] < 300 and named in self._sessions:
            self.store.forget(self._sessions.pop(named))

    def _remember(self, session_id: bytes, scope: SessionScope) -> None:
        self._sessions[session_id] = scope
        while len(self._sessions) > self.max_sessions:
            _, gone = self._sessions.popitem(last=False)
            self.store.forget(gone)
