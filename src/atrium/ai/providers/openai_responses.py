"""OpenAI's Responses API through the official ``openai`` SDK, streamed.

The conversation goes as input items: messages, the model's ``function_call`` items and our
``function_call_output`` items, the system prompt as ``instructions``. Requests are sent with
``store: false``: the whole conversation travels with each request, so nothing needs keeping
on OpenAI's side. A function call is taken from its ``response.output_item.done`` event, its
``arguments`` string passed on as the model wrote it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from openai.types.responses import ResponseInputParam, ResponseStreamEvent, ToolParam

from atrium.ai.providers.events import Done, Event, StopReason, TextDelta, ToolCall, Usage
from atrium.ai.providers.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    ToolResult,
    UserMessage,
)
from atrium.ai.providers.openai_common import error_prefixed, openai_client, translated_errors
from atrium.ai.providers.provider import ProviderError, ProviderKind, ProviderOptions
from atrium.client.schemas import Format


class OpenAIResponsesProvider:
    kind: ProviderKind = "openai"
    tool_format: Format = "openai-responses"

    def __init__(self, options: ProviderOptions) -> None:
        self._client = openai_client(options)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[Event, None]:
        extra: dict[str, Any] = {}
        if request.system:
            extra["instructions"] = request.system
        if request.tools:
            extra["tools"] = cast("list[ToolParam]", list(request.tools))
            if request.tool_choice == "none":
                extra["tool_choice"] = "none"
        async with translated_errors(self.kind):
            events = await self._client.responses.create(
                model=request.model,
                input=to_responses(request.messages),
                max_output_tokens=request.max_tokens,
                store=False,
                stream=True,
                **extra,
            )
            async with events:
                turn = _Turn(self.kind)
                async for event in events:
                    for out in turn.feed(event):
                        yield out
            if not turn.finished:
                raise ProviderError(self.kind, "the stream ended before the response completed")

    async def aclose(self) -> None:
        await self._client.close()


@dataclass
class _Turn:
    kind: ProviderKind
    called: bool = False
    finished: bool = False

    def feed(self, event: ResponseStreamEvent) -> Iterator[Event]:
        if event.type == "response.output_text.delta":
            yield TextDelta(event.delta)
        elif event.type == "response.output_item.done" and event.item.type == "function_call":
            self.called = True
            item = event.item
            yield ToolCall(item.call_id, item.name, item.arguments)
        elif event.type in ("response.completed", "response.incomplete"):
            yield from self._finish(event)
        elif event.type == "response.failed":
            error = event.response.error
            raise ProviderError(self.kind, error.message if error else "the response failed")
        elif event.type == "error":
            raise ProviderError(self.kind, event.message)

    def _finish(self, event: ResponseStreamEvent) -> Iterator[Event]:
        self.finished = True
        response = getattr(event, "response")  # noqa: B009 - both event types carry it
        usage = response.usage
        yield Usage(usage.input_tokens if usage else 0, usage.output_tokens if usage else 0)
        details = response.incomplete_details
        reason = details.reason if details and details.reason else str(response.status)
        yield Done(self._stop(reason), reason)

    def _stop(self, reason: str) -> StopReason:
        if self.called:
            return "tool_calls"
        if reason == "completed":
            return "end"
        return "max_tokens" if reason == "max_output_tokens" else "other"


def to_responses(messages: Sequence[Message]) -> ResponseInputParam:
    """The conversation as Responses input items."""
    items: list[dict[str, Any]] = []
    for message in messages:
        items += _items(message)
    return cast("ResponseInputParam", items)


def _items(message: Message) -> list[dict[str, Any]]:
    if isinstance(message, UserMessage):
        return [{"role": "user", "content": message.text}]
    if isinstance(message, ToolResult):
        output = error_prefixed(message.content, message.is_error)
        return [{"type": "function_call_output", "call_id": message.call_id, "output": output}]
    return _assistant_items(message)


def _assistant_items(message: AssistantMessage) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if message.text:
        items.append({"role": "assistant", "content": message.text})
    items += [
        {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments_json}
        for c in message.tool_calls
    ]
    return items
