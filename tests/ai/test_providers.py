"""The provider adapters, each through its official SDK against a fake of its API on loopback:
one stream of events for every provider (text deltas, whole tool calls, usage, the stop), the
conversation sent back in each provider's own shape, retries that honour ``Retry-After``, the
provider's errors, and a missing key or SDK stopping a run before it starts."""

from __future__ import annotations

import email.utils
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from atrium.ai.providers import KINDS, create_provider, retry
from atrium.ai.providers.events import Done, Event, TextDelta, ToolCall, Usage
from atrium.ai.providers.messages import ModelRequest, UserMessage
from atrium.ai.providers.provider import Provider, ProviderError, ProviderSetupError
from atrium.errors import EXIT_CONFIG
from tests.ai.providers_fake import (
    AnthropicFake,
    Failure,
    GeminiFake,
    OpenAIChatFake,
    OpenAIResponsesFake,
    ProviderFake,
    malformed_call,
    rate_limited,
    server_error,
    text,
    tool_call,
    tool_calls,
)
from tests.ai.providers_fake import Usage as FakeUsage

WEATHER = {"city": "Paris", "unit": "celsius"}
FORECAST = "mcp__weather__forecast"
QUESTION = ModelRequest(model="model-x", messages=[UserMessage("Weather in Paris?")])


@dataclass(frozen=True)
class Case:
    kind: str
    fake: Callable[[list[Any]], ProviderFake]


CASES = [
    Case("anthropic", AnthropicFake),
    Case("openai", OpenAIResponsesFake),
    Case("openai-chat", OpenAIChatFake),
    Case("gemini", GeminiFake),
]
EVERY_PROVIDER = pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])


@asynccontextmanager
async def provider_for(
    kind: str, fake: ProviderFake, *, retries: int = 2
) -> AsyncIterator[Provider]:
    provider = create_provider(
        kind, api_key="test-key", base_url=fake.base_url, timeout_s=10, max_retries=retries
    )
    try:
        yield provider
    finally:
        await provider.aclose()


async def events_of(case: Case, script: list[Any], *, retries: int = 2) -> list[Event]:
    with case.fake(script) as fake:
        async with provider_for(case.kind, fake, retries=retries) as provider:
            return [event async for event in provider.stream(QUESTION)]


def calls_in(events: list[Event]) -> list[ToolCall]:
    return [event for event in events if isinstance(event, ToolCall)]


@EVERY_PROVIDER
async def test_streamed_text_deltas_assemble_and_usage_is_reported(case: Case) -> None:
    reply = text("It is sunny in Paris.", usage=FakeUsage(30, 6), deltas=3)
    events = await events_of(case, [reply])
    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert len(deltas) == 3
    assert "".join(deltas) == "It is sunny in Paris."
    usage, done = events[-2:]
    assert usage == Usage(30, 6)
    assert isinstance(done, Done)
    assert done.stop_reason == "end"


@EVERY_PROVIDER
async def test_one_tool_call_comes_whole_and_the_turn_stops_for_it(case: Case) -> None:
    events = await events_of(case, [tool_call(FORECAST, WEATHER)])
    [call] = calls_in(events)
    assert call.name == FORECAST
    assert json.loads(call.arguments_json) == WEATHER
    assert call.id
    last = events[-1]
    assert isinstance(last, Done)
    assert last.stop_reason == "tool_calls"


@EVERY_PROVIDER
async def test_parallel_tool_calls_of_one_turn_come_in_order_with_their_own_ids(
    case: Case,
) -> None:
    script = [tool_calls((FORECAST, WEATHER), ("mcp__clock__now", {"zone": "CET"}))]
    calls = calls_in(await events_of(case, script))
    assert [(c.name, json.loads(c.arguments_json)) for c in calls] == [
        (FORECAST, WEATHER),
        ("mcp__clock__now", {"zone": "CET"}),
    ]
    assert len({c.id for c in calls}) == 2


@pytest.mark.parametrize("case", CASES[:3], ids=[c.kind for c in CASES[:3]])
async def test_malformed_arguments_are_passed_through_raw(case: Case) -> None:
    calls = calls_in(await events_of(case, [malformed_call(FORECAST, '{"city": "Par')]))
    assert [(c.name, c.arguments_json) for c in calls] == [(FORECAST, '{"city": "Par')]


async def test_gemini_reports_a_call_it_could_not_form_as_its_own_stop_reason() -> None:
    # Gemini's arguments are an object on the wire: a malformed call never arrives as one.
    events = await events_of(CASES[3], [malformed_call(FORECAST)])
    assert calls_in(events) == []
    assert events[-1] == Done("other", "MALFORMED_FUNCTION_CALL")


@EVERY_PROVIDER
async def test_a_429_is_retried_after_the_wait_retry_after_asks(case: Case) -> None:
    # Without Retry-After the first backoff is at most 0.5 s: waiting 0.8 s proves it was read.
    started = time.monotonic()
    with case.fake([rate_limited("0.8"), text("Sunny.")]) as fake:
        async with provider_for(case.kind, fake) as provider:
            events = [event async for event in provider.stream(QUESTION)]
        assert len(fake.requests) == 2
    assert time.monotonic() - started >= 0.8
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Sunny."


@EVERY_PROVIDER
async def test_a_500_is_retried_then_succeeds(case: Case) -> None:
    events = await events_of(case, [server_error(), text("Sunny.")], retries=1)
    assert isinstance(events[-1], Done)
    assert events[-1].stop_reason == "end"


