"""The ``soul`` server's ``answer_from_content``: a question answered from the project's own
content (blog posts, playbooks, skills), citing its sources.

Retrieval first, by code: full-text search (``store.content.search``) over what the caller may
read (their own content, and what is shared: published posts, project documents). No hit means
the answer is "not found in the project's content" and no model is asked at all: a model handed
nothing would answer from its own knowledge, which is the made-up answer this tool must never
give. With hits, the model gets their excerpts (each delimited as data, with its key) and must
answer from them alone, citing keys as ``[key]``, or say it is not there. The result lists every
source it was given, marked ``cited`` when the answer names it.

It reads the caller's content, so it needs a signed-in caller (``current_caller``).

No ``from __future__ import annotations`` here either (see ``writing``): the resolvers are
closures the SDK reads from evaluated annotations.
"""

import logging
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Resolve, Sample
from mcp.types import CallToolResult, CreateMessageResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from atrium.servers.soul.asking import ModelUsed, Reply, ask, reply_of, used
from atrium.servers.soul.prompts import answer_prompt, cited, says_not_found
from atrium.servers.soul.sources import search, source_texts
from atrium.servers.toolkit import AtriumServer
from atrium.servers.trust import signed_in_caller
from atrium.settings import Settings
from atrium.store import Store, StoreError
from atrium.store.content import SearchHit

logger = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2_000
NOT_FOUND_TEXT = "not found in the project's content"

# Read-only (a search and a model call); open world: the excerpts go to a model API or the
# client's own model.
ANSWER_TOOL = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)


class Source(BaseModel):
    kind: str = Field(description="What it is: a blog post, a playbook, a skill.")
    key: str = Field(description="Its key, as the answer cites it: [key].")
    title: str
    cited: bool = Field(description="The answer cites it.")


class ContentAnswer(BaseModel):
    found: bool = Field(description="False: the project's content does not answer it.")
    answer: str = Field(description=f"The answer, citing [key]s; '{NOT_FOUND_TEXT}' if not.")
    sources: list[Source] = Field(description="Every source the model was given.")
    model: ModelUsed | None = Field(description="Null when nothing was found: no model asked.")


def add_answer_tool(server: AtriumServer[Store], settings: Settings) -> None:
    """Register ``answer_from_content`` on the soul server of ``settings``."""

    async def sources_for(question: str, limit: int, ctx: Context[Store, Any]) -> list[SearchHit]:
        subject = _subject(ctx)
        if not question.strip():
            raise ToolError("'question' is empty: ask something")
        if len(question) > MAX_QUESTION_CHARS:
            raise ToolError(
                f"'question' is {len(question):,} characters, over the limit of"
                f" {MAX_QUESTION_CHARS:,}: ask it in fewer words"
            )
        store = ctx.request_context.lifespan_context
        try:
            return await search(settings, store, question, subject=subject, limit=limit)
        except StoreError as exc:
            logger.exception("searching the content for %s failed", subject)
            raise ToolError(f"could not search the project's content: {exc}") from None

    async def model_answer(
        question: str,
        hits: Annotated[list[SearchHit], Resolve(sources_for)],
        ctx: Context[Store, Any],
    ) -> Reply | Sample | None:
        if not hits:  # decided here, not by a model: no sources, no model call
            return None
        store = ctx.request_context.lifespan_context
        try:
            sources = await source_texts(settings, store, hits, _subject(ctx))
        except StoreError as exc:
            logger.exception("reading the sources found failed")
            raise ToolError(f"could not read the project's content: {exc}") from None
        return await ask(settings, ctx, answer_prompt(question, sources))

    @server.tool(
        title="Answer from the project's content",
        description=(
            "Answer a question from the project's own content (blog posts, playbooks, skills"
            " you can read), citing the sources used by key; says it is not found in the"
            " project's content when nothing there answers it. Never answers from elsewhere."
        ),
        annotations=ANSWER_TOOL,
    )
    async def answer_from_content(
        question: Annotated[
            str,
            Field(description=f"The question, at most {MAX_QUESTION_CHARS:,} characters."),
        ],
        hits: Annotated[list[SearchHit], Resolve(sources_for)],
        answer: Annotated[Reply | CreateMessageResult | None, Resolve(model_answer)],
        limit: Annotated[
            int, Field(ge=1, le=10, description="How many sources to read, best first.")
        ] = 5,
    ) -> Annotated[CallToolResult, ContentAnswer]:
        if answer is None:
            nothing = ContentAnswer(found=False, answer=NOT_FOUND_TEXT, sources=[], model=None)
            return _result(nothing)
        return _result(_answered(reply_of(answer), hits))


def _subject(ctx: Context[Store, Any]) -> str:
    caller = signed_in_caller(
        ctx,
        "answer_from_content reads your content, so it needs a signed-in caller:"
        " call it with an access token",
    )
    assert caller.subject is not None
    return caller.subject


def _answered(reply: Reply, hits: list[SearchHit]) -> ContentAnswer:
    text = reply.text.strip()
    if not text:
        raise ToolError(f"the model ({reply.model}) gave an empty answer; nothing to return")
    found = not says_not_found(text)
    named = set(cited(text, [hit.key for hit in hits])) if found else set()
    sources = [
        Source(kind=hit.kind, key=hit.key, title=hit.title, cited=hit.key in named) for hit in hits
    ]
    logger.info(
        "answer_from_content via %s (%s): %d sources, %d cited, found: %s",
        reply.via,
        reply.model,
        len(hits),
        len(named),
        found,
    )
    return ContentAnswer(
        found=found,
        answer=text if found else NOT_FOUND_TEXT,
        sources=sources,
        model=used(reply),
    )


def _result(answer: ContentAnswer) -> CallToolResult:
    # The text a model reads: the answer, then the sources it names (or was given).
    shown = [source for source in answer.sources if source.cited] or answer.sources
    listing = "\n".join(f"[{source.key}] {source.title}" for source in shown)
    text = f"{answer.answer}\n\nSources:\n{listing}" if listing and answer.found else answer.answer
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=answer.model_dump(mode="json"),
    )
