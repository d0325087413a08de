"""The ``content-manager`` server's images tools (issue 14): placeholder until written."""

from __future__ import annotations

from atrium.servers.toolkit import AtriumServer
from atrium.settings import Settings
from atrium.store import Store


def add_images_tools(server: AtriumServer[Store], settings: Settings) -> None:
    """Register the images tools on ``server``."""
