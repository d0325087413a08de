"""The ``content-manager`` server's blog tools (issue 14): ``create_blog_post``,
``list_blog_posts``, ``get_blog_post``; ``research_blog`` is in ``research``.

* A post is Markdown with YAML frontmatter (title, slug, author, status, tags, dates), kept in
  the store (``store.content``) and written to ``content/blog/<slug>.md`` of the project.
* The slug comes from the title (ASCII letters and digits joined by '-'), so a caller can never
  name a path: the file is always directly in ``content/blog``. It is written to a temporary
  file beside it and renamed over the old one, so a reader sees the old post or the new one,
  never half of one.
* Ownership and sharing: a post is its creator's. A draft is seen by its owner alone; a
  published post by every caller, which is what publishing means. Only the owner replaces a
  post (``overwrite: true``); another user's slug is refused, since the file is the project's.
  An anonymous caller may read published posts but creates nothing: a post must have an owner.
* ``content/blog/<slug>.md`` written by hand (not from the store) is never replaced.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import unicodedata
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from atrium import yamlio
from atrium.servers.content_manager.research import add_research_tool, caller_subject
from atrium.servers.toolkit import AtriumServer
from atrium.settings import Settings
from atrium.store import PostRecord, SlugTaken, Store, StoreError

logger = logging.getLogger(__name__)

BLOG_DIR = Path("content", "blog")
MAX_SLUG = 80
MAX_TAGS = 20
MAX_TAG = 40
SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"

Status = Literal["draft", "published"]
READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


class PostSummary(BaseModel):
    slug: str
    title: str
    status: Status
    tags: list[str]
    mine: bool = Field(description="Whether you own the post (only the owner may replace it).")
    path: str = Field(description="The post's file in the project.")
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None = Field(description="When it was published; null for drafts.")


class PostDocument(PostSummary):
    body: str = Field(description="The Markdown after the frontmatter.")


class SavedPost(PostSummary):
    replaced: bool = Field(description="True if an earlier version of your post was replaced.")


class PostListing(BaseModel):
    posts: list[PostSummary]
    next_offset: int | None = Field(description="Pass as offset for the next page; null: no more.")


def add_posts_tools(server: AtriumServer[Store], settings: Settings) -> None:
    """Register the blog tools on ``server``."""
    add_research_tool(server, settings)
    _add_create(server, settings)
    _add_readers(server)


def _add_create(server: AtriumServer[Store], settings: Settings) -> None:
    @server.tool(
        title="Create a blog post",
        description=(
            "Write a blog post as Markdown with frontmatter: stored, and saved as "
            "content/blog/<slug>.md (the slug comes from the title). A draft is yours alone; "
            "a published post every user can read. Replacing your own post with the same "
            "slug needs overwrite=true; another user's slug is refused."
        ),
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
            open_world_hint=False,
        ),
    )
    async def create_blog_post(
        title: Annotated[
            str, Field(max_length=200, description="The title; the slug is made from it.")
        ],
        body: Annotated[
            str, Field(max_length=500_000, description="The post in Markdown, no frontmatter.")
        ],
        ctx: Context[Store, Any],
        tags: Annotated[
            list[str] | None,
            Field(description=f"Up to {MAX_TAGS} tags, each up to {MAX_TAG} characters."),
        ] = None,
        status: Annotated[Status, Field(description="draft (yours alone) or published.")] = "draft",
        overwrite: Annotated[
            bool, Field(description="Replace your own post that has the same slug.")
        ] = False,
    ) -> SavedPost:
        owner = caller_subject(ctx)
        if owner is None:
            raise ToolError("create_blog_post needs a signed-in caller: a post must have an owner")
        slug, clean_tags = _slug(title), _tags(tags or [])
        if not body.strip():
            raise ToolError("body: is empty; give the post's text in Markdown")
        store = ctx.request_context.lifespan_context
        path = _blog_file(settings, slug)
        try:
            before = await store.content.get_post(slug)
            if before is None and path.exists():
                raise ToolError(
                    f"title: {_shown(slug)} exists and was not written by this server; "
                    "move it away or choose another title"
                )
            record = await store.content.save_post(
                owner=owner,
                slug=slug,
                title=title.strip(),
                body=body,
                tags=clean_tags,
                status=status,
                overwrite=overwrite,
            )
        except SlugTaken as taken:
            raise ToolError(_taken(slug, by_caller=taken.by_caller)) from None
        except StoreError as exc:
            logger.error("create_blog_post %s: %s", slug, exc)
            raise ToolError("the post could not be stored; the server log says why") from None
        try:
            _write_atomically(path, render(record))
        except OSError as exc:
            logger.error("could not write %s: %s", path, exc)
            raise ToolError(
                f"the post is stored but {_shown(slug)} could not be written "
                f"({exc.strerror or exc}); call again with overwrite=true to retry"
            ) from None
        replaced = before is not None
        logger.info("%s post %s for %s", "replaced" if replaced else "created", slug, owner)
        return SavedPost(**_summary(record, owner).model_dump(), replaced=replaced)


def _add_readers(server: AtriumServer[Store]) -> None:
    @server.tool(
        title="List blog posts",
        description=(
            "List blog posts, most recently updated first: yours (drafts too) and every "
            "published one, or only yours with scope=mine."
        ),
        annotations=READ_ONLY,
    )
    async def list_blog_posts(
        ctx: Context[Store, Any],
        scope: Annotated[
            Literal["all", "mine"], Field(description="all: yours and published; mine: yours.")
        ] = "all",
        status: Annotated[Status | None, Field(description="Only drafts or published.")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="Posts per page.")] = 20,
        offset: Annotated[int, Field(ge=0, description="Posts to skip (next_offset).")] = 0,
    ) -> PostListing:
        subject = caller_subject(ctx)
        if scope == "mine" and subject is None:
            raise ToolError(
                "scope: 'mine' needs a signed-in caller; anonymous callers own no posts"
            )
        store = ctx.request_context.lifespan_context
        try:
            found = await store.content.list_posts(
                subject=subject,
                mine_only=scope == "mine",
                status=status,
                limit=limit + 1,
                offset=offset,
            )
        except StoreError as exc:
            logger.error("list_blog_posts: %s", exc)
            raise ToolError("the posts could not be read; the server log says why") from None
        return PostListing(
            posts=[_summary(post, subject) for post in found[:limit]],
            next_offset=offset + limit if len(found) > limit else None,
        )

    @server.tool(
        title="Get a blog post",
        description="Read one blog post (yours, or a published one) by its slug.",
        annotations=READ_ONLY,
    )
    async def get_blog_post(
        slug: Annotated[
            str, Field(max_length=MAX_SLUG, description="The slug, from list_blog_posts.")
        ],
        ctx: Context[Store, Any],
    ) -> Annotated[CallToolResult, PostDocument]:
        subject = caller_subject(ctx)
        store = ctx.request_context.lifespan_context
        try:
            post = await store.content.get_post(slug) if re.match(SLUG, slug) else None
        except StoreError as exc:
            logger.error("get_blog_post %s: %s", slug, exc)
            raise ToolError("the post could not be read; the server log says why") from None
        # Another user's draft reads as missing: its slug says nothing of its existence.
        if post is None or not post.visible_to(subject):
            raise ToolError(
                f"slug: no blog post {slug!r} that you can read; list_blog_posts shows them"
            )
        document = PostDocument(**_summary(post, subject).model_dump(), body=post.body)
        return CallToolResult(
            content=[TextContent(type="text", text=render(post))],
            structured_content=document.model_dump(mode="json"),
        )


def slugify(title: str) -> str:
    """``title`` as lowercase ASCII words joined by '-', at most ``MAX_SLUG`` characters, cut
    between words; "" if it has no Latin letters or digits."""
    folded = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", re.sub(r"['’]", "", folded))
    slug = words[0][:MAX_SLUG] if words else ""
    for word in words[1:]:
        if len(slug) + 1 + len(word) > MAX_SLUG:
            break
        slug = f"{slug}-{word}"
    return slug


def render(record: PostRecord) -> str:
    """The post's file: YAML frontmatter, then the body."""
    front: dict[str, Any] = {
        "title": record.title,
        "slug": record.slug,
        "author": record.owner,
        "status": record.status,
        "tags": list(record.tags),
        "date": record.created_at.isoformat(),
        "updated": record.updated_at.isoformat(),
    }
    if record.published_at is not None:
        front["published"] = record.published_at.isoformat()
    return f"---\n{yamlio.dumps(front)}---\n\n{record.body.strip()}\n"


