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


def key_hint(server: str) -> str:
    """What an error about a model API key adds for a built-in server: its process sees only
    the environment its ``services/mcp/<server>.yaml`` passes on, not the one where
    ``atrium start`` runs, so a key set there is missing here."""
    return (
        f"(the {server} server sees only the environment its services/mcp/{server}.yaml passes"
        " on: add the variable under env:, or use a $file reference)"
    )


def about_api_key(error: ConfigError) -> bool:
    """Whether a configuration error is about a provider's ``api_key`` reference."""
    return any(problem.key_path.endswith(".api_key") for problem in error.problems)
