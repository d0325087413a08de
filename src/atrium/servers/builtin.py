"""What the built-in servers share: their console script's ``main`` and the store they open.

Each built-in server is hosted exactly as a user's server is (ARCHITECTURE.md): a console
script ``atrium-mcp-<name>`` that the supervisor starts as ``--port <port> --project <dir>``,
with the options of every hosted server (``atrium.servers.runner``). Those that keep data open
one ``Store`` for the process, in the server's lifespan; tools reach it as
``ctx.request_context.lifespan_context``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver import MCPServer

from atrium.errors import ConfigError
from atrium.servers.runner import parse_options, serve
from atrium.servers.toolkit import Lifespan
from atrium.settings import Settings, load_settings
from atrium.store import Store


def store_lifespan(settings: Settings) -> Lifespan[Store]:
    """The project's store, open for as long as the server runs."""

    @asynccontextmanager
    async def lifespan(_server: MCPServer[Store]) -> AsyncIterator[Store]:
        async with await Store.open(settings) as store:
            yield store

    return lifespan


def run_builtin(
    prog: str, create_server: Callable[[Settings], MCPServer[Any]], argv: Sequence[str] | None
) -> None:
    """Parse the hosting options, load the project's settings and serve until stopped."""
    options = parse_options(argv, prog=prog)
    try:
        settings = load_settings(options.project)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    serve(create_server(settings), options)
