"""The seam between the tool loop and a model API, and how a provider's failures read.

Every adapter is a ``Provider``: ``stream(request)`` yields the events of ``events`` for one
turn; closing the generator (``aclose``, or cancelling the task reading it) closes the HTTP
stream, so a cancelled run stops the model too.

Errors: ``ProviderSetupError`` when a provider cannot even be created (its SDK is not
installed, it has no API key), raised before a run starts; ``ProviderError`` when the API
refused or failed a request (after the SDK's retries), carrying the provider's own message and
the HTTP status when there was one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from atrium.ai.providers.events import Event
from atrium.ai.providers.messages import ModelRequest
from atrium.client.schemas import Format
from atrium.errors import EXIT_CONFIG, AtriumError

ProviderKind = Literal["anthropic", "openai", "openai-chat", "gemini"]


class Provider(Protocol):
    kind: ProviderKind
    tool_format: Format  # the format of ``ModelRequest.tools`` this provider takes

    def stream(self, request: ModelRequest) -> AsyncGenerator[Event, None]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class ProviderOptions:
    """What every adapter is created with; ``api_key`` is already resolved from its reference."""

    api_key: str
    base_url: str | None
    timeout_s: float
    max_retries: int


class ProviderSetupError(AtriumError):
    """The provider cannot be used as configured: a configuration error (exit 2)."""

    exit_code = EXIT_CONFIG


class ProviderError(AtriumError):
    """The model API refused or failed a request; ``status`` is its HTTP status, if any."""

    def __init__(self, kind: ProviderKind, message: str, status: int | None = None) -> None:
        self.kind = kind
        self.status = status
        where = f"{kind} API" if status is None else f"{kind} API error {status}"
        super().__init__(f"{where}: {message}")


def body_message(body: object, fallback: str) -> str:
    """The human message inside an API error body: ``{"error": {"message": ...}}`` (Anthropic,
    OpenAI, Gemini), ``{"message": ...}``, or ``{"error": "..."}`` (some compatible servers)."""
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return fallback


def unreachable(url: str, reason: str) -> str:
    """The message for a request that got no answer (refused, reset, timed out)."""
    return f"no answer from {url}: {reason.rstrip('.')}"
