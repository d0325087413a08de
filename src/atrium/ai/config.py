"""The AI service's configuration: ``services/ai/config.yaml``.

```yaml
ai:
  providers:
    local:                              # any name: agents pick it with model: local:<model>
      type: openai-chat                 # anthropic | openai (Responses) | openai-chat | gemini
      base_url: http://localhost:11434/v1   # an OpenAI-compatible server (vLLM, Ollama, LiteLLM)
      api_key: {$env: OPENAI_API_KEY}   # only $env / $file references, never the key itself
      timeout_s: 120                    # default: timeouts.model_request_s
      max_retries: 2
    openai: {type: openai, api_key: {$env: OPENAI_API_KEY}}
  default_provider: local               # default: the provider, when there is exactly one
  default_model: llama3.1
  auto_discover: true                   # offer agents the tools of every enabled server
  mcp_configs: [tools/.mcp.json]        # extra .mcp.json files, relative to the project
  max_tool_rounds: 10
  timeouts: {model_request_s: 600, tool_call_s: 120}
  images:                               # optional: featured images from an image model
    provider: openai                    # a provider above of type openai or openai-chat
    model: gpt-image-2
    size: 1536x1024                     # optional: what the model is asked for
```

A missing (or empty) file is the defaults: no provider, which is an error only when a run needs
one (``atrium.ai.agents.resolve_model``). API keys stay references here and are resolved when a
run starts (``resolve_api_key``), as the registry does with a server's ``env``.

``images`` names the provider and model the content-manager's ``generate_featured_image``
draws with (``atrium.ai.images``); only the OpenAI Images API is spoken, so its provider must be
of type ``openai`` or ``openai-chat`` (an OpenAI-compatible server given by ``base_url``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from atrium import yamlio
from atrium.errors import ConfigError, Problem, display_path
from atrium.registry.loader import validation_problems
from atrium.registry.schema import EnvRef, FileRef, checked_name
from atrium.registry.secrets import resolve_secret
from atrium.settings import Settings

AI_CONFIG_FILE = "services/ai/config.yaml"
_HTTP_URL = re.compile(r"^https?://[^\s/]+")
ProviderType = Literal["anthropic", "openai", "openai-chat", "gemini"]
IMAGE_PROVIDER_TYPES: tuple[ProviderType, ...] = ("openai", "openai-chat")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _reference_kind(value: Any) -> str | None:
    if isinstance(value, EnvRef) or (isinstance(value, dict) and set(value) == {"$env"}):
        return "$env"
    if isinstance(value, FileRef) or (isinstance(value, dict) and set(value) == {"$file"}):
        return "$file"
    return None


def _no_literal_key(value: Any) -> Any:
    # A key written in the file ends up in git and in backups; the registry's rule for secrets.
    if isinstance(value, str):
        raise ValueError(
            "an API key is never written in the file: use {$env: VARIABLE} or {$file: path}"
        )
    return value


ApiKey = Annotated[
    Annotated[EnvRef, Tag("$env")] | Annotated[FileRef, Tag("$file")],
    Discriminator(
        _reference_kind,
        custom_error_type="value_kind",
        custom_error_message="must be {$env: VARIABLE} or {$file: path}",
    ),
    BeforeValidator(_no_literal_key),
]


def _provider_name(name: str) -> str:
    # Agents name a provider in ``model: <provider>:<model>``; the server-name alphabet keeps
    # that split unambiguous (no ':' in a provider's name).
    return checked_name(name, "provider")


ProviderName = Annotated[str, AfterValidator(_provider_name)]


class ProviderConfig(_Model):
    """One entry of ``providers:``."""

    type: ProviderType
    # Optional: a local OpenAI-compatible server may need none; the provider says when it does.
    api_key: ApiKey | None = None
    base_url: str | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    max_retries: int = Field(default=2, ge=0, le=10)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not _HTTP_URL.match(value):
            raise ValueError("must be an http:// or https:// URL")
        return value


class Timeouts(_Model):
    model_request_s: float = Field(default=600.0, gt=0, le=3600)
    tool_call_s: float = Field(default=120.0, gt=0, le=3600)


class ImagesConfig(_Model):
    """``images:``: the image model of featured images; ``provider`` is checked against
    ``providers`` by ``load_ai_config``, which can point at its line."""

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    # The Images API takes WIDTHxHEIGHT or "auto"; which sizes a model accepts is its own rule.
    size: str | None = Field(default=None, pattern=r"^(auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$")


def _none_is_empty(value: Any) -> Any:
    # ``providers:`` with every entry commented out is null in YAML: the user meant none.
    return {} if value is None else value


class AiConfig(_Model):
    """The ``ai:`` section; every key has a default."""

    providers: Annotated[dict[ProviderName, ProviderConfig], BeforeValidator(_none_is_empty)] = (
        Field(default_factory=dict)
    )
    default_provider: str | None = None
    default_model: str | None = Field(default=None, min_length=1)
    auto_discover: bool = True
    mcp_configs: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    max_tool_rounds: int = Field(default=10, ge=1, le=100)
    timeouts: Timeouts = Timeouts()
    images: ImagesConfig | None = None

    @field_validator("default_provider")
    @classmethod
    def _configured(cls, value: str | None, info: ValidationInfo) -> str | None:
        providers = info.data.get("providers")
        if value is not None and providers is not None and value not in providers:
            known = ", ".join(sorted(providers)) or "none"
            raise ValueError(f"'{value}' is not one of the providers (configured: {known})")
        return value

    @property
    def provider_name(self) -> str | None:
        """The provider of ``model: inherit`` and bare model names, if there is one."""
        if self.default_provider is not None:
            return self.default_provider
        return next(iter(self.providers)) if len(self.providers) == 1 else None

    def timeout_for(self, provider: str) -> float:
        """Seconds a model request to ``provider`` may take."""
        own = self.providers[provider].timeout_s
        return own if own is not None else self.timeouts.model_request_s

    def mcp_config_paths(self, settings: Settings) -> tuple[Path, ...]:
        return tuple(settings.project_dir / name for name in self.mcp_configs)


class AiConfigFile(_Model):
    """The whole file: one ``ai:`` section."""

    ai: Annotated[AiConfig, BeforeValidator(_none_is_empty)] = AiConfig()

    @model_validator(mode="before")
    @classmethod
    def _under_ai(cls, value: Any) -> Any:
        misplaced = isinstance(value, dict) and set(value) & set(AiConfig.model_fields)
        if misplaced and "ai" not in value:
            raise ValueError("the AI settings go under a top-level 'ai:' key")
        return value


def load_ai_config(settings: Settings) -> AiConfig:
    """``services/ai/config.yaml`` validated; ``ConfigError`` lists every problem with its line."""
    path = settings.project_dir / AI_CONFIG_FILE
    if not path.exists():
        return AiConfig()
    shown = display_path(path, settings.project_dir)
    try:
        document = yamlio.load(path, shown)
    except yamlio.YamlSyntaxError as exc:
        raise ConfigError([exc.problem]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(shown, f"cannot read the file: {exc}")]) from None
    if document is None:
        return AiConfig()
    try:
        config = AiConfigFile.model_validate(document).ai
    except ValidationError as exc:
        problems = validation_problems(exc, shown, document)
        raise ConfigError(sorted(problems, key=lambda p: (p.line or 0, p.column or 0))) from None
    problems = _missing_mcp_configs(config, settings, shown, document)
    problems += _image_provider_problems(config, shown, document)
    if problems:
        raise ConfigError(problems)
    return config


def _missing_mcp_configs(
    config: AiConfig, settings: Settings, shown: str, document: Any
) -> list[Problem]:
    problems = []
    for index, path in enumerate(config.mcp_config_paths(settings)):
        if not path.is_file():
            loc = ("ai", "mcp_configs", index)
            where = yamlio.position(document, loc)
            problems.append(
                Problem(
                    shown,
                    f"no such file: {display_path(path, settings.project_dir)}",
                    key_path=yamlio.key_path(loc),
                    line=where[0] if where else None,
                    column=where[1] if where else None,
                )
            )
    return problems


def _image_provider_problems(config: AiConfig, shown: str, document: Any) -> list[Problem]:
    """``images.provider`` must name a provider that speaks the OpenAI Images API."""
    if config.images is None:
        return []
    name = config.images.provider
    provider = config.providers.get(name)
    if provider is None:
        known = ", ".join(sorted(config.providers)) or "none"
        message = f"'{name}' is not one of the providers (configured: {known})"
    elif provider.type not in IMAGE_PROVIDER_TYPES:
        message = (
            f"provider '{name}' is of type {provider.type}; images need type"
            f" {' or '.join(IMAGE_PROVIDER_TYPES)}"
        )
    else:
        return []
    loc = ("ai", "images", "provider")
    where = yamlio.position(document, loc)
    return [
        Problem(
            shown,
            message,
            key_path=yamlio.key_path(loc),
            line=where[0] if where else None,
            column=where[1] if where else None,
        )
    ]


def resolve_api_key(config: AiConfig, provider: str, settings: Settings) -> str | None:
    """The provider's API key, read now (at the start of a run); None when none is configured.

    An unset variable or unreadable file is a ``ConfigError`` naming the file and key.
    """
    reference = config.providers[provider].api_key
    if reference is None:
        return None
    try:
        return resolve_secret(reference, settings)
    except ValueError as exc:
        key_path = f"ai.providers.{provider}.api_key"
        raise ConfigError([Problem(AI_CONFIG_FILE, str(exc), key_path=key_path)]) from None