@EVERY_PROVIDER
@pytest.mark.parametrize(("status", "retries"), [(401, 2), (400, 2), (500, 0)])
async def test_an_api_error_is_a_provider_error_with_the_api_message(
    case: Case, status: int, retries: int
) -> None:
    failure = Failure(status, None, f"refused with {status}")
    with pytest.raises(ProviderError) as caught:
        await events_of(case, [failure], retries=retries)
    assert caught.value.status == status
    assert f"refused with {status}" in str(caught.value)
    assert case.kind in str(caught.value)


@EVERY_PROVIDER
async def test_a_server_that_does_not_answer_is_a_provider_error_naming_it(case: Case) -> None:
    with case.fake([]) as fake:
        url = fake.base_url
    provider = create_provider(case.kind, api_key="k", base_url=url, max_retries=0)
    with pytest.raises(ProviderError) as caught:
        [event async for event in provider.stream(QUESTION)]
    await provider.aclose()
    assert caught.value.status is None
    assert f"no answer from {fake.url}/" in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "variable"),
    [
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("openai", "OPENAI_API_KEY"),
        ("gemini", "GEMINI_API_KEY"),
    ],
)
def test_a_missing_key_names_the_provider_and_the_setting(kind: str, variable: str) -> None:
    with pytest.raises(ProviderSetupError) as caught:
        create_provider(kind, api_key=None, name="main")
    assert caught.value.exit_code == EXIT_CONFIG
    message = str(caught.value)
    assert "'main'" in message
    assert "ai.providers.main.api_key" in message
    assert variable in message


def test_openai_chat_needs_a_key_only_without_a_base_url() -> None:
    with pytest.raises(ProviderSetupError):
        create_provider("openai-chat", api_key="")


async def test_a_local_openai_compatible_server_is_used_without_a_key() -> None:
    with OpenAIChatFake([text("Hi.")]) as fake:
        provider = create_provider("openai-chat", api_key=None, base_url=fake.base_url)
        events = [event async for event in provider.stream(QUESTION)]
        await provider.aclose()
    assert isinstance(events[-1], Done)
    assert fake.requests[0].headers["authorization"] == "Bearer no-key"


def test_an_unknown_provider_type_lists_the_known_ones() -> None:
    with pytest.raises(ProviderSetupError) as caught:
        create_provider("mistral", api_key="k")
    assert caught.value.exit_code == EXIT_CONFIG
    assert all(kind in str(caught.value) for kind in KINDS)


_WITHOUT_SDK = """
import sys
from atrium.ai.providers import create_provider
from atrium.ai.providers.provider import ProviderSetupError
kind, sdk = sys.argv[1:]
sys.modules[sdk] = None  # the SDK cannot be imported, as when the extra is not installed
try:
    create_provider(kind, api_key="k")
except ProviderSetupError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    ("kind", "sdk", "distribution"),
    [
        ("anthropic", "anthropic", "anthropic"),
        ("openai-chat", "openai", "openai"),
        ("gemini", "google", "google-genai"),
    ],
)
def test_a_missing_sdk_names_the_provider_and_the_extra(
    kind: str, sdk: str, distribution: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SDK, kind, sdk],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == (
        f"AI provider '{kind}' needs the {distribution} package: pip install 'atrium[ai]'"
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "not a wait"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_in_seconds_or_milliseconds(
    headers: dict[str, str], expected: float | None
) -> None:
    assert retry.retry_after_s(headers) == expected


def test_retry_after_as_an_http_date_is_the_time_until_then() -> None:
    then = email.utils.formatdate(time.time() + 30, usegmt=True)
    wait = retry.retry_after_s({"retry-after": then})
    assert wait is not None
    assert 28 <= wait <= 30


def test_a_server_asking_for_more_than_two_minutes_is_not_retried() -> None:
    assert retry.delay_s(0, {"retry-after": "121"}) is None
    assert retry.delay_s(0, {"retry-after": "120"}) == 120


def test_without_retry_after_the_backoff_doubles_up_to_its_ceiling() -> None:
    waits = [retry.delay_s(attempt, None) or 0.0 for attempt in range(6)]
    assert 0.375 <= waits[0] <= 0.5
    assert 0.75 <= waits[1] <= 1.0
    assert 6 <= waits[5] <= 8


@pytest.mark.parametrize(
    ("status", "retried"), [(429, True), (500, True), (503, True), (408, True), (400, False),
                            (401, False), (None, False)]
)  # fmt: skip
def test_which_statuses_are_retried(status: int | None, retried: bool) -> None:
    assert retry.should_retry(status) is retried


@EVERY_PROVIDER
async def test_a_stream_left_after_its_first_delta_closes_and_the_provider_goes_on(
    case: Case,
) -> None:
    # As when a run is cancelled: the loop stops reading and closes the stream.
    with case.fake([text("One two three.", deltas=3), text("Again.")]) as fake:
        async with provider_for(case.kind, fake) as provider:
            stream = provider.stream(QUESTION)
            first = await anext(stream)
            await stream.aclose()
            again = [event async for event in provider.stream(QUESTION)]
    assert isinstance(first, TextDelta)
    assert "One two three.".startswith(first.text)
    assert "".join(e.text for e in again if isinstance(e, TextDelta)) == "Again."
