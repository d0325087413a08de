"""A client of the ``soul`` server for its tests: in-process over real HTTP with the official
SDK client, each request vouched for as the gateway would, and optionally a client's own model
(``Sampler``) answering MCP sampling through the SDK's sampling callback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.types import (
    CallToolResult,
    CreateMessageRequestParams,
    CreateMessageResult,
    ErrorData,
    TextContent,
)

from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier
from atrium.servers.soul import create_server
from atrium.settings import Settings, load_settings
from tests.ai.project import KEY_VARIABLE
from tests.servers.helpers import serving
from tests.trust import assertion


class Sampler:
    """A client's own model: answers each sampling request with the next scripted text (an
    ``ErrorData`` refuses it), and keeps what it was asked."""

    def __init__(self, *answers: str | ErrorData, model: str = "client-model") -> None:
        self.answers = list(answers)
        self.model = model
        self.asked: list[CreateMessageRequestParams] = []

    async def __call__(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult | ErrorData:
        self.asked.append(params)
        answer = self.answers.pop(0)
        if isinstance(answer, ErrorData):
            return answer
        content = TextContent(type="text", text=answer)
        return CreateMessageResult(
            role="assistant", content=content, model=self.model, stop_reason="endTurn"
        )

    def user_text(self, number: int = 0) -> str:
        content = self.asked[number].messages[0].content
        assert isinstance(content, TextContent)
        return content.text


def with_key(project: Settings) -> Settings:
    return load_settings(project.project_dir, {**project.environ, KEY_VARIABLE: "test-key"})


@asynccontextmanager
async def soul(
    settings: Settings,
    *,
    subject: str | None = "ada",
    sampling: Sampler | None = None,
    mode: str = "auto",
) -> AsyncIterator[Client]:
    """A client of the soul server, each request vouched for as ``subject``; with ``sampling``
    it declares the sampling capability and answers with that model."""
    verifier = AssertionVerifier.load(settings.state_dir / PUBLIC_FILE, "soul")

    async def vouch(request: httpx2.Request) -> None:
        request.headers.update(assertion(settings.state_dir, "soul", subject=subject))

    async with (
        serving(create_server(settings), verifier) as url,
        httpx2.AsyncClient(timeout=30, event_hooks={"request": [vouch]}) as http,
        Client(
            streamable_http_client(f"{url}/mcp", http_client=http),
            mode=mode,
            sampling_callback=sampling,
        ) as client,
    ):
        yield client


def strings(value: Any) -> Iterator[str]:
    """Every string inside a recorded JSON body."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def sent(body: Any) -> str:
    return "\n".join(strings(body))


def failed(result: CallToolResult) -> str:
    assert result.is_error, result
    assert isinstance(result.content[0], TextContent)
    return result.content[0].text


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content
