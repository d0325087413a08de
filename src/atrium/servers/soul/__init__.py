"""The built-in ``soul`` server: ``atrium-mcp-soul``."""

from atrium.servers.soul.server import create_server

__all__ = ["create_server"]
