"""The built-in ``atrium`` server (the seeds' "CLI executor"): ``atrium-mcp-atrium``."""

from atrium.servers.atrium.server import create_server

__all__ = ["create_server"]
