"""The ``content-manager`` server's posts tools (issue 14): placeholder until written."""

from __future__ import annotations

from atrium.servers.toolkit import AtriumServer
from atrium.settings import Settings
from atrium.store import Store


def add_posts_tools(server: AtriumServer[Store], settings: Settings) -> None:
    """Register the posts tools on ``server``."""
