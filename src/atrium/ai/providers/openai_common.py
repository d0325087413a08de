"""What the two OpenAI adapters (Responses, Chat Completions) share: the SDK client and how its
errors read.

Retries on 408/409/429/5xx honouring ``retry-after(-ms)`` (up to two minutes) are the SDK's
own (``max_retries``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import openai

from atrium.ai.providers.provider import (
    ProviderError,
    ProviderKind,
    ProviderOptions,
    body_message,
    unreachable,
)


def openai_client(options: ProviderOptions) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=options.api_key,
        base_url=options.base_url,
        timeout=options.timeout_s,
        max_retries=options.max_retries,
    )


@asynccontextmanager
async def translated_errors(kind: ProviderKind) -> AsyncIterator[None]:
    """SDK errors as ``ProviderError`` with the API's own message."""
    try:
        yield
    except openai.APIStatusError as exc:
        raise ProviderError(kind, body_message(exc.body, exc.message), exc.status_code) from None
    except openai.APIConnectionError as exc:
        raise ProviderError(kind, unreachable(str(exc.request.url), exc.message)) from None
    except openai.APIError as exc:
        raise ProviderError(kind, body_message(exc.body, exc.message)) from None


def error_prefixed(content: str, is_error: bool) -> str:
    """A tool result for APIs without an error flag: the model still has to read it as one."""
    return f"Error: {content}" if is_error else content
