"""What each adapter sends: two rounds of a tool conversation against a provider's fake, the
second request carrying the system prompt, the tools, the model's parallel calls and their
results (one of them an error) in the provider's own shape, as the fake recorded it."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from atrium.ai.providers import create_provider
from atrium.ai.providers.events import Done, TextDelta, ToolCall
from atrium.ai.providers.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    ToolResult,
    UserMessage,
)
from atrium.client.schemas import Format, ToolSpec, to_provider
from tests.ai.providers_fake import (
    AnthropicFake,
    Call,
    GeminiFake,
    OpenAIChatFake,
    OpenAIResponsesFake,
    ProviderFake,
    Reply,
    text,
)

SYSTEM = "You forecast the weather."
QUESTION = "Weather in Paris, and the time there?"
FORECAST = "mcp__weather__forecast"
NOW = "mcp__clock__now"
SPEC = ToolSpec(FORECAST, "The forecast for a city.", {"type": "object", "properties": {}})
FIRST_TURN = Reply(
    text="Let me look.",
    calls=(Call(FORECAST, '{"city": "Paris"}'), Call(NOW, '{"zone": "CET"}')),
)
SIGNATURE = base64.b64encode(b"opaque signature").decode()


async def two_rounds(kind: str, fake: ProviderFake, fmt: Format) -> tuple[ToolCall, ToolCall]:
    """Round one asks; the model calls two tools; round two sends their results back."""
    provider = create_provider(kind, api_key="k", base_url=fake.base_url, max_retries=0)
    tools = [to_provider(SPEC, fmt)]
    history: list[Message] = [UserMessage(QUESTION)]
    try:
        first = [e async for e in provider.stream(ModelRequest("m", history, SYSTEM, tools))]
        said = "".join(e.text for e in first if isinstance(e, TextDelta))
        calls = tuple(e for e in first if isinstance(e, ToolCall))
        if kind == "gemini":  # as Gemini 3 models sign their calls
            calls = (dataclasses.replace(calls[0], signature=SIGNATURE), calls[1])
        history += [
            AssistantMessage(said, calls),
            ToolResult(calls[0].id, FORECAST, "Sunny, 21 °C"),
            ToolResult(calls[1].id, NOW, "the clock is down", is_error=True),
        ]
        second = [e async for e in provider.stream(ModelRequest("m", history, SYSTEM, tools))]
    finally:
        await provider.aclose()
    last = second[-1]
    assert isinstance(last, Done)
    assert last.stop_reason == "end"
    forecast, now = calls
    return forecast, now


def second_request(fake: ProviderFake) -> Any:
    assert len(fake.requests) == 2
    return fake.requests[1].body


async def test_anthropic_sends_tool_use_and_one_user_turn_of_tool_results() -> None:
    with AnthropicFake([FIRST_TURN, text("Sunny; no time.")]) as fake:
        forecast, now = await two_rounds("anthropic", fake, "anthropic")
    body = second_request(fake)
    assert body["system"] == SYSTEM
    assert body["tools"] == [to_provider(SPEC, "anthropic")]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": forecast.id,
                    "name": FORECAST,
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": now.id, "name": NOW, "input": {"zone": "CET"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": forecast.id,
                    "content": "Sunny, 21 °C",
                    "is_error": False,
                },
                {
                    "type": "tool_result",
                    "tool_use_id": now.id,
                    "content": "the clock is down",
                    "is_error": True,
                },
            ],
        },
    ]


async def test_openai_responses_sends_function_call_and_function_call_output_items() -> None:
    with OpenAIResponsesFake([FIRST_TURN, text("Sunny; no time.")]) as fake:
        forecast, now = await two_rounds("openai", fake, "openai-responses")
    body = second_request(fake)
    assert (body["instructions"], body["store"], body["stream"]) == (SYSTEM, False, True)
    assert body["tools"] == [to_provider(SPEC, "openai-responses")]
    assert body["input"] == [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "Let me look."},
        {
            "type": "function_call",
            "call_id": forecast.id,
            "name": FORECAST,
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call", "call_id": now.id, "name": NOW, "arguments": '{"zone": "CET"}'},
        {"type": "function_call_output", "call_id": forecast.id, "output": "Sunny, 21 °C"},
        {"type": "function_call_output", "call_id": now.id, "output": "Error: the clock is down"},
    ]


async def test_openai_chat_sends_assistant_tool_calls_and_tool_messages() -> None:
    with OpenAIChatFake([FIRST_TURN, text("Sunny; no time.")]) as fake:
        forecast, now = await two_rounds("openai-chat", fake, "openai")
    body = second_request(fake)
    assert body["stream_options"] == {"include_usage": True}
    assert body["tools"] == [to_provider(SPEC, "openai")]
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": forecast.id,
                    "type": "function",
                    "function": {"name": FORECAST, "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": now.id,
                    "type": "function",
                    "function": {"name": NOW, "arguments": '{"zone": "CET"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": forecast.id, "content": "Sunny, 21 °C"},
        {"role": "tool", "tool_call_id": now.id, "content": "Error: the clock is down"},
    ]


async def test_gemini_sends_function_call_and_function_response_parts() -> None:
    with GeminiFake([FIRST_TURN, text("Sunny; no time.")]) as fake:
        await two_rounds("gemini", fake, "gemini")
    body = second_request(fake)
    assert fake.requests[1].path.endswith("/models/m:streamGenerateContent")
    assert body["systemInstruction"]["parts"] == [{"text": SYSTEM}]
    assert body["tools"] == [{"functionDeclarations": [to_provider(SPEC, "gemini")]}]
    # Gemini gave no call ids: the ones made up for the loop are not sent back.
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": QUESTION}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me look."},
                {
                    "functionCall": {"name": FORECAST, "args": {"city": "Paris"}},
                    "thoughtSignature": SIGNATURE,
                },
                {"functionCall": {"name": NOW, "args": {"zone": "CET"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": FORECAST, "response": {"output": "Sunny, 21 °C"}}},
                {"functionResponse": {"name": NOW, "response": {"error": "the clock is down"}}},
            ],
        },
    ]
