"""The console's skills and secrets pages act through the ``marketplace`` server's own tools,
called through the gateway as the signed-in user (``web.tools.as_user``), as try it calls any
tool: the marketplace alone decides who may read, change or reveal what, the gateway's policy
and audit apply (a reveal is the audited ``get_secrets`` call it is from any other client, with
the marketplace's own log line), and no rule of it is written twice.

A tool's refusal comes back as its message (``ToolRefusal``), shown on the page beside what was
posted; the gateway's refusal or an unreachable marketplace is a ``Refused`` page.
"""

from __future__ import annotations

from typing import Any

from atrium.errors import AtriumError
from atrium.gateway.parts import GatewayParts
from atrium.web import tools
from atrium.web.guard import Refused
from atrium.web.session import Viewer

MARKETPLACE = "marketplace"


class ToolRefusal(Exception):
    """The tool answered with an error: its text, which names the argument at fault first
    (``version: …``, ``name: …``), the marketplace's convention."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def argument(self) -> str:
        head, colon, _ = self.message.partition(":")
        return head if colon and head.replace("_", "").isalnum() else ""


async def call(
    parts: GatewayParts, viewer: Viewer, tool: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """The tool's structured result; ``ToolRefusal`` when it answered with an error."""
    # The MCP client (and the mcp package) only once a page calls a tool: not at gateway start.
    from atrium.client.connect import JsonRpcError

    try:
        async with tools.as_user(parts, viewer, MARKETPLACE) as connection:
            outcome = await tools.call(connection, tool, arguments)
    except JsonRpcError as error:  # the gateway refused the call: policy, scope, rate limit
        raise Refused(403, "forbidden", f"The gateway refused {tool}: {error.detail}") from None
    except AtriumError as error:
        raise Refused(502, "gateway", f"The marketplace did not answer: {error}") from None
    if outcome.failed:
        said = " ".join(outcome.texts) or f"{tool} failed"
        raise ToolRefusal(said.removeprefix(f"Error executing tool {tool}: "))
    structured = outcome.result.get("structuredContent")
    return structured if isinstance(structured, dict) else {}


def writer(viewer: Viewer) -> None:
    """Changes take a role that may call tools that are not read-only (the gateway's rule for
    the marketplace's write tools): a reader is told so before anything is sent."""
    if viewer.standing == "reader":
        raise Refused(403, "forbidden", "Your role may read only: it changes nothing.")
