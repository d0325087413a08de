"""Model providers behind one interface: Anthropic Messages, OpenAI Responses, OpenAI Chat
Completions (and the servers that speak it) and Gemini, each through its official SDK.

``create_provider`` is called when a run starts, so that a missing SDK (the ``ai`` extra is not
installed) or a missing API key stops the run before it begins, with a message naming the
provider and what to install or set. The SDKs are imported only here, on demand: the rest of
Atrium works without them.
"""

from __future__ import annotations

import importlib
from typing import get_args

from atrium.ai.providers.provider import (
    Provider,
    ProviderKind,
    ProviderOptions,
    ProviderSetupError,
)

__all__ = ["KINDS", "create_provider"]

KINDS: tuple[ProviderKind, ...] = get_args(ProviderKind)

# kind: (module, class, the SDK's import name, its distribution, the key's usual variable)
_ADAPTERS: dict[ProviderKind, tuple[str, str, str, str, str]] = {
    "anthropic": ("anthropic_messages", "AnthropicProvider", "anthropic", "anthropic",
                  "ANTHROPIC_API_KEY"),
    "openai": ("openai_responses", "OpenAIResponsesProvider", "openai", "openai",
               "OPENAI_API_KEY"),
    "openai-chat": ("openai_chat", "OpenAIChatProvider", "openai", "openai", "OPENAI_API_KEY"),
    "gemini": ("gemini", "GeminiProvider", "google", "google-genai", "GEMINI_API_KEY"),
}  # fmt: skip

# What a local OpenAI-compatible server gets when it needs no key (the SDK insists on one).
_NO_KEY = "no-key"


def create_provider(
    kind: str,
    *,
    api_key: str | None,
    base_url: str | None = None,
    timeout_s: float = 600.0,
    max_retries: int = 2,
    name: str | None = None,
) -> Provider:
    """The adapter for ``kind``; ``name`` is the provider's name in ``services/ai/config.yaml``,
    for messages. A key is needed by every kind but ``openai-chat`` given a ``base_url`` (a
    local server such as Ollama or vLLM needs none)."""
    if kind not in _ADAPTERS:
        known = ", ".join(KINDS)
        raise ProviderSetupError(f"unknown AI provider type '{kind}'; known: {known}")
    module_name, class_name, sdk, distribution, variable = _ADAPTERS[kind]
    label = f"AI provider '{name}' ({kind})" if name else f"AI provider '{kind}'"
    if not api_key and not (kind == "openai-chat" and base_url):
        where = f"ai.providers.{name or kind}.api_key in services/ai/config.yaml"
        raise ProviderSetupError(
            f"{label} has no API key: set {where}, e.g. api_key: {{$env: {variable}}}"
        )
    try:
        module = importlib.import_module(f"atrium.ai.providers.{module_name}")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != sdk:
            raise
        raise ProviderSetupError(
            f"{label} needs the {distribution} package: pip install 'atrium[ai]'"
        ) from None
    options = ProviderOptions(api_key or _NO_KEY, base_url, timeout_s, max_retries)
    provider: Provider = getattr(module, class_name)(options)
    return provider
