"""``AtriumServer``: an MCP server as Atrium hosts it; the SDK's ``MCPServer`` with hosting rules.

Tools, resources and prompts are declared with the SDK's own decorators, which already do what
a server author needs: ``@server.tool(annotations=ToolAnnotations(...), icons=[Icon(...)])``
derives the input schema from the type hints and the output schema from the return type
(``Annotated[CallToolResult, Model]`` for a tool that builds its own result, as an error result
with structured content must); ``@server.resource("scheme://{name}", mime_type=...)`` and
``@server.prompt()`` likewise. Raising ``ToolError`` from a tool gives the caller an
``isError`` result with the message. Reimplementing any of that would only drift from the SDK.

What this class adds is what hosting needs: a name the registry accepts (the same rule as
``services/mcp/*.yaml``), because the name is the server's identity in logs, ``/health`` and
``serverInfo``; a version, required because ``/health`` reports it to the supervisor; and
resumable streams for ``initialize``-era clients (``event_store``: event ids, a ``retry`` hint,
replay after ``Last-Event-ID``), so a tool may close its stream while it works
(``ctx.close_sse_stream()``) and a client that lost its connection misses nothing. Long tools
can also run as tasks (``atrium.servers.tasks``). The HTTP app is built by
``atrium.servers.app``, the process is run by ``atrium.servers.runner``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import EventStore
from mcp.types import Icon
from starlette.applications import Starlette

from atrium.registry.schema import SERVER_NAME
from atrium.servers.event_store import RETRY_MS, MemoryEventStore, SessionScopes

StateT = TypeVar("StateT")

Lifespan = Callable[[MCPServer[StateT]], AbstractAsyncContextManager[StateT]]
"""Opens what the tools share (a store, a client) and yields it; tools read it as
``ctx.request_context.lifespan_context``. Entered once per process, when the app starts."""


class AtriumServer(MCPServer[StateT]):
    """An MCP server with a registry-valid ``name`` and a ``version``.

    ``StateT`` is what ``lifespan`` yields (a ``dict`` when there is no lifespan).
    """

    def __init__(
        self,
        name: str,
        *,
        version: str,
        title: str | None = None,
        description: str | None = None,
        instructions: str | None = None,
        website_url: str | None = None,
        icons: list[Icon] | None = None,
        lifespan: Lifespan[StateT] | None = None,
        **options: Any,
    ) -> None:
        """``options`` go to ``MCPServer`` unchanged (``resource_security``, ``middleware``...)."""
        if not SERVER_NAME.match(name):
            raise ValueError(
                f"server name {name!r} must be lowercase letters, digits and '-' (at most 64),"
                " starting and ending with a letter or digit, as in services/mcp/*.yaml"
            )
        if not version:
            raise ValueError("version must not be empty: /health and serverInfo report it")
        super().__init__(
            name,
            title=title,
            description=description,
            instructions=instructions,
            website_url=website_url,
            icons=icons,
            version=version,
            lifespan=lifespan,
            **options,
        )

    def streamable_http_app(
        self,
        *,
        event_store: EventStore | None = None,
        retry_interval: int | None = RETRY_MS,
        **options: Any,
    ) -> Starlette:
        """The SDK's app, resumable: without an ``event_store``, a ``MemoryEventStore`` of
        its own; a memory store keeps each session's events apart (``SessionScopes``).
        ``options`` go to the SDK."""
        store = MemoryEventStore() if event_store is None else event_store
        app = super().streamable_http_app(
            event_store=store, retry_interval=retry_interval, **options
        )
        if isinstance(store, MemoryEventStore):
            app.add_middleware(SessionScopes, store=store)
        return app
