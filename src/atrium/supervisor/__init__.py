"""Starting, watching and restarting MCP server processes; the stdio bridge."""
