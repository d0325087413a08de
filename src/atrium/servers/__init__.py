"""The toolkit every Python MCP server of Atrium uses, and the built-in servers."""
