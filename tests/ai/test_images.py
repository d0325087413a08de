"""The image model (``atrium.ai.images``): ``ai.images`` in ``services/ai/config.yaml``
validated with file, line and key, and ``generate_image`` through the official ``openai`` SDK
against the Images API's fake on loopback (``tests.ai.fake_openai_images``)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from textwrap import dedent
from typing import Any

import httpx2
import pytest
from PIL import Image

from atrium.ai.config import load_ai_config
from atrium.ai.images import MAX_IMAGE_BYTES, NoImagesConfigured, generate_image
from atrium.ai.providers.provider import ProviderError, ProviderSetupError
from atrium.errors import ConfigError, Problem
from atrium.settings import Settings, load_settings
from tests.ai.fake_openai_images import (
    Link,
    OpenAIImagesFake,
    Picture,
    ScriptItem,
    encoded,
    solid_png,
    write_images_config,
)
from tests.ai.fake_script import Failure
from tests.ai.project import KEY_VARIABLE

SOURCE = "services/ai/config.yaml"
TEAL = (0, 128, 128)


def settings_of(project: Path, **environ: str) -> Settings:
    return load_settings(project, environ={KEY_VARIABLE: "test-key", **environ})


def write(project: Path, text: str) -> Settings:
    path = project / SOURCE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text))
    return settings_of(project)


def only_problem(settings: Settings) -> Problem:
    with pytest.raises(ConfigError) as caught:
        load_ai_config(settings)
    assert len(caught.value.problems) == 1, caught.value
    return caught.value.problems[0]


def decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image


# --- configuration ---------------------------------------------------------------------------


def test_images_names_a_provider_model_and_size(tmp_path: Path) -> None:
    settings = write(
        tmp_path,
        """\
        ai:
          providers:
            openai: {type: openai, api_key: {$env: OPENAI_API_KEY}}
          images:
            provider: openai
            model: gpt-image-2
            size: 1536x1024
        """,
    )

    images = load_ai_config(settings).images

    assert images is not None
    assert (images.provider, images.model, images.size) == ("openai", "gpt-image-2", "1536x1024")


def test_without_images_there_is_no_image_model(tmp_path: Path) -> None:
    settings = write(tmp_path, "ai:\n  providers: {}\n")

    assert load_ai_config(settings).images is None


def test_images_on_a_provider_of_another_type_is_refused_at_its_line(tmp_path: Path) -> None:
    settings = write(
        tmp_path,
        """\
        ai:
          providers:
            google: {type: gemini, api_key: {$env: GEMINI_API_KEY}}
          images:
            provider: google
            model: imagen-4
        """,
    )

    problem = only_problem(settings)

    assert (problem.source, problem.key_path, problem.line) == (SOURCE, "ai.images.provider", 5)
    assert "gemini" in problem.message
    assert "openai or openai-chat" in problem.message


def test_images_on_an_unknown_provider_is_refused_naming_the_configured_ones(
    tmp_path: Path,
) -> None:
    settings = write(
        tmp_path,
        """\
        ai:
          providers:
            local: {type: openai-chat, base_url: "http://127.0.0.1:9/v1"}
          images: {provider: dalle, model: dall-e-3}
        """,
    )

    problem = only_problem(settings)

    assert (problem.key_path, problem.line) == ("ai.images.provider", 4)
    assert "'dalle'" in problem.message
    assert "local" in problem.message


@pytest.mark.parametrize(
    ("images", "key_path"),
    [
        ({"provider": "openai"}, "ai.images.model"),
        ({"provider": "openai", "model": ""}, "ai.images.model"),
        ({"provider": "openai", "model": "gpt-image-2", "size": "large"}, "ai.images.size"),
        ({"provider": "openai", "model": "gpt-image-2", "count": 2}, "ai.images.count"),
        ({"model": "gpt-image-2"}, "ai.images.provider"),
    ],
)
def test_a_bad_images_key_is_named(tmp_path: Path, images: dict[str, Any], key_path: str) -> None:
    provider = {"type": "openai", "api_key": {"$env": "OPENAI_API_KEY"}}
    document = {"ai": {"providers": {"openai": provider}, "images": images}}
    settings = write(tmp_path, json.dumps(document))

    problem = only_problem(settings)

    assert (problem.source, problem.key_path) == (SOURCE, key_path)


# --- generate_image --------------------------------------------------------------------------


async def test_the_model_is_asked_once_and_its_picture_comes_back_as_png(tmp_path: Path) -> None:
    with OpenAIImagesFake([Picture(solid_png(TEAL, (1536, 1024)))]) as fake:
        write_images_config(tmp_path, fake, model="gpt-image-2", size="1536x1024")
        image = await generate_image(settings_of(tmp_path), "A lighthouse at dawn")

    [request] = fake.generations
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.body == {
        "model": "gpt-image-2",
        "prompt": "A lighthouse at dawn",
        "n": 1,
        "size": "1536x1024",
    }
    assert (image.provider, image.model, image.revised_prompt) == ("images", "gpt-image-2", None)
    assert (image.width, image.height) == (1536, 1024)
    picture = decoded(image.png)
    assert picture.size == (1536, 1024)
    assert picture.convert("RGB").getcolors() == [(1536 * 1024, TEAL)]


async def test_a_dall_e_model_is_asked_for_b64_json_and_its_revised_prompt_is_kept(
    tmp_path: Path,
) -> None:
    picture = Picture(solid_png(TEAL), revised_prompt="A calm lighthouse at dawn, watercolour")
    with OpenAIImagesFake([picture]) as fake:
        write_images_config(tmp_path, fake, model="dall-e-3")
        image = await generate_image(settings_of(tmp_path), "A lighthouse")

    [request] = fake.generations
    assert request.body["response_format"] == "b64_json"
    assert "size" not in request.body
    assert image.revised_prompt == "A calm lighthouse at dawn, watercolour"


async def test_another_format_comes_back_as_png(tmp_path: Path) -> None:
    jpeg = encoded(Image.new("RGB", (640, 480), TEAL), "JPEG")
    with OpenAIImagesFake([Picture(jpeg)]) as fake:
        write_images_config(tmp_path, fake)
        image = await generate_image(settings_of(tmp_path), "A lighthouse")

    assert decoded(image.png).size == (640, 480)
    assert (image.width, image.height) == (640, 480)


async def test_a_local_compatible_server_needs_no_key(tmp_path: Path) -> None:
    with OpenAIImagesFake([Picture(solid_png(TEAL))]) as fake:
        write_images_config(tmp_path, fake, kind="openai-chat", model="sd-turbo", key=False)
        image = await generate_image(settings_of(tmp_path), "A lighthouse")

    assert decoded(image.png).size == (1024, 1024)
    [request] = fake.generations
    assert request.body["response_format"] == "b64_json"


async def test_no_images_key_is_no_image_model_and_nothing_is_sent(tmp_path: Path) -> None:
    with OpenAIImagesFake([]) as fake:
        settings = write(tmp_path, "ai:\n  providers: {}\n")
        with pytest.raises(NoImagesConfigured) as caught:
            await generate_image(settings, "A lighthouse")

    assert caught.value.problems[0].key_path == "ai.images"
    assert fake.requests == []


async def test_an_unset_key_variable_is_a_config_error_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    with OpenAIImagesFake([]) as fake:
        write_images_config(tmp_path, fake)
        with pytest.raises(ConfigError) as caught:
            await generate_image(load_settings(tmp_path, environ={}), "A lighthouse")

    assert caught.value.problems[0].key_path == "ai.providers.images.api_key"
    assert fake.requests == []


async def test_openai_without_a_key_is_a_setup_error_naming_where_to_set_it(
    tmp_path: Path,
) -> None:
    with OpenAIImagesFake([]) as fake:
        write_images_config(tmp_path, fake, key=False)
        with pytest.raises(ProviderSetupError) as caught:
            await generate_image(settings_of(tmp_path), "A lighthouse")

    assert "ai.providers.images.api_key" in str(caught.value)
    assert fake.requests == []


async def test_a_refused_key_is_a_provider_error_with_the_apis_message(tmp_path: Path) -> None:
    with OpenAIImagesFake([Failure(401, message="Incorrect API key provided")]) as fake:
        write_images_config(tmp_path, fake)
        with pytest.raises(ProviderError) as caught:
            await generate_image(settings_of(tmp_path), "A lighthouse")

    assert (caught.value.kind, caught.value.status) == ("openai", 401)
    assert "Incorrect API key provided" in str(caught.value)
    assert len(fake.generations) == 1  # a 401 is not retried


async def test_a_server_error_is_retried(tmp_path: Path) -> None:
    script: list[ScriptItem] = [Failure(500, retry_after="0"), Picture(solid_png(TEAL))]
    with OpenAIImagesFake(script) as fake:
        write_images_config(tmp_path, fake)
        image = await generate_image(settings_of(tmp_path), "A lighthouse")

    assert len(fake.generations) == 2
    assert decoded(image.png).size == (1024, 1024)


async def test_server_errors_past_the_retries_are_a_provider_error(tmp_path: Path) -> None:
    failures: list[ScriptItem] = [Failure(500, retry_after="0")] * 3
    with OpenAIImagesFake(failures) as fake:
        write_images_config(tmp_path, fake)
        with pytest.raises(ProviderError) as caught:
            await generate_image(settings_of(tmp_path), "A lighthouse")

    assert caught.value.status == 500
    assert len(fake.generations) == 3  # the first try and max_retries: 2


async def test_a_url_instead_of_the_image_is_refused_and_never_fetched(tmp_path: Path) -> None:
    # The URL points at the fake itself, which records a GET of it if one comes.
    with OpenAIImagesFake([Link("/private/picture.png")]) as fake:
        write_images_config(tmp_path, fake)
        with pytest.raises(ProviderError) as caught:
            await generate_image(settings_of(tmp_path), "A lighthouse")

    assert "URL" in str(caught.value)
    assert [r.path for r in fake.requests] == ["/v1/images/generations"]


async def test_data_that_is_no_image_is_refused(tmp_path: Path) -> None:
    with OpenAIImagesFake([Picture(b"<svg xmlns='http://www.w3.org/2000/svg'/>")]) as fake:
        write_images_config(tmp_path, fake)
        with pytest.raises(ProviderError) as caught:
            await generate_image(settings_of(tmp_path), "A lighthouse")

    assert "not an image" in str(caught.value)


async def test_b64_json_that_is_not_base64_is_refused(tmp_path: Path) -> None:
    with OpenAIImagesFake([Picture(raw_b64="not base64 at all!")]) as fake:
        write_images_config(tmp_path, fake)
        with pytest.raises(ProviderError) as caught:
            await generate_image(settings_of(tmp_path), "A lighthouse")

    assert "base64" in str(caught.value)


async def test_an_image_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    # Valid PNG bytes padded past the limit: only the size can refuse it.
    big = solid_png(TEAL) + b"\0" * MAX_IMAGE_BYTES
    with OpenAIImagesFake([Picture(big)]) as fake:
        write_images_config(tmp_path, fake)
        with pytest.raises(ProviderError) as caught:
            await generate_image(settings_of(tmp_path), "A lighthouse")

    assert "MiB" in str(caught.value)


async def test_an_image_of_too_many_pixels_is_refused_before_it_is_decoded(
    tmp_path: Path,
) -> None:
    # 8000×6000 in one bit per pixel is a small file of 48 million pixels.
    bomb = encoded(Image.new("1", (8000, 6000)), "PNG")
    with OpenAIImagesFake([Picture(bomb)]) as fake:
        write_images_config(tmp_path, fake)
        with pytest.raises(ProviderError) as caught:
            await generate_image(settings_of(tmp_path), "A lighthouse")

    assert "8000×6000" in str(caught.value)


def test_the_fakes_refusal_of_response_format_matches_gpt_image_models() -> None:
    """The fake refuses what the API refuses, or the tests above could not catch a client
    that sent ``response_format`` to a GPT image model."""
    with OpenAIImagesFake([Picture(solid_png(TEAL))]) as fake:
        body = {"model": "gpt-image-2", "prompt": "x", "response_format": "b64_json"}
        answer = httpx2.post(f"{fake.base_url}/images/generations", json=body)

    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
