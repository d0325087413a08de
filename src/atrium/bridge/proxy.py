"""The downstream MCP server: a mirror of the child that forwards what its clients ask.

It carries the child's identity (``serverInfo``, ``instructions``) and the capabilities the
bridge can serve for it, and forwards each request to the child over the one upstream
connection: tools, resources, prompts, completion, ping, with pagination cursors and other
params as they came. The child's answer comes back unchanged: a JSON-RPC error keeps its code
and message, a tool result with ``isError`` stays a result. A request carrying a progress token
(spec 2025-11-25 basic/utilities/progress) gets the child's progress for its forwarded copy
re-addressed to the client's token, on the client's response stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, get_args

import mcp_types as types
from mcp.server import Server
from mcp.server.caching import CacheableMethod, CacheHint
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from atrium.bridge.notifications import Fanout
from atrium.bridge.upstream import Upstream, upstream_params

Forward = Callable[[ServerRequestContext[Any, Any], BaseModel], Awaitable[dict[str, Any]]]

# Method → (params model the SDK validates against, the child capability it needs).
FORWARDED: Mapping[str, tuple[type[BaseModel], str | None]] = {
    "ping": (types.RequestParams, None),
    "tools/list": (types.PaginatedRequestParams, "tools"),
    "tools/call": (types.CallToolRequestParams, "tools"),
    "resources/list": (types.PaginatedRequestParams, "resources"),
    "resources/templates/list": (types.PaginatedRequestParams, "resources"),
    "resources/read": (types.ReadResourceRequestParams, "resources"),
    "prompts/list": (types.PaginatedRequestParams, "prompts"),
    "prompts/get": (types.GetPromptRequestParams, "prompts"),
    "completion/complete": (types.CompleteRequestParams, "completions"),
}


def mirrored_capabilities(child: types.ServerCapabilities) -> types.ServerCapabilities:
    """The child's capabilities that the bridge forwards, flags (listChanged, subscribe) kept.

    Left out: ``tasks`` (2025-11-25 task-augmented requests and their ``tasks/*`` methods),
    ``experimental`` and ``extensions``: the bridge forwards no method of theirs, and a
    capability must not promise what the server does not answer.
    """
    return types.ServerCapabilities(
        tools=child.tools,
        prompts=child.prompts,
        resources=child.resources,
        logging=child.logging,
        completions=child.completions,
    )


class ToolSchemas:
    """Each tool's ``inputSchema`` from the listings that passed through the bridge.

    The SDK checks a 2026-07-28 ``tools/call``'s ``Mcp-Param-*`` headers against the tool's
    schema (spec 2026-07-28 basic/transports#custom-headers); without this lookup it would list
    the child's tools before every such call. An unknown tool reads as ``None``: nothing to
    check, and the child judges the call.
    """

    def __init__(self) -> None:
        self._schemas: dict[str, Mapping[str, Any]] = {}

    def get(self, name: str) -> Mapping[str, Any] | None:
        return self._schemas.get(name)

    def absorb(self, listing: Mapping[str, Any]) -> None:
        for tool in listing.get("tools") or ():
            if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                schema = tool.get("inputSchema")
                if isinstance(schema, dict):
                    self._schemas[tool["name"]] = schema

    def clear(self) -> None:
        self._schemas.clear()


class MirrorServer(Server[Any]):
    """A low-level SDK server whose capabilities are the child's (as far as forwarded)."""

    def __init__(self, child: types.InitializeResult, schemas: ToolSchemas) -> None:
        info = child.server_info
        super().__init__(
            info.name,
            version=info.version,
            title=info.title,
            description=info.description,
            instructions=child.instructions,
            website_url=info.website_url,
            icons=info.icons,
            # 2026-07-28 list results must say how long they may be cached; the child can
            # change its lists at any time, so: not at all, and never shared across callers.
            cache_hints=dict.fromkeys(get_args(CacheableMethod), CacheHint(0, "private")),
            get_tool_input_schema=schemas.get,
        )
        self.mirrored = mirrored_capabilities(child.capabilities)

    def get_capabilities(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
        *,
        protocol_version: str | None = None,
    ) -> types.ServerCapabilities:
        # The SDK derives capabilities from registered handlers and NotificationOptions; here
        # they are the child's, in both eras (initialize and server/discover).
        return self.mirrored.model_copy(deep=True)


def build_proxy(child: types.InitializeResult, upstream: Upstream, fanout: Fanout) -> MirrorServer:
    """The downstream server for ``child``, forwarding to ``upstream``."""
    schemas = ToolSchemas()
    fanout.add_tools_changed_listener(schemas.clear)
    server = MirrorServer(child, schemas)
    forward = _forwarder(upstream)

    async def list_tools(ctx: ServerRequestContext[Any, Any], params: BaseModel) -> dict[str, Any]:
        listing = await forward(ctx, params)
        schemas.absorb(listing)
        return listing

    capabilities = server.mirrored
    for method, (params_type, needs) in FORWARDED.items():
        if needs is None or getattr(capabilities, needs) is not None:
            handler = list_tools if method == "tools/list" else forward
            server.add_request_handler(method, params_type, handler)
    fanout.install(server, capabilities)
    return server


def _forwarder(upstream: Upstream) -> Forward:
    async def forward(ctx: ServerRequestContext[Any, Any], params: BaseModel) -> dict[str, Any]:
        # The raw params, not the validated model: the child gets what the client sent.
        on_progress: ProgressFnT | None = None
        if progress_token_from_params(ctx.params) is not None:
            session = ctx.session

            async def relay(progress: float, total: float | None, message: str | None) -> None:
                await session.report_progress(progress, total, message)

            on_progress = relay
        result = await upstream.request(
            ctx.method, upstream_params(ctx.params), on_progress=on_progress
        )
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            # A 2026-07-28 result must name its type (spec 2026-07-28 basic/index#resulttype);
            # a handshake-era child knows no other kind than a complete result.
            result.setdefault("resultType", "complete")
        return result

    return forward
