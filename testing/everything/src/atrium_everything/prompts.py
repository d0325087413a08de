"""Prompts of the ``prompts-*`` scenarios, and completion of their arguments.

``server/prompts`` (2025-11-25 and 2026-07-28): a prompt without arguments, one with two
required arguments, one embedding a resource, one with an image. ``completion/complete``
(``server/utilities/completion``) suggests values for the arguments of
``test_prompt_with_arguments`` and for the ``id`` of the resource template, by prefix.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    EmbeddedResource,
    ImageContent,
    PromptReference,
    ResourceTemplateReference,
    TextResourceContents,
)

from atrium_everything.media import PNG_MIME_TYPE, base64_text, red_pixel_png
from atrium_everything.resources import TEMPLATE_URI

SUGGESTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("test_prompt_with_arguments", "arg1"): ("paris", "park", "party", "test", "testing"),
    ("test_prompt_with_arguments", "arg2"): ("world", "word", "work"),
    (TEMPLATE_URI, "id"): ("1", "12", "123", "42"),
}
"""Candidate values per (prompt name or template URI, argument name)."""

MAX_COMPLETION_VALUES = 100
"""The spec caps one completion answer at 100 values."""


def add_prompts(server: MCPServer[Any]) -> None:
    """Register the prompts of the ``prompts-*`` scenarios and the completion handler."""

    @server.prompt(description="A prompt without arguments.")
    def test_simple_prompt() -> list[Message]:
        return [UserMessage("This is a simple prompt for testing.")]

    @server.prompt(description="A prompt with two required arguments.")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[Message]:
        return [UserMessage(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")]

    @server.prompt(description="A prompt embedding the resource named by resourceUri.")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
        contents = TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        return [
            UserMessage(EmbeddedResource(type="resource", resource=contents)),
            UserMessage("Please process the embedded resource above."),
        ]

    @server.prompt(description="A prompt with a PNG image.")
    def test_prompt_with_image() -> list[Message]:
        image = ImageContent(
            type="image", data=base64_text(red_pixel_png()), mime_type=PNG_MIME_TYPE
        )
        return [UserMessage(image), UserMessage("Please analyze the image above.")]

    server.completion()(complete)  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated


async def complete(
    ref: PromptReference | ResourceTemplateReference,
    argument: CompletionArgument,
    context: CompletionContext | None,
) -> Completion:
    """Candidates for ``argument`` that start with what the user typed so far."""
    owner = ref.name if isinstance(ref, PromptReference) else ref.uri
    candidates = SUGGESTIONS.get((owner, argument.name), ())
    values = [value for value in candidates if value.startswith(argument.value)]
    return Completion(
        values=values[:MAX_COMPLETION_VALUES],
        total=len(values),
        has_more=len(values) > MAX_COMPLETION_VALUES,
    )
