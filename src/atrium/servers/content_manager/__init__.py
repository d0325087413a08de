"""The built-in ``content-manager`` server: ``atrium-mcp-content-manager``."""

from atrium.servers.content_manager.server import create_server

__all__ = ["create_server"]
