"""The ``content-manager`` server's featured images (issue 14): ``generate_featured_image``
makes a post's picture, the image model's (``model_image``) when ``ai.images`` is configured,
else a title card (``title_card``), and keeps it; ``artifact://content-manager/{id}`` serves
it again.

* The tool answers with the picture itself (``ImageContent``, base64 PNG) so a client can show
  it at once, a ``resource_link`` to its stable URI, and ``FeaturedImage`` as structured
  content. Each call keeps a new artifact (kind ``featured-image``) in the store: the PNG in
  base64 and how it was made (``source``: ``model`` with its provider and model, or
  ``title-card`` with its palette and lines), owned by the caller's subject.
* Ownership: an image is its creator's. Only the owner reads it through the resource; anyone
  else, an admin too, gets "not found", the same answer as for an id that does not exist, so
  ids cannot be probed. Sharing is publishing: the owner puts the image in a post. An
  anonymous caller is refused: an image kept for nobody could never be read again.
* ``use_model`` picks: unset, the model when one is configured; false, always the card; true,
  the model or an error. A configured model that fails is the tool's error, not a card
  (``model_image`` says why).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal

import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import CallToolResult, ImageContent, ResourceLink, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from atrium.servers.content_manager.model_image import ModelPicture, model_picture
from atrium.servers.content_manager.title_card import (
    HEIGHT,
    STYLES,
    WIDTH,
    Style,
    TitleCard,
    clean_title,
    contrast_ratio,
    field_colours,
    hex_colour,
    render_title_card,
)
from atrium.servers.toolkit import AtriumServer
from atrium.servers.trust import signed_in_caller
from atrium.settings import Settings
from atrium.store import ArtifactRecord, Store, StoreError

logger = logging.getLogger(__name__)

SERVER = "content-manager"
TOOL = "generate_featured_image"
KIND = "featured-image"
MIME_TYPE = "image/png"
URI_PREFIX = f"artifact://{SERVER}/"
MAX_TITLE = 300
MAX_SLUG = 80  # as posts.py: a post's slug
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
ARTIFACT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Title = Annotated[
    str,
    Field(
        description=f"The post's title, as the card shows it (1 to {MAX_TITLE} characters). Too"
        " long for the card at its smallest size, it ends with '…'."
    ),
]
Slug = Annotated[
    str | None,
    Field(
        description="The post's slug (lowercase letters, digits and '-'): the palette comes from"
        " it, so the post keeps its colours when its title changes; shown under the title."
        " Omit for a palette from the title.",
    ),
]
StyleName = Annotated[
    str,
    Field(
        description="gradient: a diagonal blend of two hues; solid: one colour; stripes: diagonal"
        " stripes in two shades. An image model is asked for the same look.",
        json_schema_extra={"enum": list(STYLES)},
    ),
]
UseModel = Annotated[
    bool | None,
    Field(
        description="Omit to use the project's image model when one is configured (ai.images"
        " in services/ai/config.yaml), else draw a title card; false: always the title card;"
        " true: the model's picture, an error when no model is configured.",
    ),
]
Source = Literal["model", "title-card"]


class PaletteColours(BaseModel):
    background: str = Field(description="Hex colour of the field.")
    second: str = Field(description="Hex colour of the gradient's far end, or of the stripes.")
    text: str = Field(description="Hex colour of the title.")
    accent: str = Field(description="Hex colour of the accent bar.")
    contrast: float = Field(description="Lowest WCAG contrast ratio of text on the field (≥4.5).")


class FeaturedImage(BaseModel):
    """The structured content of ``generate_featured_image``."""

    width: int = Field(description="In pixels.")
    height: int = Field(description="In pixels.")
    bytes: int = Field(description="Size of the PNG file.")
    mime_type: str = Field(description="Always image/png.")
    artifact_id: str = Field(description="Id of the stored image.")
    uri: str = Field(description="The image's stable URI: resources/read it (only you can).")
    source: Source = Field(description="model: the image model's picture; title-card: drawn.")
    provider: str | None = Field(description="The image model's provider (source model).")
    model: str | None = Field(description="The image model (source model).")
    revised_prompt: str | None = Field(
        description="The prompt as the model rewrote it, when it says (source model)."
    )
    style: str
    lines: list[str] | None = Field(description="The title as wrapped (title-card).")
    font_size: int | None = Field(description="The title's font size in pixels (title-card).")
    truncated: bool | None = Field(
        description="True when the title was cut and ends with '…' (title-card)."
    )
    palette: PaletteColours | None = Field(description="The card's colours (title-card).")


def add_images_tools(server: AtriumServer[Store], settings: Settings) -> None:
    """Register ``generate_featured_image`` and the ``artifact://content-manager/{id}`` resource
    template of the images it keeps (``settings``: where ``ai.images`` is read, per call)."""

    @server.tool(
        name=TOOL,
        title="Generate a featured image",
        description=(
            f"Make a blog post's featured image, a {WIDTH}×{HEIGHT} PNG: the project's image"
            " model's picture when one is configured (no text in it), else a title card (the"
            " title wrapped and fitted, colours derived from the post, readable contrast)."
            " Returns the image, and keeps it as yours at a stable artifact:// URI."
        ),
        # Writes an artifact, removes nothing; a second call keeps a second artifact. Open
        # world: with an image model configured, the title goes to that model's API.
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
    )
    async def generate_featured_image(
        title: Title,
        ctx: Context[Store, Any],
        slug: Slug = None,
        style: StyleName = "gradient",
        use_model: UseModel = None,
    ) -> Annotated[CallToolResult, FeaturedImage]:
        owner = _owner(ctx)
        cleaned, chosen = _checked(title, slug, style)
        made = await _make(settings, cleaned, slug, chosen, use_model)
        record = await _keep(ctx.request_context.lifespan_context, owner, cleaned, slug, made)
        image = _described(record, made, chosen)
        logger.info("kept featured image %s for %s (%d bytes)", record.id, owner, image.bytes)
        return _result(cleaned, record, image)

    @server.resource(
        f"{URI_PREFIX}{{artifact_id}}",
        name="featured-image",
        title="Featured image",
        description="A featured image you generated with generate_featured_image, as PNG.",
        mime_type=MIME_TYPE,
    )
    async def featured_image(artifact_id: str, ctx: Context[Store, Any]) -> bytes:
        try:
            reader = _owner(ctx)
        except ToolError as exc:
            raise ResourceError(str(exc)) from None
        record = None
        if ARTIFACT_ID.fullmatch(artifact_id):
            record = await _read(ctx.request_context.lifespan_context, artifact_id)
        if record is None or record.kind != KIND or record.content.get("owner") != reader:
            raise ResourceNotFoundError(f"no featured image {artifact_id!r} of yours")
        try:
            return base64.b64decode(record.content["png_base64"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            logger.error("featured image %s is stored without a readable PNG", artifact_id)
            raise ResourceError(f"featured image {artifact_id!r} is damaged") from None


def _owner(ctx: Context[Store, Any]) -> str:
    """The caller's subject; an anonymous caller (or none: a server run without the gateway)
    is refused, because the image is kept as someone's."""
    caller = signed_in_caller(
        ctx,
        "featured images are kept as their creator's: sign in (call through the Atrium"
        " gateway with a user's token) to generate or read one",
    )
    assert caller.subject is not None
    return caller.subject


