"""Atrium: host MCP servers as secure HTTP services and connect AI clients and agents to them.

This module exports only what an MCP server author needs; everything else is imported from its
owning module (``atrium.registry``, ``atrium.store``, ...). A server in a few lines::

    from atrium import AtriumServer, ToolAnnotations, run

    server = AtriumServer("weather", version="1.0.0")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def forecast(city: str) -> str:
        return f"Sunny in {city}"

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

    from atrium.servers.runner import run
    from atrium.servers.toolkit import AtriumServer

__all__ = [
    "AtriumServer",
    "Context",
    "Icon",
    "ToolAnnotations",
    "ToolError",
    "__version__",
    "run",
]

_LAZY = {
    "AtriumServer": "atrium.servers.toolkit",
    "Context": "mcp.server.mcpserver",
    "Icon": "mcp.types",
    "ToolAnnotations": "mcp.types",
    "ToolError": "mcp.server.mcpserver.exceptions",
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
