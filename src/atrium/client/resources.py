"""Resources as tools (seed 004): ``list_mcp_resources`` and ``read_mcp_resource`` across every
connected server.

``list_mcp_resources`` takes an optional ``server`` and ``cursor``. Without a server it pages
through the servers one after another, in name order; the cursor it returns is opaque to the
model and names both the server and that server's own cursor, so a model passes it back as is.
A server that is down is skipped in the listing and named under ``unavailable``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.shared.exceptions import MCPError

from atrium.errors import AtriumError

if TYPE_CHECKING:
    from atrium.client.links import Link
    from atrium.client.manager import McpManager

LIST_TOOL = "list_mcp_resources"
READ_TOOL = "read_mcp_resource"
META_TOOLS = (LIST_TOOL, READ_TOOL)


async def call_meta(manager: McpManager, name: str, arguments: Mapping[str, Any]) -> Any:
    """One meta-tool call with the model's arguments, checked as its schema says."""
    allowed = {"server", "cursor"} if name == LIST_TOOL else {"server", "uri"}
    unknown = sorted(set(arguments) - allowed)
    if unknown:
        raise AtriumError(f"{name} takes no argument {', '.join(map(repr, unknown))}")
    values = {key: arguments.get(key) for key in allowed}
    for key, value in values.items():
        if value is not None and not isinstance(value, str):
            raise AtriumError(f"{name}: '{key}' must be a string")
    if name == LIST_TOOL:
        return await manager.list_resources(values["server"], values["cursor"])
    if not values["server"] or not values["uri"]:
        raise AtriumError(f"{READ_TOOL} needs 'server' and 'uri'")
    return await manager.read_resource(values["server"], values["uri"])


async def list_page(
    links: Mapping[str, Link], server: str | None, cursor: str | None
) -> dict[str, Any]:
    """One page of resources: of ``server``, or of every server in turn."""
    names = sorted(links) if server is None else [_known(links, server)]
    start, inner = _decode(cursor, names) if cursor else (names[0] if names else None, None)
    unavailable: list[dict[str, str]] = []
    for name in names[names.index(start) :] if start is not None else []:
        link = links[name]
        try:
            page = await link.list_resources(inner if name == start else None)
        except (AtriumError, MCPError) as exc:
            if server is not None:
                raise
            unavailable.append({"server": name, "reason": str(exc)})
            page = types.ListResourcesResult(resources=[])
        following = _following(names, name, page.next_cursor)
        if page.resources or following is None:
            return _page(name, page, following, unavailable)
        start, inner = following
    return {"resources": [], "nextCursor": None, **_named(unavailable)}


async def read(links: Mapping[str, Link], server: str, uri: str) -> dict[str, Any]:
    result = await links[_known(links, server)].read_resource(uri)
    return {"server": server, "uri": uri, "contents": [_content(c) for c in result.contents]}


def _page(
    server: str,
    page: types.ListResourcesResult,
    following: tuple[str, str | None] | None,
    unavailable: list[dict[str, str]],
) -> dict[str, Any]:
    listed = [
        {"server": server, **r.model_dump(mode="json", by_alias=True, exclude_none=True)}
        for r in page.resources
    ]
    cursor = _encode(*following) if following is not None else None
    return {"resources": listed, "nextCursor": cursor, **_named(unavailable)}


def _following(names: list[str], name: str, cursor: str | None) -> tuple[str, str | None] | None:
    if cursor:
        return name, cursor
    index = names.index(name) + 1
    return (names[index], None) if index < len(names) else None


def _named(unavailable: list[dict[str, str]]) -> dict[str, Any]:
    return {"unavailable": unavailable} if unavailable else {}


def _known(links: Mapping[str, Link], server: str) -> str:
    if server not in links:
        raise AtriumError(
            f"unknown server '{server}'; known: {', '.join(sorted(links)) or '(none)'}"
        )
    return server


def _encode(server: str, cursor: str | None) -> str:
    raw = json.dumps({"s": server, "c": cursor}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, names: list[str]) -> tuple[str, str | None]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded))
        server, inner = value["s"], value["c"]
    except (ValueError, KeyError, TypeError):
        raise AtriumError("the cursor is not one list_mcp_resources returned") from None
    if server not in names or not (inner is None or isinstance(inner, str)):
        raise AtriumError("the cursor is not one list_mcp_resources returned for this listing")
    return server, inner


def _content(content: types.TextResourceContents | types.BlobResourceContents) -> dict[str, Any]:
    return content.model_dump(mode="json", by_alias=True, exclude_none=True)
