"""The gateway: one ASGI app in front of every hosted MCP server (ARCHITECTURE.md, the picture)."""
