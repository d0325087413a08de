"""Atrium: host MCP servers as secure HTTP services and connect AI clients and agents to them.

This module exports only what an MCP server author needs; everything else is imported from its
owning module (``atrium.registry``, ``atrium.store``, ...).
"""

from atrium.__about__ import __version__

__all__ = ["__version__"]
