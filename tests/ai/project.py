"""A project's AI files for tests: ``services/ai/config.yaml`` pointing at a provider fake, and
agent files. Written as JSON, which is YAML too, so every test goes through the real loaders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tests.ai.fake_script import ProviderFake
from tests.ai.providers_fake import AnthropicFake, GeminiFake, OpenAIChatFake

KEY_VARIABLE = "ATRIUM_TEST_MODEL_KEY"


def kind_of(fake: ProviderFake) -> str:
    """The provider ``type`` whose SDK speaks to ``fake``."""
    if isinstance(fake, AnthropicFake):
        return "anthropic"
    if isinstance(fake, GeminiFake):
        return "gemini"
    return "openai-chat" if isinstance(fake, OpenAIChatFake) else "openai"


def write_ai_config(
    project: Path,
    fake: ProviderFake,
    *,
    model: str = "test-model",
    key: bool = True,
    **extra: object,
) -> Path:
    """One provider, ``fake``, named ``fake`` and the default; its key is ``$env``
    ``ATRIUM_TEST_MODEL_KEY`` (the test sets it) unless ``key`` is false. ``extra`` are more
    keys of ``ai:`` (``max_tool_rounds``, ``auto_discover``, ``mcp_configs`` ...)."""
    provider: dict[str, object] = {"type": kind_of(fake), "base_url": fake.base_url}
    if key:
        provider["api_key"] = {"$env": KEY_VARIABLE}
    provider["max_retries"] = 2
    document = {
        "ai": {
            "providers": {"fake": provider},
            "default_provider": "fake",
            "default_model": model,
            **extra,
        }
    }
    path = project / "services/ai/config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def write_agent(
    project: Path,
    name: str = "helper",
    *,
    prompt: str = "You help with this project. Use the tools when they help.",
    model: str = "inherit",
    allowed_tools: Sequence[str] | None = None,
    servers: Sequence[str] | None = None,
) -> Path:
    front: dict[str, object] = {"name": name, "description": f"The {name} agent", "model": model}
    if allowed_tools is not None:
        front["allowed-tools"] = list(allowed_tools)
    if servers is not None:
        front["servers"] = list(servers)
    path = project / "services/agents" / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\n{json.dumps(front, indent=2)}\n---\n{prompt}\n")
    return path
