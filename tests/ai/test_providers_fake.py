"""The provider fakes speak wire formats the official SDKs accept: each SDK, pointed at its fake,
streams text, gets tool calls (one, several in a turn, malformed), retries a 429 as it would
against the provider, and reports usage."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.ai.providers_fake import (
    AnthropicFake,
    GeminiFake,
    OpenAIChatFake,
    OpenAIResponsesFake,
    Usage,
    malformed_call,
    rate_limited,
    server_error,
    text,
    tool_call,
    tool_calls,
)
from tests.polling import until

# google-genai's async client subclasses aiohttp.ClientSession (its default transport when aiohttp
# is installed, as here), which aiohttp deprecates; the SDK's warning, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)

# Typed Any: each SDK types its messages with its own TypedDicts; this one is all of them.
USER: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"city": "Paris", "unit": "celsius"}


# Anthropic Messages


def _anthropic(fake: AnthropicFake) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="test")


async def _anthropic_stream(fake: AnthropicFake) -> anthropic.types.Message:
    async with (
        _anthropic(fake) as client,
        client.messages.stream(model="claude-x", max_tokens=100, messages=USER) as events,
    ):
        return await events.get_final_message()


async def test_anthropic_streams_text_in_deltas_and_reports_usage() -> None:
    with AnthropicFake([text("It is sunny in Paris.", usage=Usage(30, 6))]) as fake:
        async with (
            _anthropic(fake) as client,
            client.messages.stream(model="m", max_tokens=99, messages=USER) as stream,
        ):
            deltas = [delta async for delta in stream.text_stream]
            message = await stream.get_final_message()
    assert len(deltas) == 3
    assert "".join(deltas) == "It is sunny in Paris."
    assert (message.usage.input_tokens, message.usage.output_tokens) == (30, 6)
    assert message.stop_reason == "end_turn"
    assert fake.requests[0].body["messages"] == USER


async def test_anthropic_tool_calls_arrive_with_parsed_input_and_their_own_ids() -> None:
    script = [tool_call("weather", WEATHER), tool_calls(("a", {"x": 1}), ("b", {"y": [2]}))]
    with AnthropicFake(script) as fake:
        one = await _anthropic_stream(fake)
        two = await _anthropic_stream(fake)
    assert [(block.name, block.input) for block in one.content if block.type == "tool_use"] == [
        ("weather", WEATHER)
    ]
    uses = [block for block in two.content if block.type == "tool_use"]
    assert [(use.name, use.input) for use in uses] == [("a", {"x": 1}), ("b", {"y": [2]})]
    assert all(use.id.startswith("toolu_01") for use in uses)
    assert len({use.id for use in uses}) == 2
    assert two.stop_reason == "tool_use"


async def test_anthropic_malformed_input_reaches_the_raw_stream_as_it_was_sent() -> None:
    with AnthropicFake([malformed_call("weather", '{"city": "Par')]) as fake:
        async with _anthropic(fake) as client:
            events = await client.messages.create(
                model="m", max_tokens=9, messages=USER, stream=True
            )
            pieces = [
                event.delta.partial_json
                async for event in events
                if isinstance(event, anthropic.types.RawContentBlockDeltaEvent)
                and isinstance(event.delta, anthropic.types.InputJSONDelta)
            ]
    assert "".join(pieces) == '{"city": "Par'


async def test_anthropic_sdk_retries_a_429_after_retry_after_then_succeeds() -> None:
    with AnthropicFake([rate_limited("0.01"), text("done")]) as fake:
        async with _anthropic(fake) as client:
            message = await client.messages.create(model="m", max_tokens=9, messages=USER)
    assert [block.text for block in message.content if block.type == "text"] == ["done"]
    assert [request.headers["x-stainless-retry-count"] for request in fake.requests] == ["0", "1"]


async def test_anthropic_500_is_an_api_error_when_retries_are_off() -> None:
    with AnthropicFake([server_error()]) as fake:
        client = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="t", max_retries=0)
        async with client:
            with pytest.raises(anthropic.InternalServerError) as raised:
                await client.messages.create(model="m", max_tokens=9, messages=USER)
    assert raised.value.status_code == 500
    assert fake.remaining == 0


# OpenAI Responses


def _openai(fake: OpenAIResponsesFake | OpenAIChatFake, retries: int = 2) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=retries)


async def _responses_events(fake: OpenAIResponsesFake) -> list[Any]:
    async with _openai(fake) as client:
        stream = await client.responses.create(model="gpt-x", input=USER, stream=True)
        return [event async for event in stream]


async def test_responses_stream_text_deltas_and_complete_with_usage() -> None:
    with OpenAIResponsesFake([text("Sunny, 21 degrees.", usage=Usage(40, 5))]) as fake:
        events = await _responses_events(fake)
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) == 3
    assert "".join(deltas) == "Sunny, 21 degrees."
    completed = events[-1].response
    assert completed.output_text == "Sunny, 21 degrees."
    assert completed.usage is not None
    assert (completed.usage.input_tokens, completed.usage.output_tokens) == (40, 5)
    assert fake.requests[0].body["input"] == USER


async def test_responses_function_calls_stream_their_arguments_and_complete() -> None:
    with OpenAIResponsesFake([tool_calls(("a", {"x": 1}), ("b", WEATHER))]) as fake:
        events = await _responses_events(fake)
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [json.loads(event.arguments) for event in done] == [{"x": 1}, WEATHER]
    calls = [item for item in events[-1].response.output if item.type == "function_call"]
    assert [(call.name, json.loads(call.arguments)) for call in calls] == [
        ("a", {"x": 1}),
        ("b", WEATHER),
    ]
    assert all(call.call_id.startswith("call_") and call.id.startswith("fc_") for call in calls)


async def test_responses_keep_malformed_arguments_as_sent() -> None:
    with OpenAIResponsesFake([malformed_call("weather", "{not json")]) as fake:
        async with _openai(fake) as client:
            response = await client.responses.create(model="gpt-x", input=USER)
    assert [item.arguments for item in response.output if item.type == "function_call"] == [
        "{not json"
    ]


async def test_responses_sdk_retries_a_429_then_succeeds() -> None:
    with OpenAIResponsesFake([rate_limited("0.01"), text("later")]) as fake:
        async with _openai(fake) as client:
            response = await client.responses.create(model="gpt-x", input=USER)
    assert response.output_text == "later"
    assert [request.headers["x-stainless-retry-count"] for request in fake.requests] == ["0", "1"]


# OpenAI Chat Completions


async def _chat_chunks(fake: OpenAIChatFake) -> list[Any]:
    async with _openai(fake) as client:
        stream = await client.chat.completions.create(
            model="gpt-x", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        return [chunk async for chunk in stream]


async def test_chat_streams_content_deltas_and_a_final_usage_chunk() -> None:
    with OpenAIChatFake([text("Warm and dry.", usage=Usage(17, 4))]) as fake:
        chunks = await _chat_chunks(fake)
    content = [c.choices[0].delta.content for c in chunks if c.choices]
    assert "".join(piece or "" for piece in content) == "Warm and dry."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (17, 4)


async def test_chat_tool_call_fragments_assemble_by_index() -> None:
    with OpenAIChatFake([tool_calls(("a", {"x": 1}), ("b", WEATHER))]) as fake:
        chunks = await _chat_chunks(fake)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for part in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += part.id or ""
            call["name"] += part.function.name or "" if part.function else ""
            call["arguments"] += part.function.arguments or "" if part.function else ""
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("a", {"x": 1}),
        ("b", WEATHER),
    ]
    assert all(call["id"].startswith("call_") for call in calls.values())
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


async def test_chat_without_streaming_returns_the_tool_call_and_usage() -> None:
    with OpenAIChatFake([malformed_call("weather", '{"city": ')]) as fake:
        async with _openai(fake) as client:
            completion = await client.chat.completions.create(model="gpt-x", messages=USER)
    tool_call = (completion.choices[0].message.tool_calls or [])[0]
    assert tool_call.type == "function"
    assert (tool_call.function.name, tool_call.function.arguments) == ("weather", '{"city": ')
    assert completion.usage is not None
    assert completion.usage.total_tokens == 30


async def test_chat_sdk_retries_a_429_and_a_500() -> None:
    with OpenAIChatFake([rate_limited("0.01"), server_error(), text("ok")]) as fake:
        async with _openai(fake) as client:
            completion = await client.chat.completions.create(model="gpt-x", messages=USER)
    assert completion.choices[0].message.content == "ok"
    assert len(fake.requests) == 3


# Gemini


def _gemini(fake: GeminiFake, attempts: int = 1) -> genai.Client:
    # google-genai retries only when told to, on 408/429/5xx, with its own backoff.
    retry = genai_types.HttpRetryOptions(attempts=attempts, initial_delay=0.01, max_delay=0.01)
    options = genai_types.HttpOptions(base_url=fake.base_url, retry_options=retry)
    return genai.Client(api_key="test", http_options=options)


async def _gemini_chunks(fake: GeminiFake) -> list[genai_types.GenerateContentResponse]:
    async with _gemini(fake).aio as client:
        stream = await client.models.generate_content_stream(model="gemini-x", contents="Hi")
        return [chunk async for chunk in stream]


async def test_gemini_streams_text_chunks_and_reports_usage() -> None:
    with GeminiFake([text("Clear skies all day.", usage=Usage(11, 8))]) as fake:
        chunks = await _gemini_chunks(fake)
    assert len(chunks) == 3
    assert "".join(chunk.text or "" for chunk in chunks) == "Clear skies all day."
    usage = chunks[-1].usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count) == (11, 8)
    assert chunks[-1].candidates is not None
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    request = fake.requests[0]
    # The API version in the path is the SDK's choice (v1 or v1beta); the fake serves both.
    assert request.path.endswith("/models/gemini-x:streamGenerateContent")
    assert request.query == {"alt": "sse"}
    assert request.headers["x-goog-api-key"] == "test"


async def test_gemini_parallel_function_calls_arrive_with_their_args() -> None:
    with GeminiFake([tool_calls(("a", {"x": 1}), ("b", WEATHER))]) as fake:
        chunks = await _gemini_chunks(fake)
    calls = [call for chunk in chunks for call in chunk.function_calls or []]
    assert [(call.name, call.args) for call in calls] == [("a", {"x": 1}), ("b", WEATHER)]


async def test_gemini_reports_a_malformed_call_as_its_finish_reason() -> None:
    with GeminiFake([malformed_call("weather")]) as fake:
        async with _gemini(fake).aio as client:
            response = await client.models.generate_content(model="gemini-x", contents="Hi")
    assert response.function_calls is None
    assert response.candidates is not None
    reason = response.candidates[0].finish_reason
    assert reason == genai_types.FinishReason.MALFORMED_FUNCTION_CALL
    assert fake.requests[0].path.endswith("/models/gemini-x:generateContent")


async def test_gemini_sdk_retries_a_429_when_retries_are_configured() -> None:
    with GeminiFake([rate_limited(), tool_call("weather", WEATHER)]) as fake:
        async with _gemini(fake, attempts=2).aio as client:
            response = await client.models.generate_content(model="gemini-x", contents="Hi")
    assert [(call.name, call.args) for call in response.function_calls or []] == [
        ("weather", WEATHER)
    ]
    assert len(fake.requests) == 2


async def test_gemini_429_is_a_client_error_naming_the_status() -> None:
    with GeminiFake([rate_limited()]) as fake:
        async with _gemini(fake).aio as client:
            with pytest.raises(genai_errors.ClientError) as raised:
                await client.models.generate_content(model="gemini-x", contents="Hi")
    assert (raised.value.code, raised.value.status) == (429, "RESOURCE_EXHAUSTED")


# What every fake does


async def test_a_stalled_stream_is_counted_abandoned_once_the_client_leaves() -> None:
    with AnthropicFake([text("abcdefghi", stall=True)]) as fake:
        async with (
            _anthropic(fake) as client,
            client.messages.stream(model="m", max_tokens=9, messages=USER) as stream,
        ):
            first = await anext(aiter(stream.text_stream))
        assert first == "abc"
        await until(lambda: fake.abandoned == 1, what="the fake to see the client leave")


async def test_a_request_past_the_end_of_the_script_is_refused_not_retried() -> None:
    with OpenAIChatFake([text("only one")]) as fake:
        async with _openai(fake) as client:
            await client.chat.completions.create(model="gpt-x", messages=USER)
            with pytest.raises(openai.BadRequestError):
                await client.chat.completions.create(model="gpt-x", messages=USER)
    assert len(fake.requests) == 2
