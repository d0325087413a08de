"""What ``answer_from_content`` reads: the project's content the caller may see, searched, and
the text of each document found.

The search index (``store.content``) holds blog posts as they are saved, but playbooks (files)
and skills (the marketplace's tables) are copied in by whoever searches (``refresh``, which
writes only what changed), so a question sees the playbooks on disk now.

A hit's snippet is a few words around the match: too little to answer from. The model gets the
document's own text instead, cut to ``MAX_SOURCE_CHARS``, read where that kind lives: a post
from the store (if the caller may still read it), a playbook from its file, a skill's current
version. A document that cannot be read any more (deleted since it was indexed) falls back to
its snippet.
"""

from __future__ import annotations

from atrium.errors import NotFoundError
from atrium.servers.atrium.playbooks import PlaybookError, load_playbook, load_playbooks
from atrium.servers.soul.prompts import SourceText
from atrium.settings import Settings
from atrium.store import Store
from atrium.store.content import IndexDocument, SearchHit

MAX_SOURCE_CHARS = 6_000


async def search(
    settings: Settings, store: Store, question: str, *, subject: str, limit: int
) -> list[SearchHit]:
    """The best ``limit`` documents for ``question`` among those ``subject`` may read."""
    playbooks, _unreadable = load_playbooks(settings)  # list_playbooks reports those
    documents = [IndexDocument("playbook", p.name, p.title, p.body) for p in playbooks]
    await store.content.refresh(documents)
    return await store.content.search(question, subject=subject, limit=limit)


async def source_texts(
    settings: Settings, store: Store, hits: list[SearchHit], subject: str
) -> list[SourceText]:
    return [
        SourceText(hit.key, hit.title, await _text(settings, store, hit, subject) or hit.snippet)
        for hit in hits
    ]


async def _text(settings: Settings, store: Store, hit: SearchHit, subject: str) -> str | None:
    if hit.kind == "post":
        post = await store.content.get_post(hit.key)
        body = post.body if post is not None and post.visible_to(subject) else None
    elif hit.kind == "playbook":
        try:
            body = load_playbook(settings, hit.key).body
        except (NotFoundError, PlaybookError):
            body = None
    elif hit.kind == "skill":
        versions = await store.skills.history(hit.key)  # newest first; the search checked who
        body = versions[0].content if versions else None
    else:
        body = None
    return _excerpt(body) if body else None


def _excerpt(body: str) -> str:
    if len(body) <= MAX_SOURCE_CHARS:
        return body
    cut = body.rfind("\n", 0, MAX_SOURCE_CHARS)
    return body[: cut if cut > MAX_SOURCE_CHARS // 2 else MAX_SOURCE_CHARS] + "\n[…]"
