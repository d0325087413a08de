"""The built-in ``marketplace`` server.

Skills and secrets: the project's Agent Skills (versioned, linted, synced with the
``skills/`` folder) and its secrets (encrypted at rest, revealed only to admins, audited).

Every tool acts for its caller (``current_caller``): what one user creates, another does not
see unless it is shared.
"""

from __future__ import annotations

from atrium.__about__ import __version__
from atrium.servers.builtin import store_lifespan
from atrium.servers.marketplace.secrets import add_secrets_tools
from atrium.servers.marketplace.skills import add_skills_tools
from atrium.servers.toolkit import AtriumServer
from atrium.settings import Settings
from atrium.store import Store

NAME = "marketplace"


def create_server(settings: Settings) -> AtriumServer[Store]:
    server = AtriumServer(
        NAME,
        version=__version__,
        title="Marketplace",
        lifespan=store_lifespan(settings),
    )
    add_skills_tools(server, settings)
    add_secrets_tools(server, settings)
    return server
