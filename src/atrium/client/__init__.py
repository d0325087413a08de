"""The MCP client side: many MCP servers, hosted by Atrium or not, as one tool set for a model.

The connection manager and what it is built from:

* ``manager``: ``McpManager``, servers connected in parallel (one failing never holds up the
  others), tools namespaced ``mcp__<server>__<tool>``, calls that never raise into an agent
  loop, begin/end events per call; ``resources``: the ``list_mcp_resources`` and
  ``read_mcp_resource`` meta-tools across servers.
* ``links``: one server's connection, reconnected with backoff, a dropped call sent again only
  when safe; ``transports``: stdio (stderr to a log), Streamable HTTP, legacy HTTP+SSE.
* ``mcpjson``: ``.mcp.json`` files and plugin folders (``${VAR}`` expansion, file:key errors);
  ``sources``: those, and Atrium's registry through the gateway; ``signin``: the SDK's OAuth
  flow for a remote server that asks for it.
* ``naming``: model-safe namespaced names, clashes, ``allowed-tools``; ``schemas`` (with
  ``schema_*`` and ``strict``): tools in the OpenAI (Chat and Responses), Anthropic and Gemini
  formats.

For the CLI's one-server commands: ``connect`` opens an ``mcp.Client`` to one server through the
gateway and turns transport and JSON-RPC failures into ``AtriumError``s; ``checks`` validates a
server and times round trips; ``arguments`` reads tool arguments written on a command line;
``configs`` writes client configuration files; ``oauth``, ``dpop``, ``credentials`` and
``remote_bridge`` are ``atrium bridge``'s sign-in and forwarding.
"""
