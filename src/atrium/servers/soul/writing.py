"""The ``soul`` server's writing tools: ``summarize``, ``rewrite``, ``suggest_titles`` and
``extract_keywords``, and (from ``answers``) ``answer_from_content``.

Each tool's model answer is a parameter filled by a resolver (``Resolve``) that checks the
arguments and asks the model (``asking.ask``): the project's provider, else the client's own
model through sampling, else a tool error. The body only reads the answer into the tool's
structured result. Nothing is stored and nothing is owned: the text is the caller's and goes
back to the caller, so the writing tools serve whoever the gateway let through (its OAuth
decides), and only ``answer_from_content``, which reads the caller's content, needs a
signed-in caller.

This module does not use ``from __future__ import annotations``, on purpose: the SDK reads a
resolver from the tool's evaluated annotations, and the resolvers here are closures over the
project's settings, which a string annotation could not name.
"""

import logging
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Resolve, Sample
from mcp.types import CallToolResult, CreateMessageResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from atrium.servers.soul.answers import add_answer_tool
from atrium.servers.soul.asking import ModelUsed, Reply, ask, reply_of, used
from atrium.servers.soul.prompts import (
    TONES,
    Tone,
    keywords_prompt,
    listed,
    rewrite_prompt,
    summary_prompt,
    titles_prompt,
)
from atrium.servers.toolkit import AtriumServer
from atrium.servers.trust import current_caller
from atrium.settings import Settings
from atrium.store import Store

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 40_000
# A rewrite answers with about as much text as it was given: a smaller cap keeps the answer
# within what models write in one reply.
MAX_REWRITE_CHARS = 20_000

# Read-only: nothing is stored or changed, so a tools:read token may call them. Open world:
# the text goes to a model API (the project's provider) or the client's own model.
MODEL_TOOL = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)

Text = Annotated[
    str, Field(description=f"The text to work on, at most {MAX_TEXT_CHARS:,} characters.")
]
Answer = Reply | CreateMessageResult


class Summary(BaseModel):
    summary: str
    words: int = Field(description="Words in the summary.")
    model: ModelUsed


class Rewrite(BaseModel):
    text: str = Field(description="The rewritten text.")
    tone: Tone
    model: ModelUsed


class Titles(BaseModel):
    titles: list[str] = Field(description="At most `count` distinct titles, best first.")
    model: ModelUsed


class Keywords(BaseModel):
    keywords: list[str] = Field(description="At most `count` keywords, most important first.")
    model: ModelUsed


def add_writing_tools(server: AtriumServer[Store], settings: Settings) -> None:
    """Register the soul server's tools on ``server``."""
    _add_summarize(server, settings)
    _add_rewrite(server, settings)
    _add_suggest_titles(server, settings)
    _add_extract_keywords(server, settings)
    add_answer_tool(server, settings)


def checked_text(text: str, limit: int = MAX_TEXT_CHARS, name: str = "text") -> str:
    """``text`` when it is within ``limit``; a tool error naming the argument otherwise."""
    if not text.strip():
        raise ToolError(f"'{name}' is empty: give the text to work on")
    if len(text) > limit:
        raise ToolError(
            f"'{name}' is {len(text):,} characters, over the limit of {limit:,}:"
            " send a shorter text, or one part at a time"
        )
    return text


def _add_summarize(server: AtriumServer[Store], settings: Settings) -> None:
    async def summary_answer(text: str, max_words: int, ctx: Context[Store, Any]) -> Reply | Sample:
        return await ask(settings, ctx, summary_prompt(checked_text(text), max_words))

    @server.tool(
        title="Summarize a text",
        description=(
            "Summarize a text in at most max_words words, in the text's own language. The"
            " project's AI model writes it, or your client's own model when none is configured."
        ),
        annotations=MODEL_TOOL,
    )
    async def summarize(
        text: Text,
        answer: Annotated[Answer, Resolve(summary_answer)],
        ctx: Context[Store, Any],
        max_words: Annotated[
            int, Field(ge=10, le=1000, description="The longest the summary may be, in words.")
        ] = 150,
    ) -> Annotated[CallToolResult, Summary]:
        reply = _answered(ctx, "summarize", answer)
        summary = reply.text.strip()
        result = Summary(summary=summary, words=len(summary.split()), model=used(reply))
        return _result(summary, result)


