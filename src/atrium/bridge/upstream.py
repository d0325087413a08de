"""The bridge's one client connection to the child, and how a downstream request is forwarded.

One SDK ``ClientSession`` runs the ``initialize`` handshake with the child once, at start, and
receives its notifications. Requests are forwarded on the session's ``JSONRPCDispatcher`` as raw
JSON-RPC (method, params, result dict) rather than through the typed ``ClientSession`` methods:
those validate results for the bridge's own protocol version and against each tool's output
schema, and may add requests of their own (``tools/list`` before a first ``tools/call``). A
proxy passes the child's answer through untouched; the downstream side of the SDK shapes it for
the version each client negotiated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext

logger = logging.getLogger(__name__)

# Keys of `_meta` that belong to the downstream connection, never to the child's: the 2026-07-28
# request envelope (spec 2026-07-28 basic/index "Per-request protocol fields": the reserved
# `io.modelcontextprotocol/` prefix) and the progress token, which the dispatcher replaces with
# one of its own and maps back (spec 2025-11-25 basic/utilities/progress).
RESERVED_META_PREFIX = "io.modelcontextprotocol/"
PROGRESS_TOKEN = "progressToken"


def upstream_params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The downstream request's params as the child must see them.

    A child built on a dual-era SDK refuses a request that carries the 2026-07-28 envelope on
    its handshake-era connection, so the envelope keys are dropped; other `_meta` keys (a
    tracing context, vendor data) pass through.
    """
    if not params:
        return None
    forwarded = dict(params)
    meta = forwarded.pop("_meta", None)
    if isinstance(meta, Mapping):
        kept = {
            key: value
            for key, value in meta.items()
            if key != PROGRESS_TOKEN and not str(key).startswith(RESERVED_META_PREFIX)
        }
        if kept:
            forwarded["_meta"] = kept
    return forwarded or None


class Upstream:
    """Sends requests to the child over the session's dispatcher and returns its raw results."""

    def __init__(self, dispatcher: JSONRPCDispatcher[TransportContext]) -> None:
        self._dispatcher = dispatcher

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        *,
        on_progress: ProgressFnT | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """The child's result; its JSON-RPC error is raised as ``MCPError``, code unchanged."""
        opts: CallOptions = {}
        if on_progress is not None:
            opts["on_progress"] = on_progress
        if timeout_s is not None:
            opts["timeout"] = timeout_s
        return await self._dispatcher.send_raw_request(method, params, opts)


class ResourceSubscriptions:
    """The child's resource subscriptions, shared by every downstream subscriber of a URI.

    The child sees one ``resources/subscribe`` when a URI gets its first subscriber and one
    ``resources/unsubscribe`` when it loses its last (spec 2025-11-25 server/resources
    #subscriptions), whether the subscribers are handshake-era sessions or 2026-07-28
    ``subscriptions/listen`` streams.
    """

    CALL_TIMEOUT_S = 30.0

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._counts: dict[str, int] = {}
        self._lock = anyio.Lock()

    async def acquire(self, uri: str) -> None:
        """Count one more subscriber; raise ``MCPError`` if the child refuses the first."""
        async with self._lock:
            if uri not in self._counts:
                await self._upstream.request(
                    "resources/subscribe", {"uri": uri}, timeout_s=self.CALL_TIMEOUT_S
                )
                self._counts[uri] = 0
            self._counts[uri] += 1

    async def release(self, uri: str) -> None:
        """Count one subscriber fewer; never raises (it runs while connections close)."""
        async with self._lock:
            left = self._counts.get(uri, 0) - 1
            if left > 0:
                self._counts[uri] = left
                return
            self._counts.pop(uri, None)
            try:
                await self._upstream.request(
                    "resources/unsubscribe", {"uri": uri}, timeout_s=self.CALL_TIMEOUT_S
                )
            except MCPError as exc:
                # The child may be gone; an unsubscribe it never sees costs nothing.
                logger.debug("unsubscribing %s from the child failed: %s", uri, exc)
