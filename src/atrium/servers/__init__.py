"""The toolkit every Python MCP server of Atrium uses, and the built-in servers.

* ``toolkit``: ``AtriumServer``, the SDK's ``MCPServer`` with a registry-valid name and a
  version; tools, resources and prompts are declared with the SDK's decorators.
* ``app``: the Starlette app, Streamable HTTP at ``/mcp`` (both protocol eras) and ``/health``.
* ``runner``: ``run(server)``, the body of a server's console script: options, logging, uvicorn.
* ``shutdown``: stopping on SIGTERM so that the calls in flight still answer, then exit 0.
* ``atrium``: the built-in ``atrium`` server (CLI executor and playbooks).

A server author imports what they need from ``atrium`` itself (``atrium/__init__.py``).
"""
