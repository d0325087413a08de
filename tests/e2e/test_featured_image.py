"""``generate_featured_image`` end to end (issue 14, "Done when"): a fresh ``atrium init`` +
``atrium start``, the content-manager started by the supervisor as scaffolded, and two users
with OAuth tokens calling it through the gateway: each gets a PNG that decodes at the size
stated, reads their own image back at its ``artifact://`` URI, and cannot read the other's."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    BlobResourceContents,
    CallToolResult,
    ImageContent,
    ReadResourceResult,
)
from PIL import Image

from tests.ai.fake_openai_images import OpenAIImagesFake, Picture, solid_png, write_images_config
from tests.e2e.instance import Instance, started_instance

SERVER = "content-manager"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """The scaffold as ``init`` writes it, with bob, a ``user``, next to the first admin."""
    project = tmp_path_factory.mktemp("featured-image") / "project"
    with started_instance(project, builtins=("atrium", "content-manager")) as started:
        started.atrium("admin", "users", "create", "bob", "--role", "user")
        yield started


@asynccontextmanager
async def connected(instance: Instance, user: str) -> AsyncIterator[Client]:
    """The official client with ``user``'s access token for the content-manager."""
    token = instance.atrium("admin", "token", "issue", "--user", user, "--server", SERVER)
    headers = {"Authorization": f"Bearer {token.strip()}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(instance.url(SERVER), http_client=http)
        async with Client(transport) as client:
            yield client


async def generate(instance: Instance, user: str, title: str) -> CallToolResult:
    async with connected(instance, user) as client:
        return await client.call_tool("generate_featured_image", {"title": title})


async def read(instance: Instance, user: str, uri: str) -> ReadResourceResult | MCPError:
    """The resource, or the error that refused it (caught inside the client, whose task group
    would otherwise wrap it)."""
    async with connected(instance, user) as client:
        try:
            return await client.read_resource(uri)
        except MCPError as refused:
            return refused


def png_of(result: CallToolResult) -> bytes:
    [picture] = [c for c in result.content if isinstance(c, ImageContent)]
    assert picture.mime_type == "image/png"
    return base64.b64decode(picture.data)


async def test_two_users_each_get_a_png_and_read_back_only_their_own(instance: Instance) -> None:
    admins = await generate(instance, "admin", "Notes from the admin")
    bobs = await generate(instance, "bob", "Bob's first post")

    for result in (admins, bobs):
        assert not result.is_error, result
        png = png_of(result)
        image = Image.open(io.BytesIO(png))
        assert (image.format, image.size) == ("PNG", (1200, 630))
        stated = result.structured_content or {}
        assert (stated["width"], stated["height"], stated["bytes"]) == (1200, 630, len(png))
    admin_uri = (admins.structured_content or {})["uri"]
    own = await read(instance, "admin", admin_uri)
    assert isinstance(own, ReadResourceResult), own
    [blob] = own.contents
    assert isinstance(blob, BlobResourceContents)
    assert base64.b64decode(blob.blob) == png_of(admins)
    refused = await read(instance, "bob", admin_uri)
    assert isinstance(refused, MCPError)
    assert refused.error.code == INVALID_PARAMS


async def test_with_an_image_model_each_user_gets_the_models_picture_through_the_gateway(
    instance: Instance,
) -> None:
    """``ai.images`` on a local OpenAI-compatible server (no key, so none has to reach the
    content-manager's environment): the supervised server asks it, crops the picture to
    1200×630, and keeps it for its owner only; ``use_model: false`` still draws the card."""
    config = instance.project / "services/ai/config.yaml"
    scaffolded = config.read_text()
    teal = (0, 128, 128)
    try:
        with OpenAIImagesFake([Picture(solid_png(teal)), Picture(solid_png(teal))]) as fake:
            write_images_config(instance.project, fake, kind="openai-chat", key=False)
            results = [
                await generate(instance, "admin", "Tides and gateways"),
                await generate(instance, "bob", "Bob's tides"),
            ]
            async with connected(instance, "bob") as client:
                card = await client.call_tool(
                    "generate_featured_image", {"title": "Bob's card", "use_model": False}
                )
    finally:
        config.write_text(scaffolded)

    for result in results:
        assert not result.is_error, result
        image = Image.open(io.BytesIO(png_of(result)))
        assert (image.format, image.size) == ("PNG", (1200, 630))
        assert image.convert("RGB").getcolors() == [(1200 * 630, teal)]
        assert (result.structured_content or {})["source"] == "model"
    assert len(fake.generations) == 2
    prompts = [request.body["prompt"] for request in fake.generations]
    assert '"Tides and gateways"' in prompts[0]
    assert '"Bob\'s tides"' in prompts[1]
    assert (card.structured_content or {})["source"] == "title-card"
    admin_uri = (results[0].structured_content or {})["uri"]
    own = await read(instance, "admin", admin_uri)
    assert isinstance(own, ReadResourceResult), own
    refused = await read(instance, "bob", admin_uri)
    assert isinstance(refused, MCPError)
    assert refused.error.code == INVALID_PARAMS
