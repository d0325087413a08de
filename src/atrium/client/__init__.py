"""The MCP client side: reaching hosted servers through the gateway with the official client.

``connect`` opens an ``mcp.Client`` to one server and turns transport and JSON-RPC failures
into ``AtriumError``s; ``checks`` validates a server and times round trips; ``arguments``
reads tool arguments written on a command line.
"""