def _slug(title: str) -> str:
    if not title.strip():
        raise ToolError("title: is empty; give the post a title")
    slug = slugify(title)
    if not slug:
        raise ToolError(
            f"title: {title!r} has no Latin letters or digits to make the slug (the file name)"
            " from; add some, for example a transliteration"
        )
    return slug


def _tags(tags: list[str]) -> list[str]:
    if len(tags) > MAX_TAGS:
        raise ToolError(f"tags: {len(tags)} tags; at most {MAX_TAGS}")
    clean: dict[str, str] = {}
    for index, tag in enumerate(tags):
        text = " ".join(tag.split())
        if not text or len(text) > MAX_TAG or not text.isprintable():
            raise ToolError(
                f"tags[{index}]: {tag[:60]!r} must be 1 to {MAX_TAG} printable characters"
            )
        clean.setdefault(text.casefold(), text)
    return list(clean.values())


def _taken(slug: str, *, by_caller: bool) -> str:
    if by_caller:
        return (
            f"title: you already have the post {slug!r}; pass overwrite=true to replace it,"
            " or choose another title"
        )
    return f"title: the slug {slug!r} is another user's post; choose another title"


def _blog_file(settings: Settings, slug: str) -> Path:
    folder = settings.project_dir / BLOG_DIR
    path = folder / f"{slug}.md"
    # The slug's alphabet already keeps the file in the folder; the folder itself must not
    # lead out of the project either (a symlink someone put there).
    root = settings.project_dir.resolve()
    if path.parent != folder or not folder.resolve().is_relative_to(root):
        raise ToolError(f"{BLOG_DIR.as_posix()} leads outside the project; posts are not written")
    return path


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _shown(slug: str) -> str:
    return f"{BLOG_DIR.as_posix()}/{slug}.md"


def _summary(post: PostRecord, subject: str | None) -> PostSummary:
    return PostSummary(
        slug=post.slug,
        title=post.title,
        status=post.status,
        tags=list(post.tags),
        mine=post.owner == subject,
        path=_shown(post.slug),
        created_at=post.created_at,
        updated_at=post.updated_at,
        published_at=post.published_at,
    )
