"""``generate_featured_image`` with an image model configured (``ai.images``): the content-manager
in-process over real HTTP with the official SDK client, callers vouched for as the gateway
would, a real SQLite store, and the model played by the Images API's fake on loopback
(``tests.ai.fake_openai_images``) through the real ``openai`` SDK. The model's pictures are
single colours or bands, so the 1200×630 result can be recognised on its pixels."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, BlobResourceContents, CallToolResult, ImageContent
from PIL import Image, ImageDraw

from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier
from atrium.servers.content_manager import create_server
from atrium.settings import Settings, load_settings
from atrium.store import ArtifactRecord, Store
from tests.ai.fake_openai_images import (
    OpenAIImagesFake,
    Picture,
    encoded,
    solid_png,
    write_images_config,
)
from tests.ai.fake_script import Failure
from tests.ai.project import KEY_VARIABLE
from tests.servers.helpers import serving
from tests.trust import vouched_client

SERVER = "content-manager"
TOOL = "generate_featured_image"
TEAL = (0, 128, 128)
RED = (200, 30, 30)


def with_key(project: Settings) -> Settings:
    return load_settings(project.project_dir, {**project.environ, KEY_VARIABLE: "test-key"})


@asynccontextmanager
async def connected(settings: Settings, subject: str = "ada") -> AsyncIterator[Client]:
    verifier = AssertionVerifier.load(settings.state_dir / PUBLIC_FILE, SERVER)
    async with (
        serving(create_server(settings), verifier) as url,
        vouched_client(f"{url}/mcp", settings.state_dir, SERVER, subject=subject) as client,
    ):
        yield client


async def generate(settings: Settings, arguments: dict[str, Any]) -> CallToolResult:
    async with connected(settings) as client:
        return await client.call_tool(TOOL, arguments)


async def kept_images(settings: Settings) -> list[ArtifactRecord]:
    async with await Store.open(settings) as store:
        return [a for a in await store.artifacts.list_recent(50) if a.kind == "featured-image"]


def png_of(result: CallToolResult) -> bytes:
    [picture] = [c for c in result.content if isinstance(c, ImageContent)]
    assert picture.mime_type == "image/png"
    return base64.b64decode(picture.data)


def colours_of(png: bytes) -> set[tuple[int, ...] | float]:
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (1200, 630))
    counted = image.convert("RGB").getcolors(maxcolors=1200 * 630)
    assert counted is not None
    return {colour for _, colour in counted}


def banded_png() -> bytes:
    """Teal between red bands at the top and bottom: a cover crop to 1.91:1 cuts the bands
    away, a squeeze or a letterbox would keep them."""
    image = Image.new("RGB", (1024, 1024), TEAL)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 1023, 149), fill=RED)
    draw.rectangle((0, 874, 1023, 1023), fill=RED)
    return encoded(image, "PNG")


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result
    text = result.content[0]
    assert text.type == "text"
    return text.text


async def test_the_models_picture_is_cropped_to_1200_by_630_and_kept_for_its_owner(
    project: Settings,
) -> None:
    settings = with_key(project)
    with OpenAIImagesFake([Picture(solid_png(TEAL))]) as fake:
        write_images_config(settings.project_dir, fake, model="gpt-image-2", size="1536x1024")
        async with connected(settings) as client:
            result = await client.call_tool(TOOL, {"title": "Tides", "slug": "tides"})
            image = result.structured_content or {}
            own = await client.read_resource(image["uri"])
        async with connected(settings, subject="bob") as client:
            with pytest.raises(MCPError) as refused:
                await client.read_resource(image["uri"])

    assert not result.is_error, result
    png = png_of(result)
    assert colours_of(png) == {TEAL}
    assert (image["source"], image["provider"], image["model"]) == (
        "model",
        "images",
        "gpt-image-2",
    )
    assert (image["width"], image["height"], image["bytes"]) == (1200, 630, len(png))
    assert image["palette"] is None
    [request] = fake.generations
    assert request.body["size"] == "1536x1024"
    assert '"Tides"' in request.body["prompt"]
    assert "No text" in request.body["prompt"]
    [kept] = await kept_images(settings)
    assert (kept.id, kept.content["owner"], kept.content["source"]) == (
        image["artifact_id"],
        "ada",
        "model",
    )
    [blob] = own.contents
    assert isinstance(blob, BlobResourceContents)
    assert base64.b64decode(blob.blob) == png
    assert refused.value.error.code == INVALID_PARAMS


async def test_the_picture_covers_the_frame_and_the_revised_prompt_is_told(
    project: Settings,
) -> None:
    settings = with_key(project)
    picture = Picture(banded_png(), revised_prompt="Teal tides, calm and wide")
    with OpenAIImagesFake([picture]) as fake:
        write_images_config(settings.project_dir, fake, model="dall-e-3")
        result = await generate(settings, {"title": "Tides", "style": "stripes"})

    assert colours_of(png_of(result)) == {TEAL}
    assert (result.structured_content or {})["revised_prompt"] == "Teal tides, calm and wide"
    assert "stripes" in fake.generations[0].body["prompt"]


async def test_use_model_false_draws_the_title_card_and_asks_no_model(project: Settings) -> None:
    settings = with_key(project)
    with OpenAIImagesFake([Picture(solid_png(TEAL))]) as fake:
        write_images_config(settings.project_dir, fake)
        result = await generate(settings, {"title": "Tides", "use_model": False})

    assert not result.is_error, result
    image = result.structured_content or {}
    assert (image["source"], image["model"]) == ("title-card", None)
    assert image["palette"]["contrast"] >= 4.5
    assert len(colours_of(png_of(result))) > 2
    assert fake.requests == []


async def test_use_model_true_without_an_image_model_is_an_error(project: Settings) -> None:
    result = await generate(project, {"title": "Tides", "use_model": True})

    assert "ai.images" in error_text(result)
    assert await kept_images(project) == []


async def test_without_an_image_model_the_title_card_is_drawn(project: Settings) -> None:
    result = await generate(project, {"title": "Tides"})

    assert not result.is_error, result
    assert (result.structured_content or {})["source"] == "title-card"


async def test_a_failing_model_is_the_tools_error_not_a_title_card(project: Settings) -> None:
    settings = with_key(project)
    with OpenAIImagesFake([Failure(401, message="Incorrect API key provided")]) as fake:
        write_images_config(settings.project_dir, fake)
        result = await generate(settings, {"title": "Tides"})

    told = error_text(result)
    assert "401" in told
    assert "Incorrect API key provided" in told
    assert len(fake.generations) == 1
    assert await kept_images(settings) == []


async def test_a_key_missing_from_the_servers_environment_says_where_to_pass_it(
    project: Settings,
) -> None:
    with OpenAIImagesFake([]) as fake:
        write_images_config(project.project_dir, fake)
        result = await generate(project, {"title": "Tides"})

    told = error_text(result)
    assert "ai.providers.images.api_key" in told
    assert "services/mcp/content-manager.yaml" in told
    assert fake.requests == []


async def test_a_use_model_that_is_not_a_boolean_is_named(project: Settings) -> None:
    result = await generate(project, {"title": "Tides", "use_model": "maybe"})

    assert "use_model" in error_text(result)
    assert await kept_images(project) == []