def _checked(title: str, slug: str | None, style: str) -> tuple[str, Style]:
    """The title as drawn and the style, or a ``ToolError`` naming the argument at fault."""
    cleaned = clean_title(title)
    if not cleaned:
        raise ToolError(f"title is empty: give the post's title (1 to {MAX_TITLE} characters)")
    if len(cleaned) > MAX_TITLE:
        raise ToolError(f"title has {len(cleaned)} characters: at most {MAX_TITLE} are allowed")
    if slug is not None and not (len(slug) <= MAX_SLUG and SLUG.fullmatch(slug)):
        raise ToolError(
            f"slug {slug[:MAX_SLUG]!r} is not a slug: use lowercase letters, digits and single"
            f" '-' between them, at most {MAX_SLUG} characters (e.g. 'my-first-post')"
        )
    for known in STYLES:
        if style == known:
            return cleaned, known
    raise ToolError(f"style {style[:40]!r} is unknown: use one of {', '.join(STYLES)}")


@dataclass(frozen=True)
class _Made:
    """A picture, how it was made as its artifact keeps it, and the card when one was drawn."""

    png: bytes
    details: dict[str, Any]
    card: TitleCard | None = None


async def _make(
    settings: Settings, title: str, slug: str | None, style: Style, use_model: bool | None
) -> _Made:
    if use_model is not False:
        picture = await model_picture(settings, title, slug, style, required=use_model is True)
        if picture is not None:
            return _model_made(picture)
    draw = partial(render_title_card, title, seed=slug or title, style=style, caption=slug)
    # Drawing and PNG encoding take tens of milliseconds of CPU: not on the event loop.
    return _card_made(await anyio.to_thread.run_sync(draw))


