"""OAuth 2.1 authorization server and resource-server checks (one module per concern)."""
