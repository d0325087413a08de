"""Resources, a resource template, subscriptions, and completion of template arguments.

``server/resources`` (2025-11-25 and 2026-07-28): a text and a binary resource, the template
``test://template/{id}/data``, and ``test://watched-resource`` to subscribe to. Reading a URI
that names nothing is the JSON-RPC error -32602 with the URI in ``data`` (SEP-2164); the SDK
answers so for a ``ResourceNotFoundError``.

``resources/subscribe`` and ``resources/unsubscribe`` exist only in the ``initialize`` era: in
2026-07-28 a client listens with ``subscriptions/listen`` instead, which the SDK serves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mcp.server import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from atrium_everything.media import PNG_MIME_TYPE, red_pixel_png

STATIC_TEXT = "This is the content of the static text resource."
WATCHED_URI = "test://watched-resource"
TEMPLATE_URI = "test://template/{id}/data"


@dataclass
class Subscriptions:
    """The URIs clients subscribed to with ``resources/subscribe``, in this process."""

    uris: set[str] = field(default_factory=set)

    async def subscribe(
        self, _ctx: ServerRequestContext[Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        self.uris.add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(
        self, _ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        self.uris.discard(str(params.uri))
        return EmptyResult()


def add_resources(server: MCPServer[Any]) -> None:
    """Register the resources of the ``resources-*`` scenarios on ``server``."""

    @server.resource("test://static-text", mime_type="text/plain", description="A fixed text.")
    def static_text() -> str:
        return STATIC_TEXT

    @server.resource(
        "test://static-binary", mime_type=PNG_MIME_TYPE, description="A 1x1 PNG image."
    )
    def static_binary() -> bytes:
        return red_pixel_png()

    @server.resource(
        TEMPLATE_URI,
        mime_type="application/json",
        description="JSON data for the id in the URI.",
    )
    def template_data(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @server.resource(WATCHED_URI, mime_type="text/plain", description="A resource to subscribe to.")
    def watched() -> str:
        return "Watched resource content"
