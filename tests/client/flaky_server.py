"""A stdio MCP server for the connection manager's tests (``-m tests.client.flaky_server DIR``).

``record`` and ``record_idempotent`` append a line to ``DIR/calls`` and, the first time only
(while ``DIR/die-once`` exists), exit the process before answering: the call ran, and its
connection dropped under it. ``grow`` adds a tool and says the tool list changed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

FOLDER = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
server: MCPServer = MCPServer("flaky")


def _record(what: str) -> str:
    with (FOLDER / "calls").open("a") as calls:
        calls.write(f"{what}\n")
    once = FOLDER / "die-once"
    if once.exists():
        once.unlink()
        os._exit(3)  # the call ran; its answer never leaves
    return f"recorded {what}"


@server.tool(annotations=ToolAnnotations(idempotentHint=False, readOnlyHint=False))
def record(what: str) -> str:
    """Append ``what`` to the calls file (not idempotent)."""
    return _record(what)


@server.tool(annotations=ToolAnnotations(idempotentHint=True, readOnlyHint=False))
def record_idempotent(what: str) -> str:
    """Append ``what`` to the calls file (said to be idempotent)."""
    return _record(what)


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Add a tool called ``name``."""

    def added() -> str:
        return "added"

    server.add_tool(added, name=name, description="A tool added at run time.")
    await ctx.notify_tools_changed()
    return f"added {name}"


if __name__ == "__main__":
    server.run("stdio")
