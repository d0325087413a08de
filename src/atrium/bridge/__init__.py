"""The stdio bridge: a stdio MCP server served over Streamable HTTP, in both protocol eras.

The supervisor runs ``atrium-stdio-bridge --name NAME --port PORT -- COMMAND [ARGS...]`` for a
``transport: stdio`` server. The bridge is an MCP proxy built on the SDK, not a byte relay: one
client session to the child over stdio (``upstream``, ``child``), one low-level SDK server
mirroring it downstream (``proxy``, ``notifications``), served at ``/mcp`` with ``/health``
beside it (``app``), for as long as the child lives (``service``).

A relay could not do it: the 2026-07-28 era is stateless (no ``initialize``, every request
carries its own envelope) while a stdio server has exactly one session, and many HTTP clients
share that one session.
"""

from atrium.bridge.cli import main

__all__ = ["main"]
