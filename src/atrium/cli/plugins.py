"""``atrium plugins``: the MCP servers of the project."""

from __future__ import annotations

import typer

from atrium.cli import mcp

app = typer.Typer(help="Plugins of the project: MCP servers.", no_args_is_help=True)
app.add_typer(mcp.app, name="mcp")