def _add_rewrite(server: AtriumServer[Store], settings: Settings) -> None:
    async def rewrite_answer(text: str, tone: Tone, ctx: Context[Store, Any]) -> Reply | Sample:
        return await ask(settings, ctx, rewrite_prompt(checked_text(text, MAX_REWRITE_CHARS), tone))

    tones = "; ".join(TONES.values())

    @server.tool(
        title="Rewrite a text in a tone",
        description=(
            "Rewrite a text in another tone, keeping its meaning, facts and formatting."
            f" Tones: {tones}."
        ),
        annotations=MODEL_TOOL,
    )
    async def rewrite(
        text: Annotated[
            str,
            Field(description=f"The text to rewrite, at most {MAX_REWRITE_CHARS:,} characters."),
        ],
        tone: Annotated[Tone, Field(description="The tone to write in.")],
        answer: Annotated[Answer, Resolve(rewrite_answer)],
        ctx: Context[Store, Any],
    ) -> Annotated[CallToolResult, Rewrite]:
        reply = _answered(ctx, "rewrite", answer)
        result = Rewrite(text=reply.text.strip(), tone=tone, model=used(reply))
        return _result(result.text, result)


def _add_suggest_titles(server: AtriumServer[Store], settings: Settings) -> None:
    async def titles_answer(text: str, count: int, ctx: Context[Store, Any]) -> Reply | Sample:
        return await ask(settings, ctx, titles_prompt(checked_text(text), count))

    @server.tool(
        title="Suggest titles",
        description="Suggest distinct titles for a text (a post, a page, a document).",
        annotations=MODEL_TOOL,
    )
    async def suggest_titles(
        text: Text,
        answer: Annotated[Answer, Resolve(titles_answer)],
        ctx: Context[Store, Any],
        count: Annotated[int, Field(ge=1, le=10, description="How many titles.")] = 5,
    ) -> Annotated[CallToolResult, Titles]:
        reply = _answered(ctx, "suggest_titles", answer)
        titles = _items(reply, count, "titles")
        return _result("\n".join(titles), Titles(titles=titles, model=used(reply)))


def _add_extract_keywords(server: AtriumServer[Store], settings: Settings) -> None:
    async def keywords_answer(text: str, count: int, ctx: Context[Store, Any]) -> Reply | Sample:
        return await ask(settings, ctx, keywords_prompt(checked_text(text), count))

    @server.tool(
        title="Extract keywords",
        description="The most important keywords or key phrases of a text, most important first.",
        annotations=MODEL_TOOL,
    )
    async def extract_keywords(
        text: Text,
        answer: Annotated[Answer, Resolve(keywords_answer)],
        ctx: Context[Store, Any],
        count: Annotated[int, Field(ge=1, le=30, description="How many keywords.")] = 10,
    ) -> Annotated[CallToolResult, Keywords]:
        reply = _answered(ctx, "extract_keywords", answer)
        keywords = _items(reply, count, "keywords")
        return _result("\n".join(keywords), Keywords(keywords=keywords, model=used(reply)))


def _answered(ctx: Context[Store, Any], tool: str, answer: Answer) -> Reply:
    """The model's reply, logged without its text: who asked, which model, how many tokens."""
    reply = reply_of(answer)
    if not reply.text.strip():
        raise ToolError(f"the model ({reply.model}) gave an empty answer; nothing to return")
    try:
        subject = current_caller(ctx).subject or "anonymous"
    except LookupError:  # a server run --unauthenticated: nobody vouched for anyone
        subject = "-"
    logger.info(
        "%s for %s via %s (%s): %s tokens in, %s out%s",
        tool,
        subject,
        reply.via,
        reply.model,
        reply.input_tokens,
        reply.output_tokens,
        ", cut at the limit" if reply.truncated else "",
    )
    return reply


def _items(reply: Reply, count: int, what: str) -> list[str]:
    items = listed(reply.text, count)
    if not items:
        raise ToolError(f"the model ({reply.model}) listed no {what}; nothing to return")
    return items


def _result(text: str, structured: BaseModel) -> CallToolResult:
    # The text a model reads is the result itself, not the JSON around it.
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=structured.model_dump(mode="json"),
    )
