"""The AI service's own refusals, importable without loading the service (the gateway maps
them to HTTP statuses before any run has loaded it)."""

from __future__ import annotations

from atrium.errors import UsageError


class ConversationBusy(UsageError):
    """A run is already continuing this conversation: a second would interleave its messages."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation '{conversation_id}' has a run going on; wait for it to end")
