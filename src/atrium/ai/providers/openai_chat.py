"""OpenAI Chat Completions through the official ``openai`` SDK, streamed: OpenAI itself and the
servers that speak its dialect (vLLM, Ollama, LiteLLM...) through ``base_url``.

Tool calls stream as fragments keyed by ``index`` (the id and name first, the arguments in
pieces); they are assembled and given out once the stream has ended, in index order. Usage
comes in a last chunk without choices (``stream_options.include_usage``). ``max_tokens`` is
sent rather than ``max_completion_tokens``, which several compatible servers do not know.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from atrium.ai.providers.events import Done, Event, StopReason, TextDelta, ToolCall, Usage
from atrium.ai.providers.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    ToolResult,
    UserMessage,
)
from atrium.ai.providers.openai_common import error_prefixed, openai_client, translated_errors
from atrium.ai.providers.provider import ProviderKind, ProviderOptions
from atrium.client.schemas import Format

_STOP: dict[str, StopReason] = {"stop": "end", "length": "max_tokens"}


class OpenAIChatProvider:
    kind: ProviderKind = "openai-chat"
    tool_format: Format = "openai"

    def __init__(self, options: ProviderOptions) -> None:
        self._client = openai_client(options)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[Event, None]:
        extra: dict[str, Any] = {}
        if request.tools:
            extra["tools"] = cast("list[ChatCompletionToolParam]", list(request.tools))
            if request.tool_choice == "none":
                extra["tool_choice"] = "none"
        async with translated_errors(self.kind):
            chunks = await self._client.chat.completions.create(
                model=request.model,
                messages=to_chat(request.system, request.messages),
                max_tokens=request.max_tokens,
                stream=True,
                stream_options={"include_usage": True},
                **extra,
            )
            async with chunks:
                turn = _Turn()
                async for chunk in chunks:
                    for out in turn.feed(chunk):
                        yield out
            for out in turn.finish():
                yield out

    async def aclose(self) -> None:
        await self._client.close()


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)


@dataclass
class _Turn:
    calls: dict[int, _PendingCall] = field(default_factory=dict)
    usage: Usage = field(default_factory=lambda: Usage(0, 0))
    reason: str = ""

    def feed(self, chunk: ChatCompletionChunk) -> Iterator[Event]:
        if chunk.usage is not None:
            self.usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        for choice in chunk.choices[:1]:
            if choice.delta.content:
                yield TextDelta(choice.delta.content)
            for fragment in choice.delta.tool_calls or ():
                self._add(fragment)
            self.reason = choice.finish_reason or self.reason

    def _add(self, fragment: ChoiceDeltaToolCall) -> None:
        # Some compatible servers leave out ``index`` when each call comes whole.
        index = fragment.index if fragment.index is not None else len(self.calls)
        call = self.calls.setdefault(index, _PendingCall())
        call.id = call.id or (fragment.id or "")
        if fragment.function is not None:
            call.name = call.name or (fragment.function.name or "")
            call.parts.append(fragment.function.arguments or "")

    def finish(self) -> Iterator[Event]:
        for _, call in sorted(self.calls.items()):
            call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"
            yield ToolCall(call_id, call.name, "".join(call.parts) or "{}")
        yield self.usage
        # Several compatible servers say "stop" when the model called tools.
        stop: StopReason = "tool_calls" if self.calls else _STOP.get(self.reason, "other")
        yield Done(stop, self.reason)


def to_chat(system: str, messages: Sequence[Message]) -> list[ChatCompletionMessageParam]:
    """The conversation as Chat Completions messages: the assistant's ``tool_calls`` and a
    ``tool`` message per result."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        out.append(_message(message))
    return cast("list[ChatCompletionMessageParam]", out)


def _message(message: Message) -> dict[str, Any]:
    if isinstance(message, UserMessage):
        return {"role": "user", "content": message.text}
    if isinstance(message, ToolResult):
        content = error_prefixed(message.content, message.is_error)
        return {"role": "tool", "tool_call_id": message.call_id, "content": content}
    return _assistant(message)


def _assistant(message: AssistantMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": message.text or None}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments_json},
            }
            for c in message.tool_calls
        ]
    return out
