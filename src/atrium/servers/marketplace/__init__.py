"""The built-in ``marketplace`` server: ``atrium-mcp-marketplace``."""

from atrium.servers.marketplace.server import create_server

__all__ = ["create_server"]
