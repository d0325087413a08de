"""``generate_featured_image`` and the featured-image resource of the ``content-manager`` server:
the drawing checked on its pixels (``title_card``), the tool and the resource in-process over
real HTTP with the official SDK client, callers vouched for as the gateway would, a real SQLite
store. Through the gateway with OAuth: ``tests/e2e/test_featured_image.py``."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, BlobResourceContents, ImageContent, ResourceLink
from PIL import Image, ImageChops, ImageDraw

from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier
from atrium.servers.content_manager import create_server
from atrium.servers.content_manager.title_card import (
    ACCENT_BAR,
    DEJAVU_BOLD,
    HEIGHT,
    MARGIN,
    MAX_LINES,
    MAX_SIZE,
    STYLES,
    TITLE_BOX,
    WIDTH,
    Style,
    Typeface,
    clean_title,
    contrast_ratio,
    draw_field,
    palette_for,
    render_title_card,
)
from atrium.settings import Settings
from atrium.store import ArtifactRecord, Store
from tests.servers.helpers import serving
from tests.trust import vouched_client

SERVER = "content-manager"
TYPEFACES = [Typeface(None)] + ([Typeface(DEJAVU_BOLD)] if DEJAVU_BOLD.is_file() else [])
LONG_TITLE = " ".join(["An uncommonly verbose headline about gateways and tokens"] * 8)
SEEDS = [f"post-{n}" for n in range(24)] + ["Hello, world", "пост", "مرحبا", "日本語"]


def pixels_of(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image.convert("RGB")


def ink_box(card: Image.Image, field: Image.Image, *, below: int = 0) -> tuple[int, int, int, int]:
    """Where ``card`` differs from its bare background, from row ``below`` down (absolute)."""
    diff = ImageChops.difference(card, field).crop((0, below, WIDTH, HEIGHT))
    box = diff.getbbox()
    assert box is not None, "nothing was drawn"
    left, top, right, bottom = box
    return left, top + below, right, bottom + below


def rgb(pixel: float | tuple[int, ...]) -> tuple[int, int, int]:
    assert isinstance(pixel, tuple)
    r, g, b = pixel
    return r, g, b


def inside(box: tuple[int, int, int, int], frame: tuple[int, int, int, int]) -> bool:
    return frame[0] <= box[0] and frame[1] <= box[1] and box[2] <= frame[2] and box[3] <= frame[3]


# --- the drawing -----------------------------------------------------------------------------


def test_contrast_ratio_matches_the_wcag_reference_values() -> None:
    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast_ratio((255, 255, 255), (255, 255, 255)) == pytest.approx(1.0)
    # WebAIM's classic pair: #767676 on white is the lightest grey that passes AA (4.54:1).
    assert contrast_ratio((0x76, 0x76, 0x76), (255, 255, 255)) == pytest.approx(4.54, abs=0.01)
    assert contrast_ratio((0x77, 0x77, 0x77), (255, 255, 255)) < 4.5


@pytest.mark.parametrize("style", STYLES)
def test_the_text_has_contrast_of_at_least_4_5_on_every_background_pixel(style: Style) -> None:
    for seed in SEEDS:
        palette = palette_for(seed, style)
        colours = draw_field(palette, style).getcolors(maxcolors=WIDTH * HEIGHT)
        assert colours is not None
        worst = min(contrast_ratio(palette.text, rgb(colour)) for _, colour in colours)
        assert worst >= 4.5, (seed, palette, worst)


def test_the_same_post_always_gets_the_same_palette_and_posts_get_their_own() -> None:
    assert palette_for("my-first-post", "gradient") == palette_for("my-first-post", "gradient")
    assert palette_for("my-first-post", "gradient") != palette_for("my-second-post", "gradient")
    backgrounds = {palette_for(seed, "solid").background for seed in SEEDS}
    assert len(backgrounds) >= len(SEEDS) - 2


@pytest.mark.parametrize(
    "typeface", TYPEFACES, ids=lambda face: face.path.name if face.path else "pillow"
)
@pytest.mark.parametrize("style", STYLES)
def test_a_very_long_title_is_cut_with_an_ellipsis_and_drawn_inside_the_title_box(
    typeface: Typeface, style: Style
) -> None:
    card = render_title_card(LONG_TITLE, seed="long", style=style, typeface=typeface)

    assert card.layout.truncated
    assert 1 < len(card.layout.lines) <= MAX_LINES
    assert card.layout.lines[-1].endswith("…")
    image = pixels_of(card.png)
    field = draw_field(card.palette, style)
    assert inside(ink_box(image, field), (MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN))
    assert inside(ink_box(image, field, below=ACCENT_BAR[3] + 1), TITLE_BOX)


@pytest.mark.parametrize(
    "typeface", TYPEFACES, ids=lambda face: face.path.name if face.path else "pillow"
)
@pytest.mark.parametrize(
    "title",
    [
        "Привет, мир: заметки о многопоточности и очередях сообщений",
        "مرحبا بالعالم: كيف نبني بوابة آمنة",
        "日本語のタイトルはスペースなしで長く続くことがありますがきちんと折り返されるべきです",
        "Ẓ̌̈ålgo ťëxt wîth stacked mårks ̈̈̈ and emoji 🚀🔥 and a zero\u200bwidth space",
        "https://example.com/" + "a-very-long-path-segment" * 12,
    ],
    ids=["cyrillic", "arabic", "japanese", "marks-and-emoji", "one-huge-word"],
)
def test_non_latin_and_unbreakable_titles_are_drawn_inside_the_title_box(
    typeface: Typeface, title: str
) -> None:
    card = render_title_card(clean_title(title), seed=title, style="solid", typeface=typeface)

    image = pixels_of(card.png)
    assert image.size == (WIDTH, HEIGHT)
    field = draw_field(card.palette, "solid")
    assert inside(ink_box(image, field, below=ACCENT_BAR[3] + 1), TITLE_BOX)
    assert len(card.layout.lines) <= MAX_LINES


def test_a_short_title_is_drawn_at_the_largest_size_and_a_longer_one_smaller() -> None:
    short = render_title_card("Hi", seed="hi", style="solid")
    longer = render_title_card(clean_title(LONG_TITLE[:90]), seed="x", style="solid")

    assert (short.layout.size, short.layout.truncated) == (MAX_SIZE, False)
    assert longer.layout.size < MAX_SIZE
    assert not longer.layout.truncated
    assert " ".join(longer.layout.lines) == clean_title(LONG_TITLE[:90])


def test_the_caption_is_drawn_under_the_title_inside_the_margins() -> None:
    plain = pixels_of(render_title_card("Release notes", seed="notes", style="stripes").png)
    card = render_title_card("Release notes", seed="notes", style="stripes", caption="notes")

    captioned = pixels_of(card.png)
    caption = ink_box(captioned, plain)
    assert caption[1] >= TITLE_BOX[3]
    assert inside(caption, (MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN))


def test_the_field_under_the_title_is_unchanged_outside_the_drawing() -> None:
    """The ink-box checks above compare with ``draw_field``: it must be the card's background,
    or they would compare with the wrong picture and pass on anything."""
    card = render_title_card("Same background", seed="bg", style="gradient")
    field = draw_field(card.palette, "gradient")
    blank = field.copy()
    ImageDraw.Draw(blank).rectangle(ACCENT_BAR, fill=card.palette.accent)

    image = pixels_of(card.png)
    corner = (0, 0, MARGIN, HEIGHT)
    assert ImageChops.difference(image.crop(corner), blank.crop(corner)).getbbox() is None


# --- the tool and the resource ---------------------------------------------------------------


@asynccontextmanager
async def connected(
    settings: Settings, subject: str | None = "ada", mode: str = "auto"
) -> AsyncIterator[Client]:
    """A client of the content-manager, each request vouched for as ``subject``."""
    verifier = AssertionVerifier.load(settings.state_dir / PUBLIC_FILE, SERVER)
    async with (
        serving(create_server(settings), verifier) as url,
        vouched_client(
            f"{url}/mcp", settings.state_dir, SERVER, subject=subject, mode=mode
        ) as client,
    ):
        yield client


async def generate(settings: Settings, arguments: dict[str, Any], subject: str = "ada") -> Any:
    async with connected(settings, subject) as client:
        return await client.call_tool("generate_featured_image", arguments)


async def kept_images(settings: Settings) -> list[ArtifactRecord]:
    async with await Store.open(settings) as store:
        return [a for a in await store.artifacts.list_recent(50) if a.kind == "featured-image"]


async def test_the_tool_is_listed_with_schemas_and_honest_annotations(project: Settings) -> None:
    async with connected(project) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        templates = (await client.list_resource_templates()).resource_templates

    tool = tools["generate_featured_image"]
    assert tool.title
    assert tool.description
    assert set(tool.input_schema["properties"]) == {"title", "slug", "style", "use_model"}
    assert tool.input_schema["required"] == ["title"]
    assert tool.input_schema["properties"]["style"]["enum"] == list(STYLES)
    assert tool.output_schema is not None
    assert {"width", "height", "bytes", "artifact_id", "uri"} <= set(
        tool.output_schema["properties"]
    )
    hints = tool.annotations
    assert hints is not None
    assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint) == (
        False,
        False,
        False,
    )
    assert hints.open_world_hint is True  # with ai.images, the title goes to a model API
    [template] = [t for t in templates if t.uri_template.startswith("artifact://content-manager/")]
    assert template.mime_type == "image/png"


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_the_image_is_a_1200_by_630_png_kept_for_its_owner(
    project: Settings, mode: str
) -> None:
    async with connected(project, mode=mode) as client:
        result = await client.call_tool(
            "generate_featured_image", {"title": "Hello, world", "slug": "hello-world"}
        )
        assert not result.is_error, result
        image = result.structured_content
        read = await client.read_resource(image["uri"])

    [picture] = [c for c in result.content if isinstance(c, ImageContent)]
    png = base64.b64decode(picture.data)
    assert picture.mime_type == "image/png"
    assert pixels_of(png).size == (1200, 630)
    assert (image["width"], image["height"], image["bytes"]) == (1200, 630, len(png))
    assert image["palette"]["contrast"] >= 4.5
    [link] = [c for c in result.content if isinstance(c, ResourceLink)]
    assert (str(link.uri), link.mime_type) == (image["uri"], "image/png")
    [kept] = await kept_images(project)
    assert (kept.id, kept.server, kept.content["owner"]) == (image["artifact_id"], SERVER, "ada")
    [blob] = read.contents
    assert isinstance(blob, BlobResourceContents)
    assert (blob.mime_type, base64.b64decode(blob.blob)) == ("image/png", png)


async def test_two_titles_get_different_palettes_and_a_slug_keeps_its_own(
    project: Settings,
) -> None:
    calls = [
        {"title": "Scaling the gateway"},
        {"title": "Rotating signing keys"},
        {"title": "Scaling the gateway, again", "slug": "scaling"},
        {"title": "Scaling, the sequel", "slug": "scaling"},
    ]
    async with connected(project) as client:
        results = [await client.call_tool("generate_featured_image", c) for c in calls]

    palettes = [result.structured_content["palette"] for result in results]
    assert palettes[0] != palettes[1]
    assert palettes[2] == palettes[3]


async def test_another_user_cannot_read_the_image(project: Settings) -> None:
    result = await generate(project, {"title": "Ada's post"})
    uri = result.structured_content["uri"]

    async with connected(project, subject="bob") as client:
        with pytest.raises(MCPError) as refused:
            await client.read_resource(uri)
        with pytest.raises(MCPError) as missing:
            await client.read_resource(
                "artifact://content-manager/" + "0" * 8 + "-0000" * 3 + "-" + "0" * 12
            )

    # "Not yours" is "not found": an id cannot be probed for whether it exists.
    assert refused.value.error.code == missing.value.error.code == INVALID_PARAMS


async def test_an_anonymous_caller_is_refused_and_nothing_is_kept(project: Settings) -> None:
    async with connected(project, subject=None) as client:
        result = await client.call_tool("generate_featured_image", {"title": "Nobody's post"})

    assert result.is_error
    assert await kept_images(project) == []


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"title": ""}, "title"),
        ({"title": " \n\t "}, "title"),
        ({"title": "x" * 301}, "title"),
        ({"title": "Post", "style": "neon"}, "style"),
        ({"title": "Post", "slug": "Not A Slug"}, "slug"),
        ({"title": "Post", "slug": "trailing-"}, "slug"),
    ],
)
async def test_bad_input_is_a_tool_error_naming_the_argument(
    project: Settings, arguments: dict[str, Any], named: str
) -> None:
    result = await generate(project, arguments)

    assert result.is_error
    assert result.content[0].text.startswith(named) or f" {named} " in result.content[0].text
    assert await kept_images(project) == []


async def test_an_unknown_style_is_told_the_styles_there_are(project: Settings) -> None:
    result = await generate(project, {"title": "Post", "style": "neon"})

    assert result.is_error
    assert all(style in result.content[0].text for style in STYLES)
