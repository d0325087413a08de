"""Tools whose definition, not their answer, is under test: what must reach a client intact.

* ``json_schema_2020_12_tool``: an ``inputSchema`` in the JSON Schema 2020-12 dialect with
  ``$defs``/``$anchor``/``$ref``, ``allOf``/``anyOf``, ``if``/``then``/``else`` and
  ``additionalProperties`` (SEP-1613; SEP-2106 permits the whole vocabulary). Whatever lists
  tools on the way to a client (the gateway filters ``tools/list``) must pass it unchanged.
* ``test_x_mcp_header``: a parameter marked ``x-mcp-header``, which a 2026-07-28 client also
  sends as the ``Mcp-Param-Region`` header, and which the server checks against the body
  (SEP-2243, ``basic/transports#custom-headers``).

The schema is hand-written, so the tool is built as a ``Tool`` and handed to the server's
constructor (``tools=``) rather than derived from a signature by ``@server.tool``.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations
from pydantic import Field

JSON_SCHEMA_2020_12 = "https://json-schema.org/draft/2020-12/schema"

CONTACT_INPUT_SCHEMA: dict[str, Any] = {
    "$schema": JSON_SCHEMA_2020_12,
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "postalAddress",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    # Some way to reach the person, and the one they prefer if they said which.
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def schema_tools() -> list[Tool]:
    """The tools to pass as ``MCPServer(tools=...)``."""
    tool = Tool.from_function(
        _describe_contact,
        name="json_schema_2020_12_tool",
        description="Takes a contact; its input schema uses JSON Schema 2020-12 keywords.",
        annotations=_READ_ONLY,
    )
    return [tool.model_copy(update={"parameters": CONTACT_INPUT_SCHEMA})]


def _describe_contact(
    name: str | None = None,
    address: dict[str, str] | None = None,
    contactMethod: str | None = None,
    phone: str | None = None,
    email: str | None = None,
) -> str:
    # The signature only binds the arguments; CONTACT_INPUT_SCHEMA is what clients see.
    reach = phone if contactMethod == "phone" else (email or phone)
    return f"{name or 'someone'}, reachable at {reach}"


def add_header_tool(server: MCPServer[Any]) -> None:
    """Register ``test_x_mcp_header``."""

    @server.tool(
        description="Echoes region, which also travels as a header.", annotations=_READ_ONLY
    )
    def test_x_mcp_header(
        region: Annotated[
            str,
            Field(
                description="Also sent as the Mcp-Param-Region header.",
                json_schema_extra={"x-mcp-header": "Region"},
            ),
        ] = "none",
    ) -> str:
        return f"region={region}"
