"""The ``content-manager`` server's ``research_blog`` tool (issue 14): what the project already
says about a topic, before a post is written.

* Sources: a full-text search (``store.content.sources``: SQLite FTS5 or PostgreSQL
  ``tsvector``, ranked, with snippets) over the blog posts, playbooks and skills the caller may
  see. Playbooks (files) and skills are re-indexed first by ``refresh_index``, which writes only
  what changed, so a playbook edited a second ago is found as it is now.
* Outline: the sources' section headings (levels 2 and 3, without step numbers; the title
  when a source has none), best source first, the same heading from several sources merged
  and credited to each. It is built from the sources by code, never invented.
* Draft (the issue's "with an AI provider configured, a drafted outline from them"): a
  Markdown outline the project's model writes from the same sources, citing them as
  ``[kind:key]`` (``drafting``). By default drafted when a provider is configured; a provider
  that fails leaves the sources and outline as they are, with ``draft_problem`` saying why.
* An anonymous caller researches the shared content only (playbooks, published posts, shared
  skills): reading owns nothing.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from atrium.servers.atrium.playbooks import load_playbooks
from atrium.servers.content_manager.drafting import DraftModel, draft_outline
from atrium.servers.toolkit import AtriumServer
from atrium.servers.trust import current_caller
from atrium.settings import Settings
from atrium.store import IndexDocument, Source, Store, StoreError
from atrium.store.content import search_terms

logger = logging.getLogger(__name__)

MAX_SECTIONS = 12
_NUMBERED = re.compile(r"^\d+[.)]\s+")
_LOCATIONS = {
    "post": "content/blog/{key}.md (get_blog_post)",
    "playbook": "services/playbooks/{key}.md (the atrium server's show_playbook)",
    "skill": "a skill of the marketplace server",
}


class ResearchSource(BaseModel):
    kind: str = Field(description="post, playbook or skill.")
    key: str = Field(description="A post's slug, a playbook's name or a skill's id.")
    title: str
    snippet: str = Field(description="Where it matched; matched words are in **bold**.")
    rank: float = Field(description="Relevance within this answer: higher is better.")
    location: str = Field(description="Where to read it whole.")


class OutlineSection(BaseModel):
    heading: str
    level: int = Field(description="2 for a section, 3 for a subsection.")
    sources: list[str] = Field(description="The sources it comes from, as kind:key.")


class ResearchResult(BaseModel):
    topic: str
    sources: list[ResearchSource] = Field(description="Best match first.")
    outline: list[OutlineSection] = Field(description="A post outline from the sources' headings.")
    draft: str | None = Field(
        description=(
            "A Markdown outline drafted by the project's AI model from these sources only,"
            " citing them as [kind:key]; null when none was drafted (draft_problem says why)."
        )
    )
    draft_model: DraftModel | None = Field(description="The model that drafted it; null if none.")
    draft_problem: str | None = Field(
        description=(
            "Why there is no draft: no AI provider configured, no sources, or the provider"
            " failed (its error); null when drafted or when called with draft: false."
        )
    )


def add_research_tool(server: AtriumServer[Store], settings: Settings) -> None:
    @server.tool(
        title="Research a blog topic",
        description=(
            "Search the project's own content (blog posts, playbooks, skills you may see) for "
            "a topic: ranked sources with snippets, an outline built from their headings, and, "
            "when the project has an AI provider configured, a Markdown outline its model "
            "drafts from those sources alone, citing them as [kind:key]. Use it before "
            "create_blog_post."
        ),
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
        ),
    )
    async def research_blog(
        topic: Annotated[
            str, Field(max_length=500, description="What the post is about, in a few words.")
        ],
        ctx: Context[Store, Any],
        limit: Annotated[int, Field(ge=1, le=25, description="At most this many sources.")] = 8,
        draft: Annotated[
            bool | None,
            Field(
                description=(
                    "Have the project's AI model draft an outline from the sources. Default:"
                    " when services/ai/config.yaml configures a provider. true: a draft or an"
                    " error saying why not. false: no model is asked."
                )
            ),
        ] = None,
    ) -> ResearchResult:
        if not search_terms(topic):
            raise ToolError(f"topic: {topic[:60]!r} has no words to search for")
        store = ctx.request_context.lifespan_context
        try:
            await refresh_index(store, settings)
            found = await store.content.sources(topic, subject=caller_subject(ctx), limit=limit)
        except StoreError as exc:
            logger.error("research_blog: %s", exc)
            raise ToolError("the content could not be searched; the server log says why") from None
        drafted = await draft_outline(settings, topic, found, draft=draft)
        return ResearchResult(
            topic=topic,
            sources=[_source(source) for source in found],
            outline=outline(found),
            draft=drafted.text,
            draft_model=drafted.model,
            draft_problem=drafted.problem,
        )


async def refresh_index(store: Store, settings: Settings) -> int:
    """Index the project's playbooks as they are on disk and the stored skills; how many
    documents changed. A playbook that cannot be read is left out (list_playbooks names it)."""
    return await store.content.refresh(playbook_documents(settings))


def playbook_documents(settings: Settings) -> list[IndexDocument]:
    found, problems = load_playbooks(settings)
    for problem in problems:
        logger.warning("playbook not indexed: %s", problem)
    return [IndexDocument("playbook", p.name, p.title, p.body) for p in found]


def caller_subject(ctx: Context[Store, Any]) -> str | None:
    """Whom the call is for; None for an anonymous caller or a server run without the
    gateway (``--unauthenticated``), which then reads only what is shared."""
    try:
        return current_caller(ctx).subject
    except LookupError:
        return None


def outline(sources: list[Source]) -> list[OutlineSection]:
    """The sources' level 2 and 3 headings (a source's title if it has none), best source
    first, each heading once (compared without case and punctuation)."""
    sections: dict[str, OutlineSection] = {}
    for source in sources:
        reference = f"{source.hit.kind}:{source.hit.key}"
        found = [_heading(line) for line in source.headings]
        headings = [(level, text) for level, text in found if level in (2, 3)]
        for level, text in headings or [(2, source.hit.title)]:
            key = " ".join(re.findall(r"\w+", text.casefold()))
            if not key:
                continue
            section = sections.setdefault(
                key, OutlineSection(heading=text, level=level, sources=[])
            )
            if reference not in section.sources:
                section.sources.append(reference)
    return list(sections.values())[:MAX_SECTIONS]


def _heading(line: str) -> tuple[int, str]:
    """Level and text of ``"## 4. Read the log"``: ``(2, "Read the log")``; a playbook's step
    numbers mean nothing in another text's outline."""
    marks = len(line) - len(line.lstrip("#"))
    return marks, _NUMBERED.sub("", line[marks:].strip())


def _source(source: Source) -> ResearchSource:
    hit = source.hit
    return ResearchSource(
        kind=hit.kind,
        key=hit.key,
        title=hit.title,
        snippet=hit.snippet,
        rank=hit.rank,
        location=_LOCATIONS.get(hit.kind, hit.kind).format(key=hit.key),
    )
