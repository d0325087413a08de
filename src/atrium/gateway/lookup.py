"""Looking up a tool the gateway has not seen listed, before its annotations decide.

What anonymous and read-only callers may call depends on ``readOnlyHint`` (``access``), which
the gateway learns from the ``tools/list`` answers passing through. A client may call a tool
without listing first (a script, a one-shot POST): such a tool is looked up on the backend, as
that caller, before it is judged. Callers arriving meanwhile wait for the same answer, and a
server is asked at most once per ``INTERVAL_S``, so callers naming made-up tools cost no more.
Without an answer the tool stays unknown, so not read-only: refusing is the safe way to be
wrong.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from atrium.gateway import backend_rpc
from atrium.gateway.access import ToolAccess, ToolCatalog
from atrium.gateway.directory import ServerRoute
from atrium.gateway.errors import GatewayError
from atrium.gateway.jsonrpc import Inbound
from atrium.gateway.upstream import Upstreams

logger = logging.getLogger(__name__)

INTERVAL_S = 10.0

Identity = Callable[[], Mapping[str, str]]


class ToolLookup:
    def __init__(self, catalog: ToolCatalog, upstreams: Upstreams) -> None:
        self.catalog = catalog
        self.upstreams = upstreams
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._asked_at: dict[str, float] = {}

    async def learn_unknown(
        self, route: ServerRoute, access: ToolAccess, inbound: Inbound, identity: Identity
    ) -> None:
        """Learn the tools of ``route`` if a call of ``inbound`` names one whose verdict
        depends on annotations the gateway has not seen."""
        if access.open or not any(
            call.method == "tools/call"
            and call.tool is not None
            and route.policy.permits(call.tool)  # a denied tool is refused whatever it does
            and not self.catalog.knows(route.name, call.tool)
            and access.verdict(call.tool) != "ok"
            for call in inbound.calls
        ):
            return
        await self._ask(route, identity)

    async def _ask(self, route: ServerRoute, identity: Identity) -> None:
        pending = self._pending.get(route.name)
        if pending is None or pending.done():
            if not self._may_ask(route.name):
                return
            pending = asyncio.ensure_future(self._look_up(route, identity))
            self._pending[route.name] = pending
        # One caller leaving cancels nothing for the others.
        await asyncio.shield(pending)

    async def learn_named(
        self, route: ServerRoute, tools: Iterable[str], identity: Identity
    ) -> None:
        """Learn the tools of ``route`` if it never listed one of ``tools`` (a one-shot call
        names a tool before any listing: its ``Mcp-Param-*`` headers come from its schema)."""
        if all(self.catalog.knows(route.name, tool) for tool in tools):
            return
        await self._ask(route, identity)

    def forget(self) -> None:
        self._asked_at.clear()

    def _may_ask(self, server: str) -> bool:
        now = time.monotonic()
        if now - self._asked_at.get(server, -INTERVAL_S) < INTERVAL_S:
            return False
        self._asked_at[server] = now
        return True

    async def _look_up(self, route: ServerRoute, identity: Identity) -> None:
        try:
            tools = await backend_rpc.list_tools(self.upstreams, route, identity)
        except GatewayError as error:
            logger.info("could not list the tools of %s: %s", route.name, error.message)
            return
        self.catalog.learn(route.name, tools)
