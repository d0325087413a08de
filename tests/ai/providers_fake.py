"""Model providers on loopback, speaking each one's real wire format, streaming included, for
the AI service's tests: the providers cannot be reached from here, so their official SDKs are
pointed (``base_url``) at these instead (CONVENTIONS.md §11).

Each fake plays a script of replies, one per request, and records the requests::

    with AnthropicFake([rate_limited(), text("Hello there")]) as fake:
        client = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="test")
        ...
    assert fake.requests[1].body["model"] == "claude-sonnet-4-5"

The fakes, their endpoints, and the ``base_url`` their SDK wants (``fake.base_url`` gives it):

- ``AnthropicFake``: ``POST /v1/messages``; the root URL.
- ``OpenAIResponsesFake``: ``POST /v1/responses``; the URL + ``/v1``.
- ``OpenAIChatFake``: ``POST /v1/chat/completions``; the URL + ``/v1``.
- ``GeminiFake``: ``POST /{v1,v1beta}/models/{model}:generateContent`` and
  ``:streamGenerateContent?alt=sse``; the root URL.

Script items: ``text``, ``tool_call``, ``tool_calls`` (parallel), ``malformed_call``,
``rate_limited`` (429 + ``Retry-After``), ``server_error`` (500), or ``Reply``/``Failure`` built
by hand. Tool call ids follow each provider's style (``toolu_01…``; ``call_…`` with ``fc_…``
items; ``call_…``; none for Gemini). A fake serves from a background thread, so synchronous
tests (the CLI through CliRunner or a subprocess) can use it as well as async ones.
"""

from __future__ import annotations

from tests.ai.fake_anthropic import AnthropicFake
from tests.ai.fake_gemini import GeminiFake
from tests.ai.fake_openai_chat import OpenAIChatFake
from tests.ai.fake_openai_responses import OpenAIResponsesFake
from tests.ai.fake_script import (
    Call,
    Failure,
    ProviderFake,
    Recorded,
    Reply,
    ScriptItem,
    Usage,
    malformed_call,
    rate_limited,
    server_error,
    text,
    tool_call,
    tool_calls,
)

__all__ = [
    "AnthropicFake",
    "Call",
    "Failure",
    "GeminiFake",
    "OpenAIChatFake",
    "OpenAIResponsesFake",
    "ProviderFake",
    "Recorded",
    "Reply",
    "ScriptItem",
    "Usage",
    "malformed_call",
    "rate_limited",
    "server_error",
    "text",
    "tool_call",
    "tool_calls",
]
