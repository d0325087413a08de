"""A server's tools as the signed-in user sees them, and **try it** calls, both through the
gateway like any MCP client's: the official SDK client (``atrium.client.connect``) on the
gateway's own MCP endpoint, with a five-minute token minted for the user and that one server
(client ``atrium-console``, so the audit marks the calls in-app), carrying exactly the scopes
their role grants. The gateway's policy, tool filtering, rate limits and audit apply as to any
other client; the console decides nothing about who may call what.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from atrium.auth.issuing import mint_access_token
from atrium.auth.operator import CONSOLE_CLIENT_ID
from atrium.web.session import Viewer

if TYPE_CHECKING:  # the MCP client loads with the first tool page, not with the gateway
    from atrium.client.connect import Connection
    from atrium.gateway.parts import GatewayParts

TOKEN_TTL_S = 300
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CallOutcome:
    """What a call gave: the result as sent (``content``, ``structuredContent``, ``isError``)
    and the gateway's request id, the key of its audit record."""

    result: dict[str, Any]
    request_id: str | None

    @property
    def failed(self) -> bool:
        return self.result.get("isError") is True

    @property
    def texts(self) -> list[str]:
        blocks = self.result.get("content") or []
        return [str(b.get("text")) for b in blocks if isinstance(b, dict) and "text" in b]


@asynccontextmanager
async def as_user(parts: GatewayParts, viewer: Viewer, server: str) -> AsyncIterator[Connection]:
    """An MCP client to ``server`` through the gateway, acting as ``viewer``: its token signed
    with the gateway's own keys (not read from the store for each call)."""
    settings = parts.settings
    from atrium.client.connect import connect, gateway_url

    token = mint_access_token(
        settings,
        subject=viewer.user.id,
        client_id=CONSOLE_CLIENT_ID,
        server=server,
        scopes=sorted(viewer.scopes),
        ttl_s=TOKEN_TTL_S,
        keys=parts.auth.keys,
    )
    headers = {"Authorization": f"Bearer {token}"}
    url = gateway_url(settings, server)
    async with connect(url, headers=headers, timeout_s=TIMEOUT_S, hint=None) as connection:
        yield connection


async def listed(connection: Connection) -> list[dict[str, Any]]:
    """The tools the gateway lets this caller see, as the wire has them (camelCase)."""
    result = await connection.client.list_tools()
    return [tool.model_dump(by_alias=True, exclude_none=True) for tool in result.tools]


def find(tools: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((tool for tool in tools if tool.get("name") == name), None)


async def call(connection: Connection, tool: str, arguments: dict[str, Any]) -> CallOutcome:
    result = await connection.client.call_tool(tool, arguments)
    answer = result.model_dump(by_alias=True, exclude_none=True)
    return CallOutcome(answer, connection.last_request_id)
