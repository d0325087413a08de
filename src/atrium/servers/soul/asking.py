"""Which model answers a ``soul`` tool, and what it said.

The project's own model comes first: the AI service's default provider and model
(``services/ai/config.yaml``, through ``atrium.ai.complete``). With no provider configured at
all, the calling client's model is asked through MCP sampling, but only when the client
declared the ``sampling`` capability; otherwise the tool fails with what to configure. A
provider that is configured but broken (no key, unreachable) is an error to fix, never a
reason to fall back: the caller would not know which model answered. Nothing is made up: with
no model there is no answer.

``ask`` runs as an SDK resolver (``mcp.server.mcpserver.resolve``) so sampling works in both
protocol eras: it returns a ``Sample`` marker, which the SDK sends as a
``sampling/createMessage`` request mid-call before 2026-07-28, and as an ``input_required``
result that the client answers by retrying the call from 2026-07-28 on; either way the tool
body receives the client's ``CreateMessageResult``, which ``reply_of`` reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Sample
from mcp.types import CreateMessageResult, SamplingMessage, TextContent
from pydantic import BaseModel, Field

from atrium.ai.complete import NoProviderConfigured, complete
from atrium.ai.config import AI_CONFIG_FILE
from atrium.ai.providers.provider import ProviderError, ProviderSetupError
from atrium.errors import ConfigError
from atrium.servers.builtin import about_api_key, key_hint
from atrium.servers.soul.prompts import Prompt
from atrium.settings import Settings
from atrium.store import Store

logger = logging.getLogger(__name__)

Via = Literal["provider", "sampling"]

NO_MODEL = (
    f"no model to answer with: no AI provider is configured in {AI_CONFIG_FILE} (add one"
    " under ai.providers and set default_model; its API key as {$env: VARIABLE}, passed to"
    " the soul server under env: in services/mcp/soul.yaml), and your client did not declare"
    " the MCP sampling capability, so its own model cannot be asked either"
)

KEY_HINT = "\n" + key_hint("soul")


@dataclass(frozen=True)
class Reply:
    """A model's answer, whichever model gave it. Token counts are unknown through sampling."""

    text: str
    via: Via
    model: str
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    truncated: bool = False


class ModelUsed(BaseModel):
    """Which model answered: part of every soul tool's structured result."""

    via: Via = Field(
        description="provider: the project's AI provider; sampling: your client's own model."
    )
    provider: str | None = Field(description="The provider's name in services/ai/config.yaml.")
    model: str = Field(description="The model, as its provider or your client named it.")
    input_tokens: int | None = Field(description="Null through sampling (not reported).")
    output_tokens: int | None = Field(description="Null through sampling (not reported).")
    truncated: bool = Field(description="The answer was cut at its length limit.")


def used(reply: Reply) -> ModelUsed:
    return ModelUsed(
        via=reply.via,
        provider=reply.provider,
        model=reply.model,
        input_tokens=reply.input_tokens,
        output_tokens=reply.output_tokens,
        truncated=reply.truncated,
    )


async def ask(settings: Settings, ctx: Context[Store, Any], prompt: Prompt) -> Reply | Sample:
    """The project's model's reply to ``prompt``, or the request to sample the client's."""
    try:
        completion = await complete(
            settings, system=prompt.system, prompt=prompt.user, max_tokens=prompt.max_tokens
        )
    except NoProviderConfigured:
        return _sample(ctx, prompt)
    except ConfigError as exc:
        raise ToolError(str(exc) + (KEY_HINT if about_api_key(exc) else "")) from None
    except ProviderSetupError as exc:
        raise ToolError(str(exc)) from None
    except ProviderError as exc:
        logger.warning("the project's model did not answer: %s", exc)
        raise ToolError(f"the project's model did not answer: {exc}") from None
    return Reply(
        text=completion.text,
        via="provider",
        model=completion.model,
        provider=completion.provider,
        input_tokens=completion.usage.input_tokens,
        output_tokens=completion.usage.output_tokens,
        truncated=completion.stop_reason == "max_tokens",
    )


def _sample(ctx: Context[Store, Any], prompt: Prompt) -> Sample:
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.sampling is None:
        raise ToolError(NO_MODEL)
    message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt.user))
    return Sample([message], max_tokens=prompt.max_tokens, system_prompt=prompt.system)


def reply_of(answer: Reply | CreateMessageResult) -> Reply:
    """What the tool body was given, as a ``Reply``: a sampled result is read here."""
    if isinstance(answer, Reply):
        return answer
    content = answer.content if isinstance(answer.content, list) else [answer.content]
    text = "".join(part.text for part in content if isinstance(part, TextContent))
    if not text.strip():
        kinds = ", ".join(sorted({part.type for part in content})) or "nothing"
        raise ToolError(f"your client's model answered with no text (it sent {kinds})")
    return Reply(
        text=text,
        via="sampling",
        model=answer.model,
        truncated=answer.stop_reason == "maxTokens",
    )
