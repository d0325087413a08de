"""One-shot completions (``atrium.ai.complete``) on the configured default model, through the
real adapters against each provider's fake: what is sent, what comes back, and each way the
configuration can be missing or wrong, told before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from atrium.ai.complete import NoProviderConfigured, complete
from atrium.ai.providers.events import Usage as EventUsage
from atrium.ai.providers.provider import ProviderError, ProviderSetupError
from atrium.errors import ConfigError
from atrium.settings import Settings, load_settings
from tests.ai.project import KEY_VARIABLE, write_ai_config
from tests.ai.providers_fake import (
    AnthropicFake,
    GeminiFake,
    OpenAIChatFake,
    OpenAIResponsesFake,
    ProviderFake,
    Usage,
    server_error,
    text,
)

FAKES: dict[str, Callable[[list[Any]], ProviderFake]] = {
    "anthropic": AnthropicFake,
    "openai": OpenAIResponsesFake,
    "openai-chat": OpenAIChatFake,
    "gemini": GeminiFake,
}
SYSTEM = "You write one-line summaries."
PROMPT = "Summarize: the quick brown fox jumps over the lazy dog."


def settings_of(project: Path, **environ: str) -> Settings:
    return load_settings(project, environ={KEY_VARIABLE: "test-key", **environ})


def write_document(project: Path, document: dict[str, Any]) -> None:
    path = project / "services/ai/config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("kind", list(FAKES))
async def test_every_provider_answers_with_its_text_usage_and_model(
    kind: str, tmp_path: Path
) -> None:
    reply = text("A fox jumps a dog.", usage=Usage(input_tokens=31, output_tokens=7))
    with FAKES[kind]([reply]) as fake:
        write_ai_config(tmp_path, fake, model="small-model")
        completion = await complete(
            settings_of(tmp_path), system=SYSTEM, prompt=PROMPT, max_tokens=123
        )
    assert completion.text == "A fox jumps a dog."
    assert completion.usage == EventUsage(31, 7)
    assert (completion.provider, completion.model, completion.stop_reason) == (
        "fake",
        "small-model",
        "end",
    )
    [request] = fake.requests
    sent = json.dumps(request.body)
    assert SYSTEM in sent
    assert "the quick brown fox" in sent
    assert "123" in sent  # the output limit, under each provider's own name


async def test_the_output_limit_and_model_are_sent_as_given(tmp_path: Path) -> None:
    with AnthropicFake([text("ok")]) as fake:
        write_ai_config(tmp_path, fake, model="claude-test")
        await complete(settings_of(tmp_path), system=SYSTEM, prompt=PROMPT, max_tokens=77)
    body = fake.requests[0].body
    assert (body["model"], body["max_tokens"], body["system"]) == ("claude-test", 77, SYSTEM)
    assert body.get("tools") in (None, [])


async def test_no_config_file_is_no_provider(tmp_path: Path) -> None:
    with pytest.raises(NoProviderConfigured) as caught:
        await complete(settings_of(tmp_path), system=SYSTEM, prompt=PROMPT, max_tokens=10)
    assert caught.value.problems[0].key_path == "ai.providers"
    assert "services/ai/config.yaml" in str(caught.value)


async def test_an_empty_providers_section_is_no_provider(tmp_path: Path) -> None:
    write_document(tmp_path, {"ai": {"providers": {}, "auto_discover": True}})
    with pytest.raises(NoProviderConfigured):
        await complete(settings_of(tmp_path), system=SYSTEM, prompt=PROMPT, max_tokens=10)


async def test_two_providers_without_a_default_is_a_config_error_not_no_provider(
    tmp_path: Path,
) -> None:
    providers = {
        "one": {"type": "anthropic", "api_key": {"$env": KEY_VARIABLE}},
        "two": {"type": "openai", "api_key": {"$env": KEY_VARIABLE}},
    }
    write_document(tmp_path, {"ai": {"providers": providers, "default_model": "m"}})
    with pytest.raises(ConfigError) as caught:
        await complete(settings_of(tmp_path), system=SYSTEM, prompt=PROMPT, max_tokens=10)
    assert not isinstance(caught.value, NoProviderConfigured)
    assert caught.value.problems[0].key_path == "ai.default_provider"


async def test_a_provider_without_default_model_names_the_key(tmp_path: Path) -> None:
    providers = {"one": {"type": "anthropic", "api_key": {"$env": KEY_VARIABLE}}}
    write_document(tmp_path, {"ai": {"providers": providers}})
    with pytest.raises(ConfigError) as caught:
        await complete(settings_of(tmp_path), system=SYSTEM, prompt=PROMPT, max_tokens=10)
    assert caught.value.problems[0].key_path == "ai.default_model"


async def test_an_unset_key_variable_names_the_key_and_sends_nothing(tmp_path: Path) -> None:
    with AnthropicFake([text("never")]) as fake:
        write_ai_config(tmp_path, fake)
        settings = load_settings(tmp_path, environ={})
        with pytest.raises(ConfigError) as caught:
            await complete(settings, system=SYSTEM, prompt=PROMPT, max_tokens=10)
    assert caught.value.problems[0].key_path == "ai.providers.fake.api_key"
    assert fake.requests == []


async def test_a_provider_that_needs_a_key_and_has_none_is_a_setup_error(tmp_path: Path) -> None:
    with AnthropicFake([text("never")]) as fake:
        write_ai_config(tmp_path, fake, key=False)
        with pytest.raises(ProviderSetupError):
            await complete(settings_of(tmp_path), system=SYSTEM, prompt=PROMPT, max_tokens=10)
    assert fake.requests == []


async def test_an_api_that_keeps_failing_is_a_provider_error_with_its_status(
    tmp_path: Path,
) -> None:
    with OpenAIChatFake([server_error(), server_error(), server_error()]) as fake:
        write_ai_config(tmp_path, fake)
        with pytest.raises(ProviderError) as caught:
            await complete(settings_of(tmp_path), system=SYSTEM, prompt=PROMPT, max_tokens=10)
    assert caught.value.status == 500


async def test_a_non_positive_output_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        await complete(settings_of(tmp_path), system=SYSTEM, prompt=PROMPT, max_tokens=0)