def _card_made(card: TitleCard) -> _Made:
    palette = card.palette
    details = {
        "source": "title-card",
        "lines": list(card.layout.lines),
        "font_size": card.layout.size,
        "truncated": card.layout.truncated,
        "palette": {
            "background": hex_colour(palette.background),
            "second": hex_colour(palette.second),
            "text": hex_colour(palette.text),
            "accent": hex_colour(palette.accent),
        },
    }
    return _Made(card.png, details, card)


def _model_made(picture: ModelPicture) -> _Made:
    details = {
        "source": "model",
        "provider": picture.provider,
        "model": picture.model,
        "prompt": picture.prompt,
        "revised_prompt": picture.revised_prompt,
    }
    return _Made(picture.png, details)


async def _keep(
    store: Store, owner: str, title: str, slug: str | None, made: _Made
) -> ArtifactRecord:
    content = {
        "owner": owner,
        "mime_type": MIME_TYPE,
        "width": WIDTH,
        "height": HEIGHT,
        "slug": slug,
        **made.details,
        "png_base64": base64.b64encode(made.png).decode("ascii"),
    }
    try:
        return await store.artifacts.add(
            server=SERVER, tool=TOOL, kind=KIND, title=title, content=content
        )
    except StoreError as exc:
        logger.error("could not keep a featured image for %s: %s", owner, exc)
        raise ToolError(f"the image was made but could not be kept: {exc}") from None


async def _read(store: Store, artifact_id: str) -> ArtifactRecord | None:
    try:
        return await store.artifacts.get(artifact_id)
    except StoreError as exc:
        logger.error("could not read featured image %s: %s", artifact_id, exc)
        raise ResourceError(f"featured image {artifact_id!r} could not be read: {exc}") from None


def _described(record: ArtifactRecord, made: _Made, style: Style) -> FeaturedImage:
    kept, card = record.content, made.card
    palette = None
    if card is not None:
        colours = field_colours(card.palette, style)
        contrast = min(contrast_ratio(card.palette.text, c) for c in colours)
        palette = PaletteColours(**kept["palette"], contrast=round(contrast, 2))
    return FeaturedImage(
        width=WIDTH,
        height=HEIGHT,
        bytes=len(made.png),
        mime_type=MIME_TYPE,
        artifact_id=record.id,
        uri=f"{URI_PREFIX}{record.id}",
        source=kept["source"],
        provider=kept.get("provider"),
        model=kept.get("model"),
        revised_prompt=kept.get("revised_prompt"),
        style=style,
        lines=kept.get("lines"),
        font_size=kept.get("font_size"),
        truncated=kept.get("truncated"),
        palette=palette,
    )


def _result(title: str, record: ArtifactRecord, image: FeaturedImage) -> CallToolResult:
    link = ResourceLink(
        type="resource_link",
        uri=image.uri,
        name=f"featured-image-{record.id}",
        title=title,
        mime_type=MIME_TYPE,
        size=image.bytes,
    )
    made = (
        f"by {image.provider}:{image.model}" if image.source == "model" else f"{image.style} card"
    )
    summary = (
        f"Featured image for {title!r}: {WIDTH}×{HEIGHT} PNG, {image.bytes} bytes, {made},"
        f" kept as {image.uri}."
    )
    return CallToolResult(
        content=[
            ImageContent(type="image", data=record.content["png_base64"], mime_type=MIME_TYPE),
            link,
            TextContent(type="text", text=summary),
        ],
        structured_content=image.model_dump(mode="json"),
    )
