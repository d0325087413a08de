"""Anthropic's Messages API through the official ``anthropic`` SDK, streamed.

The raw stream events are read, not the SDK's accumulating helper, so that a tool call whose
``input_json_delta`` fragments do not make valid JSON still comes out as a ``ToolCall`` with
the raw string. Retries on 408/409/429/5xx, honouring ``retry-after(-ms)``, are the SDK's own
(``max_retries``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import anthropic
from anthropic.types import MessageParam, RawMessageStreamEvent, ToolParam

from atrium.ai.providers.events import Done, Event, StopReason, TextDelta, ToolCall, Usage
from atrium.ai.providers.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    ToolResult,
    UserMessage,
    arguments_object,
)
from atrium.ai.providers.provider import (
    ProviderError,
    ProviderKind,
    ProviderOptions,
    body_message,
    unreachable,
)
from atrium.client.schemas import Format

_STOP: dict[str, StopReason] = {
    "end_turn": "end",
    "stop_sequence": "end",
    "tool_use": "tool_calls",
    "max_tokens": "max_tokens",
}


class AnthropicProvider:
    kind: ProviderKind = "anthropic"
    tool_format: Format = "anthropic"

    def __init__(self, options: ProviderOptions) -> None:
        self._client = anthropic.AsyncAnthropic(
            api_key=options.api_key,
            base_url=options.base_url,
            timeout=options.timeout_s,
            max_retries=options.max_retries,
        )

    async def stream(self, request: ModelRequest) -> AsyncGenerator[Event, None]:
        extra: dict[str, Any] = {}
        if request.system:
            extra["system"] = request.system
        if request.tools:
            extra["tools"] = cast("list[ToolParam]", list(request.tools))
            if request.tool_choice == "none":
                extra["tool_choice"] = {"type": "none"}
        try:
            events = await self._client.messages.create(
                model=request.model,
                max_tokens=request.max_tokens,
                messages=to_anthropic(request.messages),
                stream=True,
                **extra,
            )
            async with events:
                turn = _Turn()
                async for event in events:
                    for out in turn.feed(event):
                        yield out
                for out in turn.finish():
                    yield out
        except anthropic.APIStatusError as exc:
            raise ProviderError(
                self.kind, body_message(exc.body, exc.message), exc.status_code
            ) from None
        except anthropic.APIConnectionError as exc:
            raise ProviderError(self.kind, unreachable(str(exc.request.url), exc.message)) from None
        except anthropic.APIError as exc:
            raise ProviderError(self.kind, body_message(exc.body, exc.message)) from None

    async def aclose(self) -> None:
        await self._client.close()


@dataclass
class _PendingCall:
    id: str
    name: str
    parts: list[str] = field(default_factory=list)


@dataclass
class _Turn:
    """The state of one streamed message: tool calls being assembled, usage, stop reason."""

    calls: dict[int, _PendingCall] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    reason: str = ""

    def feed(self, event: RawMessageStreamEvent) -> Iterator[Event]:
        if event.type == "message_start":
            self._count_input(event.message.usage)
            self.output_tokens = event.message.usage.output_tokens
        elif event.type == "content_block_start" and event.content_block.type == "tool_use":
            block = event.content_block
            self.calls[event.index] = _PendingCall(block.id, block.name)
        elif event.type == "content_block_delta":
            if event.delta.type == "text_delta":
                yield TextDelta(event.delta.text)
            elif event.delta.type == "input_json_delta" and event.index in self.calls:
                self.calls[event.index].parts.append(event.delta.partial_json)
        elif event.type == "content_block_stop" and event.index in self.calls:
            call = self.calls.pop(event.index)
            yield ToolCall(call.id, call.name, "".join(call.parts) or "{}")
        elif event.type == "message_delta":
            self.reason = event.delta.stop_reason or self.reason
            self.output_tokens = event.usage.output_tokens
            if event.usage.input_tokens is not None:
                self._count_input(event.usage)

    def _count_input(self, usage: Any) -> None:
        # Cached tokens are billed input too; Anthropic reports them apart from input_tokens.
        self.input_tokens = (
            (usage.input_tokens or 0)
            + (usage.cache_creation_input_tokens or 0)
            + (usage.cache_read_input_tokens or 0)
        )

    def finish(self) -> Iterator[Event]:
        yield Usage(self.input_tokens, self.output_tokens)
        yield Done(_STOP.get(self.reason, "other"), self.reason)


def to_anthropic(messages: Sequence[Message]) -> list[MessageParam]:
    """The conversation as Messages API turns: tool calls are ``tool_use`` blocks of the
    assistant, their results ``tool_result`` blocks of the next user turn; consecutive blocks of
    one role go into one message, as the API requires of parallel tool results."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        role, blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return cast("list[MessageParam]", turns)


def _blocks(message: Message) -> tuple[str, list[dict[str, Any]]]:
    if isinstance(message, UserMessage):
        return "user", [{"type": "text", "text": message.text}]
    if isinstance(message, ToolResult):
        block = {
            "type": "tool_result",
            "tool_use_id": message.call_id,
            "content": message.content,
            "is_error": message.is_error,
        }
        return "user", [block]
    return "assistant", _assistant_blocks(message)


def _assistant_blocks(message: AssistantMessage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.text:
        blocks.append({"type": "text", "text": message.text})
    blocks += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": arguments_object(c)}
        for c in message.tool_calls
    ]
    return blocks
