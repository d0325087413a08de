"""The built-in ``soul`` server.

AI-powered content tools (summarize, rewrite, titles, keywords, answers from the
project's content) on the AI service's model, or the calling client's through MCP sampling.

Every tool acts for its caller (``current_caller``): what one user creates, another does not
see unless it is shared.
"""

from __future__ import annotations

from atrium.__about__ import __version__
from atrium.servers.builtin import store_lifespan
from atrium.servers.soul.writing import add_writing_tools
from atrium.servers.toolkit import AtriumServer
from atrium.settings import Settings
from atrium.store import Store

NAME = "soul"


def create_server(settings: Settings) -> AtriumServer[Store]:
    server = AtriumServer(
        NAME,
        version=__version__,
        title="Soul",
        lifespan=store_lifespan(settings),
    )
    add_writing_tools(server, settings)
    return server
