"""The ``everything`` test server, with every MCP feature: ``atrium-mcp-everything``.

The server the conformance suite runs against (``scripts/conformance``), hosted like any
other server; see ``server`` for what it serves and why.
"""

from atrium_everything.server import create_server

__all__ = ["create_server"]
