"""The built-in ``atrium`` server (the seeds' "CLI executor"): ``atrium-mcp-atrium``.

Nothing is imported here: the other built-in servers read ``playbooks`` without loading this
server (``server.create_server``) and what it needs.
"""
