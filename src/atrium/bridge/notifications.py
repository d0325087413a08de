"""The child's notifications, delivered to the downstream clients that asked for them.

The child has one connection (ours), so everything it announces is connection-wide: list
changes, resource updates, log messages. Downstream there are many clients in two eras:

- Handshake era (2024-11-05 … 2025-11-25): each session has a standalone stream (the GET SSE
  stream of Streamable HTTP, spec 2025-11-25 basic/transports#listening-for-messages-from-the-
  server). A session's pump, started by its ``notifications/initialized``, writes there: list
  changes to all, ``resources/updated`` to the sessions subscribed to that URI, log messages at
  or above the level the session set. The pump runs as long as the session does, so it also
  tells us when the session is gone.
- 2026-07-28: change notifications ride ``subscriptions/listen`` streams only (spec 2026-07-28
  basic/utilities/subscriptions), so they are published on the SDK's subscription bus, which
  the SDK's ``ListenHandler`` filters per stream. Log messages are a per-request opt-in there,
  riding that request's response; a connection-wide message of the child has no such request,
  so it is not delivered in this era (it is logged here at debug level).

Resource subscriptions of both eras share the child's subscriptions by reference count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client.session import IncomingMessage
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel
from starlette.requests import Request

from atrium.bridge.upstream import ResourceSubscriptions, Upstream

logger = logging.getLogger(__name__)

# RFC 5424 severities, least severe first, as the spec lists them (2025-11-25 server/utilities/
# logging#log-levels).
SEVERITIES: tuple[types.LoggingLevel, ...] = get_args(types.LoggingLevel)

# Notifications are advisory (a client refetches after a list change), so a session that stops
# reading loses the newest ones rather than holding up everyone else.
SESSION_BACKLOG = 256

_EVENTS: dict[type[BaseModel], ServerEvent] = {
    types.ToolListChangedNotification: ToolsListChanged(),
    types.PromptListChangedNotification: PromptsListChanged(),
    types.ResourceListChangedNotification: ResourcesListChanged(),
}


@dataclass
class _Session:
    """What one handshake-era downstream session asked for, and its notification backlog."""

    send: MemoryObjectSendStream[types.ServerNotification]
    receive: MemoryObjectReceiveStream[types.ServerNotification]
    uris: set[str] = field(default_factory=set)
    level: types.LoggingLevel | None = None
    pumping: bool = False

    def wants_log(self, level: types.LoggingLevel) -> bool:
        # Without logging/setLevel the server chooses what to send (2025-11-25 logging).
        return self.level is None or SEVERITIES.index(level) >= SEVERITIES.index(self.level)


class Fanout:
    """Routes the child's notifications; serves subscribe, setLevel and listen downstream."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._resources = ResourceSubscriptions(upstream)
        self._tools_changed_listeners: list[Callable[[], None]] = []
        self._sessions: dict[str, _Session] = {}
        self._child_level: types.LoggingLevel | None = None
        self._child_subscribes = False
        self.bus = InMemorySubscriptionBus()
        self._listen = ListenHandler(self.bus)

    def add_tools_changed_listener(self, listener: Callable[[], None]) -> None:
        self._tools_changed_listeners.append(listener)

    def install(self, server: Server[Any], capabilities: types.ServerCapabilities) -> None:
        """Register the handlers the child's capabilities call for on the downstream server."""
        server.add_notification_handler(
            "notifications/initialized", types.NotificationParams, self._pump
        )
        resources = capabilities.resources
        subscribe = self._child_subscribes = bool(resources and resources.subscribe)
        if subscribe:
            server.add_request_handler(
                "resources/subscribe", types.SubscribeRequestParams, self._subscribe
            )
            server.add_request_handler(
                "resources/unsubscribe", types.UnsubscribeRequestParams, self._unsubscribe
            )
        if capabilities.logging is not None:
            server.add_request_handler(
                "logging/setLevel", types.SetLevelRequestParams, self._set_level
            )
        changes = [capabilities.tools, capabilities.prompts, resources]
        if subscribe or any(c is not None and c.list_changed for c in changes):
            server.add_request_handler(
                "subscriptions/listen", types.SubscriptionsListenRequestParams, self._listen_to
            )

    async def on_child_message(self, message: IncomingMessage) -> None:
        """The upstream session's message handler: one notification (or fault) of the child."""
        if isinstance(message, Exception):
            logger.warning("the child sent something that is not MCP: %s", message)
            return
        event = _EVENTS.get(type(message))
        if isinstance(message, types.ToolListChangedNotification):
            for listener in self._tools_changed_listeners:
                listener()
        if event is not None:
            await self.bus.publish(event)
            self._deliver(message, lambda session: True)
        elif isinstance(message, types.ResourceUpdatedNotification):
            uri = message.params.uri
            await self.bus.publish(ResourceUpdated(uri=uri))
            self._deliver(message, lambda session: uri in session.uris)
        elif isinstance(message, types.LoggingMessageNotification):
            level = message.params.level
            logger.debug("child log (%s): %s", level, message.params.data)
            self._deliver(message, lambda session: session.wants_log(level))

    def _deliver(
        self, notification: types.ServerNotification, wanted: Callable[[_Session], bool]
    ) -> None:
        for session_id, session in list(self._sessions.items()):
            if not wanted(session):
                continue
            try:
                session.send.send_nowait(notification)
            except anyio.WouldBlock:
                logger.warning(
                    "session %.8s is not reading its stream; dropped %s",
                    session_id,
                    notification.method,
                )
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the session is closing; its pump removes it

    def _session(self, ctx: ServerRequestContext[Any, Any]) -> _Session | None:
        """The handshake-era session this request belongs to (created on first sight)."""
        request = ctx.request
        if not isinstance(request, Request):
            return None
        session_id = request.headers.get(MCP_SESSION_ID_HEADER)
        if session_id is None:
            return None
        if session_id not in self._sessions:
            send, receive = anyio.create_memory_object_stream[types.ServerNotification](
                SESSION_BACKLOG
            )
            self._sessions[session_id] = _Session(send, receive)
        return self._sessions[session_id]

    async def _pump(self, ctx: ServerRequestContext[Any, Any], _: types.NotificationParams) -> None:
        """Write the session's notifications to its standalone stream until it closes.

        Runs as the handler of ``notifications/initialized``: the SDK runs a notification
        handler in the session's own task group, which is cancelled when the session ends
        (DELETE, idle timeout, shutdown), so the ``finally`` below is the session's end.
        """
        session = self._session(ctx)
        if session is None or session.pumping:
            return
        session.pumping = True
        try:
            async for notification in session.receive:
                await ctx.session.send_notification(notification)
        finally:
            with anyio.CancelScope(shield=True):
                await self._forget(session)

    async def _forget(self, session: _Session) -> None:
        for session_id, known in list(self._sessions.items()):
            if known is session:
                del self._sessions[session_id]
        session.send.close()
        session.receive.close()
        for uri in session.uris:
            await self._resources.release(uri)

    async def _subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
    ) -> dict[str, Any]:
        session = self._require_session(ctx, "resources/subscribe")
        if params.uri not in session.uris:
            await self._resources.acquire(params.uri)
            session.uris.add(params.uri)
        return {}

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> dict[str, Any]:
        session = self._require_session(ctx, "resources/unsubscribe")
        if params.uri in session.uris:
            session.uris.discard(params.uri)
            await self._resources.release(params.uri)
        return {}

    def _require_session(self, ctx: ServerRequestContext[Any, Any], method: str) -> _Session:
        session = self._session(ctx)
        if session is None:
            raise MCPError(
                types.INVALID_REQUEST, f"{method} needs a session (an Mcp-Session-Id header)"
            )
        return session

    async def _set_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> dict[str, Any]:
        """Record the session's level; the child logs at the most verbose level any asked for."""
        session = self._session(ctx)
        if session is not None:
            session.level = params.level
        levels = [s.level for s in self._sessions.values() if s.level is not None]
        wanted = min([params.level, *levels], key=SEVERITIES.index)
        if wanted != self._child_level:
            await self._upstream.request("logging/setLevel", {"level": wanted})
            self._child_level = wanted
        return {}

    async def _listen_to(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """Serve one 2026-07-28 listen stream, holding its resource URIs on the child meanwhile."""
        # Without the child's support no update will come; the stream still gets list changes.
        wanted = params.notifications.resource_subscriptions if self._child_subscribes else None
        uris = dict.fromkeys(wanted or ())
        held: list[str] = []
        try:
            for uri in uris:
                await self._resources.acquire(uri)
                held.append(uri)
            return await self._listen(ctx, params)
        finally:
            with anyio.CancelScope(shield=True):
                for uri in held:
                    await self._resources.release(uri)
