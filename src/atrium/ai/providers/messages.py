"""A conversation as every provider adapter takes it, and one request to a model.

The model is small on purpose: a system prompt, user text, assistant turns (text and the tool
calls the model made) and tool results. Each adapter converts it to its provider's shape
(Anthropic ``tool_use``/``tool_result`` blocks, OpenAI Responses ``function_call`` items, Chat
Completions ``tool_calls`` and ``tool`` messages, Gemini ``functionCall``/``functionResponse``
parts), so the tool loop and the stored conversations never see a provider's format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from atrium.ai.providers.events import ToolCall


@dataclass(frozen=True)
class UserMessage:
    text: str


@dataclass(frozen=True)
class AssistantMessage:
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    name: str
    content: str
    is_error: bool = False


Message = UserMessage | AssistantMessage | ToolResult


@dataclass(frozen=True)
class ModelRequest:
    """One turn: ``tools`` are already in the provider's own format
    (``McpManager.provider_tools(provider.tool_format)``)."""

    model: str
    messages: Sequence[Message]
    system: str = ""
    tools: Sequence[dict[str, Any]] = field(default_factory=tuple)
    max_tokens: int = 4096
    # ``none``: the tools stay defined (a history with tool calls needs them: Anthropic refuses
    # one without) but the model may not call any; the answer-now turn of the tool loop.
    tool_choice: Literal["auto", "none"] = "auto"


def arguments_object(call: ToolCall) -> dict[str, Any]:
    """The call's arguments as an object, for providers whose history wants one (Anthropic's
    ``input``, Gemini's ``args``); arguments that are not a JSON object become ``{}``, the tool
    result that follows says what was wrong with them."""
    try:
        value = json.loads(call.arguments_json or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
