"""One-shot completions on the AI service's default model: no tools, no conversation.

The agents' tool loop (``atrium.ai.loop``) is the wrong shape for a single question such as
"summarize this": it needs an agent file, keeps a conversation and offers tools. ``complete``
sends one system prompt and one user prompt to the provider and model that
``services/ai/config.yaml`` names as its defaults (``default_provider``, or the only provider;
``default_model``), through the same adapters as the agents, and gathers the streamed answer.

Errors, each raised before anything is sent unless said otherwise:

* ``NoProviderConfigured`` (a ``ConfigError``): ``ai.providers`` is empty. Callers that have
  another model to turn to (the ``soul`` server asks its client's model through MCP sampling)
  catch exactly this one: every other problem is a configuration to fix, not a fallback.
* ``ConfigError``: the file is invalid, several providers and no ``default_provider``, no
  ``default_model``, or the API key's reference cannot be read.
* ``ProviderSetupError``: the provider's SDK is not installed or it has no API key.
* ``ProviderError``: the model API refused or failed the request (after the SDK's retries).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from atrium.ai.config import AI_CONFIG_FILE, AiConfig, load_ai_config, resolve_api_key
from atrium.ai.providers import create_provider
from atrium.ai.providers.events import Done, StopReason, TextDelta, Usage
from atrium.ai.providers.messages import ModelRequest, UserMessage
from atrium.ai.providers.provider import Provider
from atrium.errors import ConfigError, Problem
from atrium.settings import Settings

__all__ = ["Completion", "NoProviderConfigured", "complete", "default_model"]


@dataclass(frozen=True)
class Completion:
    """The model's answer. ``stop_reason`` ``max_tokens`` means ``text`` was cut at the limit."""

    text: str
    usage: Usage
    provider: str
    model: str
    stop_reason: StopReason = "end"


class NoProviderConfigured(ConfigError):
    """``services/ai/config.yaml`` configures no provider (or does not exist)."""

    def __init__(self) -> None:
        super().__init__(
            [
                Problem(
                    AI_CONFIG_FILE,
                    "no AI provider is configured: add one under ai.providers and set"
                    " default_model (the file's comments show how)",
                    key_path="ai.providers",
                )
            ]
        )


def default_model(config: AiConfig) -> tuple[str, str]:
    """``(provider, model)``: the configured defaults, or the error that says what to set."""
    if not config.providers:
        raise NoProviderConfigured()
    provider = config.provider_name
    if provider is None:
        known = ", ".join(sorted(config.providers))
        raise ConfigError(
            [
                Problem(
                    AI_CONFIG_FILE,
                    f"several providers are configured ({known}) and no default_provider:"
                    " set ai.default_provider to the one to use",
                    key_path="ai.default_provider",
                )
            ]
        )
    if config.default_model is None:
        raise ConfigError(
            [
                Problem(
                    AI_CONFIG_FILE,
                    f"default_model is not set: name the model of provider '{provider}' to use",
                    key_path="ai.default_model",
                )
            ]
        )
    return provider, config.default_model


async def complete(settings: Settings, *, system: str, prompt: str, max_tokens: int) -> Completion:
    """Ask the default model once: ``system`` as the system prompt, ``prompt`` as the user's
    message, at most ``max_tokens`` tokens of answer."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
    config = load_ai_config(settings)
    name, model = default_model(config)
    provider = _provider(settings, config, name)
    request = ModelRequest(
        model=model, messages=(UserMessage(prompt),), system=system, max_tokens=max_tokens
    )
    try:
        return await _read(provider, request, name)
    finally:
        await provider.aclose()


def _provider(settings: Settings, config: AiConfig, name: str) -> Provider:
    options = config.providers[name]
    return create_provider(
        options.type,
        api_key=resolve_api_key(config, name, settings),
        base_url=options.base_url,
        timeout_s=config.timeout_for(name),
        max_retries=options.max_retries,
        name=name,
    )


async def _read(provider: Provider, request: ModelRequest, name: str) -> Completion:
    """The streamed turn gathered into one answer (no tools were offered, so no calls come)."""
    parts: list[str] = []
    usage = Usage(0, 0)
    done = Done("other", "the stream ended without a stop reason")
    async with contextlib.aclosing(provider.stream(request)) as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, Usage):
                usage = event
            elif isinstance(event, Done):
                done = event
    return Completion("".join(parts), usage, name, request.model, done.stop_reason)
