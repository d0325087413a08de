"""The ``marketplace`` server's skills tools (issue 14): placeholder until written."""

from __future__ import annotations

from atrium.servers.toolkit import AtriumServer
from atrium.settings import Settings
from atrium.store import Store


def add_skills_tools(server: AtriumServer[Store], settings: Settings) -> None:
    """Register the skills tools on ``server``."""
