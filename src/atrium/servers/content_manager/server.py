"""The built-in ``content-manager`` server.

The content pipeline: research over the project's own content (full-text search), blog
posts (Markdown with frontmatter, in the store and ``content/blog/``) and their featured images.

Every tool acts for its caller (``current_caller``): what one user creates, another does not
see unless it is shared.
"""

from __future__ import annotations

from atrium.__about__ import __version__
from atrium.servers.builtin import store_lifespan
from atrium.servers.content_manager.images import add_images_tools
from atrium.servers.content_manager.posts import add_posts_tools
from atrium.servers.toolkit import AtriumServer
from atrium.settings import Settings
from atrium.store import Store

NAME = "content-manager"


def create_server(settings: Settings) -> AtriumServer[Store]:
    server = AtriumServer(
        NAME,
        version=__version__,
        title="Content manager",
        lifespan=store_lifespan(settings),
    )
    add_posts_tools(server, settings)
    add_images_tools(server, settings)
    return server
