"""Atrium: host MCP servers as secure HTTP services and connect AI clients and agents to them.

This module exports only what an MCP server author needs; everything else is imported from its
owning module (``atrium.registry``, ``atrium.store``, ...). A server in a few lines::

    from atrium import AtriumServer, Context, ToolAnnotations, current_caller, run

    server = AtriumServer("weather", version="1.0.0")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def forecast(city: str, ctx: Context) -> str:
        who = current_caller(ctx)  # vouched for by the gateway: subject, client, scopes...
        return f"Sunny in {city}, {who.subject or 'stranger'}"

    def main() -> None:  # the console script named in services/mcp/weather.yaml
        run(server)

The exports are imported on first use (PEP 562): the ``atrium`` command imports this package
too, and should not load the MCP SDK and uvicorn (about half a second) for every command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from atrium.__about__ import __version__

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import Icon, ToolAnnotations

    from atrium.auth.assertion import CallerIdentity
    from atrium.servers.runner import run
    from atrium.servers.toolkit import AtriumServer
    from atrium.servers.trust import current_caller

__all__ = [
    "AtriumServer",
    "CallerIdentity",
    "Context",
    "Icon",
    "ToolAnnotations",
    "ToolError",
    "__version__",
    "current_caller",
    "run",
]

_LAZY = {
    "AtriumServer": "atrium.servers.toolkit",
    "CallerIdentity": "atrium.auth.assertion",
    "Context": "mcp.server.mcpserver",
    "Icon": "mcp.types",
    "ToolAnnotations": "mcp.types",
    "ToolError": "mcp.server.mcpserver.exceptions",
    "current_caller": "atrium.servers.trust",
    "run": "atrium.servers.runner",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'atrium' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
